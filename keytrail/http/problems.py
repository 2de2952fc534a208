"""Errors as RFC 9457 ``application/problem+json``: one ``type`` per class of keytrail's error tree.

The table (class -> status -> type) is the contract clients in other languages switch on; the
``detail`` is the error's message (a sentence with the facts, never a secret), and the facts a
client acts on come as members: ``state`` and ``allowed`` for an illegal transition,
``retry_after`` (and a ``Retry-After`` header) for a locked account or a busy database.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.responses import Response

from keytrail import errors
from keytrail.errors import AccountLocked, DatabaseBusy, IllegalTransition, KeytrailError

__all__ = [
    "MEDIA_TYPE",
    "PROBLEMS",
    "PROBLEM_TYPES",
    "Problem",
    "problem_of",
    "problem_response",
    "problem_type",
    "service_problem",
]

PROBLEM_BASE = "urn:keytrail:problem:"
MEDIA_TYPE = "application/problem+json"

# class -> (status, type's last part, title). Subclasses come before their bases: the first match wins.
PROBLEMS: dict[type[KeytrailError], tuple[int, str, str]] = {
    errors.IllegalTransition: (409, "illegal-transition", "The trigger is not allowed in this state"),
    errors.UnknownOnboarding: (404, "unknown-onboarding", "No such onboarding"),
    errors.UnknownDatabase: (503, "unknown-database", "No keytrail database there"),
    errors.UnknownKey: (404, "unknown-key", "No such API key"),
    errors.KeyUnusable: (422, "key-unusable", "The API key is revoked or expired"),
    errors.DuplicateAccount: (409, "duplicate-account", "The email is already registered"),
    errors.IdempotencyMismatch: (422, "idempotency-mismatch", "The idempotency key was used for another trigger"),
    errors.InvalidInput: (422, "invalid-input", "Invalid input"),
    errors.AccountLocked: (423, "account-locked", "The account is locked"),
    errors.AuthenticationFailed: (422, "authentication-failed", "Sign-in to the account site failed"),
    errors.ConcurrencyConflict: (409, "concurrency-conflict", "The onboarding moved"),
    errors.CorruptEvent: (500, "corrupt-event", "A stored event is not as keytrail wrote it"),
    errors.CorruptProjection: (500, "corrupt-projection", "A stored projection is not as keytrail wrote it"),
    errors.IntegrityViolation: (500, "integrity-violation", "The stored log is not as keytrail wrote it"),
    errors.SecretKeyError: (503, "secret-key", "The encryption key is missing or wrong"),
    errors.NotAKeytrailDatabase: (503, "not-a-keytrail-database", "Not a keytrail database"),
    errors.SchemaMismatch: (503, "schema-mismatch", "A keytrail database of another schema version"),
    errors.DatabaseBusy: (503, "database-busy", "The database is busy"),
    errors.DatabaseUnavailable: (503, "database-unavailable", "The database cannot be reached"),
    errors.StorageError: (503, "storage-error", "The database refused the operation"),
    errors.AuthorityUnavailable: (503, "authority-unavailable", "The key authority did not answer"),
    errors.KeytrailError: (500, "keytrail-error", "keytrail could not complete the request"),
}

# The service's own problems, which no engine error stands for.
SERVICE_PROBLEMS: dict[str, tuple[int, str]] = {
    "unauthorized": (401, "No valid API token"),
    "forbidden": (403, "The token's scope does not allow this"),
    "not-found": (404, "No such resource"),
    "unknown-trigger": (404, "No such trigger"),
    "method-not-allowed": (405, "Method not allowed"),
    "payload-too-large": (413, "The request body is too large"),
    "invalid-api-key": (401, "The API key is missing, invalid or expired"),
    "not-ready": (503, "The service is not ready"),
    "internal": (500, "Internal error"),
}

PROBLEM_TYPES: dict[str, int] = {
    **{PROBLEM_BASE + slug: status for status, slug, _ in PROBLEMS.values()},
    **{PROBLEM_BASE + slug: status for slug, (status, _) in SERVICE_PROBLEMS.items()},
}


def problem_type(slug: str) -> str:
    return PROBLEM_BASE + slug


class Problem(Exception):
    """A problem the service answers with: raised by routes and dependencies, rendered by the app's handler."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        members: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.members = members or {}
        self.headers = headers or {}


def service_problem(slug: str, detail: str, *, status: int | None = None, **members: Any) -> Problem:
    """One of the service's own problems (no engine error stands for it)."""
    known_status, title = SERVICE_PROBLEMS[slug]
    return Problem(status or known_status, slug, title, detail, members)


def _classify(exc: KeytrailError) -> tuple[int, str, str]:
    for cls in type(exc).__mro__:
        found = PROBLEMS.get(cls)
        if found is not None:
            return found
    return PROBLEMS[KeytrailError]  # pragma: no cover - every error is a KeytrailError


def problem_of(exc: KeytrailError, *, now: datetime | None = None, status: int | None = None) -> Problem:
    """The problem for an engine error: its class's status (unless ``status``) and type, its message, its facts."""
    known_status, slug, title = _classify(exc)
    problem = Problem(status or known_status, slug, title, str(exc))
    if isinstance(exc, IllegalTransition):
        problem.members = {
            "state": exc.state,
            "trigger": exc.trigger,
            "allowed": exc.allowed_now,
            "allowed_from": exc.allowed_from,
        }
    elif isinstance(exc, AccountLocked):
        seconds = 1
        if exc.retry_after is not None:
            seconds = max(1, exc.retry_after)
        problem.members = {"retry_after": seconds}
        problem.headers = {"Retry-After": str(seconds)}
    elif isinstance(exc, DatabaseBusy):
        problem.members = {"retry_after": 1}
        problem.headers = {"Retry-After": "1"}
    return problem


def problem_response(problem: Problem, *, request_id: str | None = None) -> Response:
    body: dict[str, Any] = {
        "type": problem_type(problem.slug),
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        **problem.members,
    }
    if request_id is not None:
        body["request_id"] = request_id
    headers = {"Cache-Control": "no-store", **problem.headers}
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(content, status_code=problem.status, headers=headers, media_type=MEDIA_TYPE)
