"""What needs no token: health, readiness, metrics, and Commerce's key check (authenticated by the key it checks)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.responses import PlainTextResponse, Response

from keytrail.engine import Engine
from keytrail.engine.gateway import check_api_key
from keytrail.errors import KeytrailError
from keytrail.events import iso_utc
from keytrail.http.commands import json_response
from keytrail.http.metrics import CONTENT_TYPE, Metrics
from keytrail.http.models import GatewayOut, HealthOut, ProblemOut, ReadyOut
from keytrail.http.problems import problem_of, service_problem

__all__ = ["router"]

router = APIRouter(tags=["operations"])
_WHY = {
    "missing": "No API key was sent: Commerce sends it in the magento-api-key header.",
    "invalid": "The API key is not one the key authority issued, or it was revoked.",
    "expired": "The API key has expired.",
}


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _problem(status: int, what: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ProblemOut, "content": {"application/problem+json": {}}, "description": what}}


@router.get(
    "/healthz", response_model=None, responses={200: {"model": HealthOut, "description": "The process answers."}}
)
def healthz() -> Response:
    """The process is up (it says nothing of the database: that is /readyz)."""
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=None,
    responses={
        200: {"model": ReadyOut, "description": "Ready."},
        **_problem(503, "The database cannot be reached or is not keytrail's."),
    },
)
def readyz(request: Request) -> Response:
    """The database answers and holds a keytrail schema of the version this keytrail reads."""
    engine = _engine(request)
    try:
        version = engine.database.ping()
    except KeytrailError as exc:
        problem = problem_of(exc)
        raise service_problem("not-ready", problem.detail, cause=problem.slug) from None
    return json_response({"status": "ready", "schema_version": int(version) if version.isdigit() else version})


@router.get("/metrics", response_class=PlainTextResponse, responses={200: {"description": "Prometheus text format."}})
def metrics(request: Request) -> Response:
    """Requests by route and status, command latency, transitions by trigger and destination."""
    found: Metrics = request.app.state.metrics
    return Response(found.render(), media_type=CONTENT_TYPE)


@router.get(
    "/gateway/apikeycheck",
    response_model=None,
    responses={
        200: {"model": GatewayOut, "description": "The key is valid."},
        **_problem(401, "The key is missing, invalid (unknown or revoked) or expired (`reason`)."),
    },
)
def apikeycheck(
    request: Request,
    magento_api_key: Annotated[
        str | None, Header(alias="magento-api-key", description="The key Commerce checks.")
    ] = None,
) -> Response:
    """Commerce's key validation: 200 when the key is one the authority issued, unrevoked and unexpired; else 401."""
    engine = _engine(request)
    verdict = check_api_key(engine, magento_api_key)
    if not verdict.valid:
        reason = "invalid" if verdict.reason is None else verdict.reason.value
        raise service_problem("invalid-api-key", _WHY[reason], reason=reason)
    expires = None if verdict.expires_at is None else iso_utc(verdict.expires_at)
    return json_response({"valid": True, "key_id": verdict.key_id, "expires_at": expires})
