"""The reads (status, list, history, replay, verify, digest, expiring) and the key authority's administration."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from keytrail.engine import Engine
from keytrail.engine.reports import digest, expiring
from keytrail.errors import InvalidInput
from keytrail.http.auth import Admin, Auditor, Reader
from keytrail.http.commands import StreamPath, json_response
from keytrail.http.models import (
    AccountBody,
    AccountOut,
    AuditOut,
    DigestOut,
    EventsOut,
    ExpiringOut,
    KeyInfoOut,
    OnboardingListOut,
    ProblemOut,
    ReplayOut,
    StatusOut,
    VerifyOut,
)
from keytrail.inputs import clipped

__all__ = ["problem_responses", "router"]

router = APIRouter(prefix="/v1")
KeyIdPath = Annotated[
    str,
    Path(
        description="A key id as the key authority issues them: key_ and 16 hex digits.",
        json_schema_extra={"pattern": "^key_[0-9a-f]{16}$"},
    ),
]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    what = {
        401: "No, an unknown or a revoked token.",
        403: "The token's scope does not allow this.",
        404: "No such onboarding or key.",
        409: "The email is already registered.",
        413: "The body is over the size limit.",
        422: "Invalid input; nothing was written.",
        500: "A stored row is not as keytrail wrote it (run `keytrail verify`).",
        503: "The database cannot be reached.",
    }
    return {
        s: {"model": ProblemOut, "content": {"application/problem+json": {}}, "description": what[s]} for s in statuses
    }


_READ = problem_responses(401, 403, 404, 422, 500, 503)


def _ok(model: type, what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": what}}


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


@router.get(
    "/onboardings/{stream}", tags=["reads"], response_model=None, responses={**_ok(StatusOut, "Its status."), **_READ}
)
def status(stream: StreamPath, request: Request, token: Reader) -> Response:
    """Where the onboarding stands, from its projection (no replay); ETag is its version."""
    found = _engine(request).status(stream)
    return json_response(found.as_dict(), headers={"ETag": f'"{found.version}"'})


@router.get(
    "/onboardings",
    tags=["reads"],
    response_model=None,
    responses={**_ok(OnboardingListOut, "A page of onboardings, by id."), **_READ},
)
def onboardings(
    request: Request,
    token: Reader,
    after: Annotated[str | None, Query(description="The `next` of the previous page.", max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Every onboarding's status, ordered by id, a page at a time."""
    page: list[dict[str, Any]] = []
    more = False
    streams = _engine(request).streams()
    try:
        for found in streams:
            if after is not None and found.stream <= after:
                continue
            if len(page) == limit:
                more = True
                break
            page.append(found.as_dict())
    finally:
        close = getattr(streams, "close", None)  # a generator: its read transaction ends now, not at collection
        if close is not None:
            close()
    return json_response({"onboardings": page, "next": page[-1]["stream"] if more else None})


@router.get(
    "/onboardings/{stream}/events",
    tags=["audit"],
    response_model=None,
    responses={**_ok(EventsOut, "Its events, oldest first (the `history --json` shape)."), **_READ},
)
def events(stream: StreamPath, request: Request, token: Auditor) -> Response:
    """The onboarding's history."""
    history = _engine(request).history(stream)
    return json_response({"stream": stream, "events": [event.as_dict() for event in history]})


@router.get(
    "/onboardings/{stream}/replay",
    tags=["audit"],
    response_model=None,
    responses={**_ok(ReplayOut, "The onboarding rebuilt from its events alone."), **_READ},
)
def replay(
    stream: StreamPath,
    request: Request,
    token: Auditor,
    as_of: Annotated[
        str | None, Query(description="An ISO 8601 instant with its zone: the state as it stood then.", max_length=64)
    ] = None,
) -> Response:
    """Rebuild the onboarding from its events, optionally as it stood at ``as_of``."""
    return json_response(_engine(request).replay(stream, as_of=_instant("as_of", as_of)).as_dict())


@router.get(
    "/onboardings/{stream}/audit",
    tags=["audit"],
    response_model=None,
    responses={**_ok(AuditOut, "The onboarding and its saved key's verdict at the instant, from the log."), **_READ},
)
def audit(
    stream: StreamPath,
    request: Request,
    token: Auditor,
    at: Annotated[
        str | None, Query(description="An ISO 8601 instant with its zone; default: now.", max_length=64)
    ] = None,
) -> Response:
    """Was the key valid at ``at``? The state, the event behind it, the saved key and its verdict, its authority events."""
    return json_response(_engine(request).audit(stream, at=_instant("at", at)).as_dict())


def _instant(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{name} must be an ISO 8601 instant such as 2026-01-01T09:00:00Z, not {clipped(text, 40)!r}."
        ) from None
    if instant.tzinfo is None:
        raise InvalidInput(f"{name} must carry its zone (Z or +00:00): {clipped(text, 40)!r} has none.")
    return instant


@router.get(
    "/verify",
    tags=["audit"],
    response_model=None,
    responses={**_ok(VerifyOut, "What the check found (ok false: problems)."), **_READ},
)
def verify(request: Request, token: Auditor) -> Response:
    """Recompute every hash chain, check versions, legality and projections; each problem names its stream and version."""
    return json_response(_engine(request).verify().as_dict())


@router.get(
    "/digest",
    tags=["audit"],
    response_model=None,
    responses={**_ok(DigestOut, "One hash over the whole log."), **_READ},
)
def log_digest(request: Request, token: Auditor) -> Response:
    """The log's digest, to keep and check later with `keytrail check-digest`."""
    found = digest(_engine(request))
    return json_response(
        {"count": found.events, "digest": found.digest, "token": found.token, "last_position": found.last_position}
    )


@router.get(
    "/expiring",
    tags=["audit"],
    response_model=None,
    responses={**_ok(ExpiringOut, "Saved keys expiring within the window, soonest first."), **_READ},
)
def expiring_keys(
    request: Request, token: Auditor, within_days: Annotated[float, Query(ge=0, le=36500)] = 30
) -> Response:
    """Onboardings whose saved key expires (or expired) within ``within_days``."""
    found = expiring(_engine(request), timedelta(days=within_days))
    return json_response({"within_days": within_days, "expiring": [item.as_dict() for item in found]})


@router.post(
    "/accounts",
    tags=["admin"],
    status_code=201,
    response_model=None,
    responses={
        201: {"model": AccountOut, "description": "The account."},
        **problem_responses(401, 403, 409, 413, 422, 503),
    },
)
def create_account(body: AccountBody, request: Request, token: Admin) -> Response:
    """Create a company account in the key authority (never echoes the password)."""
    account = _engine(request).portal.create_account(body.email, body.password, body.company, actor=token.name)
    return json_response(account.as_dict(), status=201)


@router.post(
    "/keys/{key_id}/revoke",
    tags=["admin"],
    response_model=None,
    responses={**_ok(KeyInfoOut, "The key, revoked."), **problem_responses(401, 403, 404, 422, 503)},
)
def revoke_key(key_id: KeyIdPath, request: Request, token: Admin) -> Response:
    """Revoke an API key: from now on it verifies as invalid. Revoking twice keeps the first time."""
    engine = _engine(request)
    revoked = engine.portal.revoke_key(key_id, actor=token.name)
    return json_response(revoked.as_dict(engine.now()))
