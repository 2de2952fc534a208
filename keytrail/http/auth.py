"""Who may call what: ``Authorization: Bearer TOKEN`` checked against the database's API tokens.

No or an unknown or revoked token is 401; a live token whose scope does not allow the route
is 403. The token's name is left in the request's state: it is the default actor of a
command and the access log's ``actor``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from keytrail.engine.tokens import ApiToken, Scope, Tokens
from keytrail.http.problems import Problem, service_problem

__all__ = ["Admin", "Auditor", "Driver", "Reader", "requires"]

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="keytrail API token",
    description="A token from `keytrail token create --name NAME --scope drive|audit|admin`.",
)


def _unauthorized(detail: str) -> Problem:
    problem = service_problem("unauthorized", detail)
    problem.headers = {"WWW-Authenticate": 'Bearer realm="keytrail"'}
    return problem


def requires(*scopes: Scope) -> Callable[..., ApiToken]:
    """A dependency that lets through a live token allowing one of ``scopes`` (admin allows all)."""
    needed = " or ".join(scopes)

    def dependency(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> ApiToken:
        if credentials is None:
            raise _unauthorized(
                "This endpoint needs an API token: send Authorization: Bearer TOKEN "
                "(create one with `keytrail token create`)."
            )
        tokens: Tokens = request.app.state.tokens
        token = tokens.check(credentials.credentials)
        if token is None:
            raise _unauthorized("The API token is unknown or revoked.")
        request.state.actor = token.name
        if not any(token.allows(scope) for scope in scopes):
            raise service_problem(
                "forbidden",
                f"The token {token.name!r} has the scope {token.scope}; this endpoint needs {needed}.",
                scope=token.scope,
                needed=list(scopes),
            )
        return token

    return dependency


Driver = Annotated[ApiToken, Depends(requires("drive"))]
Reader = Annotated[ApiToken, Depends(requires("drive", "audit"))]
Auditor = Annotated[ApiToken, Depends(requires("audit"))]
Admin = Annotated[ApiToken, Depends(requires("admin"))]
