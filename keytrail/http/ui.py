"""The auditor's pages: ``/ui/`` lists the onboardings, ``/ui/onboardings/{stream}`` is the report.

Scope ``audit`` with the same bearer token as the JSON reads (no token in a URL: it would land
in histories and logs). The pages are the ones ``keytrail report`` writes, rendered by
:mod:`keytrail.reporting`; they are left out of the OpenAPI document, which describes the JSON
API that clients are generated from. Every page forbids scripts and remote loads in its
Content-Security-Policy header as well as in its own meta tag.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from keytrail import inputs
from keytrail.engine import Engine
from keytrail.http.auth import Auditor
from keytrail.http.commands import StreamPath
from keytrail.reporting import CSP, index_html, report_html

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

_HEADERS = {
    "Content-Security-Policy": CSP + "; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Audit data, read under a token: never kept by a shared cache or the browser's.
    "Cache-Control": "no-store",
}


def _page(html: str) -> Response:
    return HTMLResponse(html, headers=_HEADERS)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


@router.get("")
def ui_root() -> Response:
    """``/ui`` is ``/ui/``: the pages link relatively from there."""
    return RedirectResponse("/ui/", status_code=308)


@router.get("/")
def onboardings_page(
    request: Request,
    token: Auditor,
    sort: Annotated[str, Query(max_length=16)] = "stream",
    q: Annotated[str, Query(max_length=128)] = "",
) -> Response:
    """Every onboarding: state, reason, last change and key expiry; sorted and searched by query parameters."""
    return _page(index_html(_engine(request), sort=sort, query=q))


@router.get("/onboardings/{stream}")
def report_page(
    stream: StreamPath,
    request: Request,
    token: Auditor,
    at: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The auditor's report of one onboarding, as ``keytrail report`` writes it, at ``?at=`` (default now)."""
    instant = None if not at else inputs.parse_instant(at, "at")
    html, _ = report_html(_engine(request), stream, instant, served=True)
    return _page(html)
