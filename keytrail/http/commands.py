"""``POST /v1/onboardings/{stream}/{trigger}``: the seven commands, one route each, named as in the event log.

``Idempotency-Key`` is the engine's idempotency key; ``If-Match: "<version>"`` its
``expected_version``, and a stale one is answered 412 (nothing written). Every answer carries
``ETag: "<version>"``; the two that carry a key (``generate_key``, ``copy_key``) also carry
``Cache-Control: no-store``. The actor defaults to the token's name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from time import perf_counter
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from starlette.responses import Response

from keytrail.engine import Engine, KeyOutcome, Outcome
from keytrail.engine.tokens import ApiToken
from keytrail.errors import ConcurrencyConflict, InvalidInput
from keytrail.http.auth import Driver
from keytrail.http.metrics import Metrics
from keytrail.http.models import (
    ActorBody,
    CopyKeyBody,
    GenerateKeyBody,
    KeyOutcomeOut,
    OutcomeOut,
    ProblemOut,
    RegisterBody,
    SaveConfigBody,
    SignInBody,
)
from keytrail.http.problems import problem_of, service_problem
from keytrail.inputs import clipped
from keytrail.states import Trigger

__all__ = ["StreamPath", "json_response", "parse_if_match", "router"]

router = APIRouter(prefix="/v1/onboardings", tags=["commands"])

# Documented, not enforced here: the engine refuses a bad id with its own sentence, as the CLI does.
StreamPath = Annotated[
    str,
    Path(
        description="The onboarding id: 1 to 128 letters, digits and . _ - : @, beginning with a letter or digit.",
        json_schema_extra={"pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"},
    ),
]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Repeat-safe: the same key on the same onboarding returns the first outcome, writing nothing.",
    ),
]
IfMatchHeader = Annotated[
    str | None,
    Header(alias="If-Match", description='The version the command expects, as the ETag gives it: "3". 412 if stale.'),
]

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemOut, "content": {"application/problem+json": {}}, "description": what}
    for status, what in (
        (401, "No, an unknown or a revoked token."),
        (403, "The token's scope does not allow commands."),
        (404, "No such onboarding (copy_key's key_id: no such key)."),
        (409, "The trigger is not allowed in the onboarding's state (`state`, `allowed`), or the email is taken."),
        (412, "If-Match is not the onboarding's version; nothing was written."),
        (413, "The body is over the size limit."),
        (422, "Invalid input, or wrong credentials; nothing was written."),
        (423, "The account is locked (`retry_after`, Retry-After)."),
        (503, "The database or the key authority cannot be reached."),
    )
}


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer, written once (no validation pass: the engine's ``as_dict`` shapes are the contract)."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(content, status_code=status, headers=headers, media_type="application/json")


def parse_if_match(value: str | None) -> int | None:
    """The version of ``If-Match: "<version>"`` (a weak ``W/"3"`` too), or None without the header."""
    if value is None:
        return None
    text = value.strip()
    text = text.removeprefix("W/")
    inner = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else ""
    if not (inner.isascii() and inner.isdigit() and len(inner) <= 18):
        raise InvalidInput(
            f'If-Match takes one version in double quotes, as the ETag gives it (such as "3"), '
            f"not {clipped(value, 40)!r}; nothing was written."
        )
    return int(inner)


def _drive(
    request: Request,
    trigger: Trigger,
    token: ApiToken,
    actor: str | None,
    idempotency_key: str | None,
    if_match: str | None,
    call: Callable[..., Outcome],
) -> Response:
    engine: Engine = request.app.state.engine
    metrics: Metrics = request.app.state.metrics
    expected = parse_if_match(if_match)
    started = perf_counter()
    try:
        outcome = call(
            actor=token.name if actor is None else actor, idempotency_key=idempotency_key, expected_version=expected
        )
    except ConcurrencyConflict as exc:
        if expected is not None:  # the caller's condition failed: HTTP's precondition status
            raise problem_of(exc, now=engine.now(), status=412) from None
        raise
    finally:
        metrics.command_seconds.labels(trigger.value).observe(perf_counter() - started)
    if not outcome.replayed:
        metrics.transitions.labels(trigger.value, outcome.state.value).inc()
    headers = {"ETag": f'"{outcome.version}"'}
    if isinstance(outcome, KeyOutcome):
        headers["Cache-Control"] = "no-store"
    return json_response(outcome.as_dict(), headers=headers)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


_OUTCOME: dict[int | str, dict[str, Any]] = {200: {"model": OutcomeOut, "description": "Where the command left it."}}
_KEY_OUTCOME: dict[int | str, dict[str, Any]] = {
    200: {"model": KeyOutcomeOut, "description": "Where the command left it, and the key (Cache-Control: no-store)."}
}


@router.post("/{stream}/access", response_model=None, responses={**_OUTCOME, **_PROBLEMS})
def access(
    stream: StreamPath,
    request: Request,
    token: Driver,
    body: ActorBody | None = None,
    idempotency_key: IdempotencyHeader = None,
    if_match: IfMatchHeader = None,
) -> Response:
    """Open the Amazon Sales Channel: the saved key is verified (Validated, or Prompted with a reason)."""
    actor = None if body is None else body.actor
    return _drive(
        request, Trigger.access, token, actor, idempotency_key, if_match, partial_of(request, "access", stream)
    )


@router.post("/{stream}/sign_in", response_model=None, responses={**_OUTCOME, **_PROBLEMS})
def sign_in(
    stream: StreamPath,
    request: Request,
    token: Driver,
    body: SignInBody,
    idempotency_key: IdempotencyHeader = None,
    if_match: IfMatchHeader = None,
) -> Response:
    """Sign in to the Commerce account (without a password: reuse this onboarding's live session)."""
    call = partial_of(request, "sign_in", stream, email=body.email, password=body.password)
    return _drive(request, Trigger.sign_in, token, body.actor, idempotency_key, if_match, call)


@router.post("/{stream}/register", response_model=None, responses={**_OUTCOME, **_PROBLEMS})
def register(
    stream: StreamPath,
    request: Request,
    token: Driver,
    body: RegisterBody,
    idempotency_key: IdempotencyHeader = None,
    if_match: IfMatchHeader = None,
) -> Response:
    """Register the company's account, then sign in with it."""
    call = partial_of(request, "register", stream, email=body.email, password=body.password, company=body.company)
    return _drive(request, Trigger.register, token, body.actor, idempotency_key, if_match, call)


@router.post("/{stream}/generate_key", response_model=None, responses={**_KEY_OUTCOME, **_PROBLEMS})
def generate_key(
    stream: StreamPath,
    request: Request,
    token: Driver,
    body: GenerateKeyBody,
    idempotency_key: IdempotencyHeader = None,
    if_match: IfMatchHeader = None,
) -> Response:
    """Create an API key in the portal; the response carries it (and says Cache-Control: no-store)."""
    call = partial_of(request, "generate_key", stream, description=body.description)
    return _drive(request, Trigger.generate_key, token, body.actor, idempotency_key, if_match, call)


@router.post("/{stream}/copy_key", response_model=None, responses={**_KEY_OUTCOME, **_PROBLEMS})
def copy_key(
    stream: StreamPath,
    request: Request,
    token: Driver,
    body: CopyKeyBody | None = None,
    idempotency_key: IdempotencyHeader = None,
    if_match: IfMatchHeader = None,
) -> Response:
    """The portal's "Copy": the key just generated, or another key of the account by ``key_id``."""
    key_id = None if body is None else body.key_id
    actor = None if body is None else body.actor
    call = partial_of(request, "copy_key", stream, key_id=key_id)
    return _drive(request, Trigger.copy_key, token, actor, idempotency_key, if_match, call)


@router.post("/{stream}/save_config", response_model=None, responses={**_OUTCOME, **_PROBLEMS})
def save_config(
    stream: StreamPath,
    request: Request,
    token: Driver,
    body: SaveConfigBody,
    idempotency_key: IdempotencyHeader = None,
    if_match: IfMatchHeader = None,
) -> Response:
    """Paste the key into "Production Api key" and Save Config (asterisks only keep the saved key)."""
    call = partial_of(request, "save_config", stream, key=body.key)
    return _drive(request, Trigger.save_config, token, body.actor, idempotency_key, if_match, call)


@router.post("/{stream}/proceed", response_model=None, responses={**_OUTCOME, **_PROBLEMS})
def proceed(
    stream: StreamPath,
    request: Request,
    token: Driver,
    body: ActorBody | None = None,
    idempotency_key: IdempotencyHeader = None,
    if_match: IfMatchHeader = None,
) -> Response:
    """Go on to Store Integration, the key verified again at this instant."""
    actor = None if body is None else body.actor
    return _drive(
        request, Trigger.proceed, token, actor, idempotency_key, if_match, partial_of(request, "proceed", stream)
    )


@router.post("/{stream}/{trigger}", include_in_schema=False)
def unknown_trigger(stream: StreamPath, trigger: str, token: Driver) -> Response:
    """Any other trigger: a problem naming the seven there are, rather than a bare 404."""
    raise service_problem(
        "unknown-trigger",
        f"{clipped(trigger, 40)!r} is not a trigger; the triggers are {', '.join(t.value for t in Trigger)}.",
        trigger=clipped(trigger, 40),
        triggers=[t.value for t in Trigger],
    )


def partial_of(request: Request, command: str, stream: str, **arguments: Any) -> Callable[..., Outcome]:
    """The engine's command ``command`` on ``stream`` with its own arguments, awaiting the common ones."""
    method: Callable[..., Outcome] = getattr(_engine(request), command)

    def call(**common: Any) -> Outcome:
        return method(stream, **arguments, **common)

    return call
