"""``create_app``: the FastAPI application over one engine, for ``keytrail serve`` or your own ASGI stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from keytrail import __version__
from keytrail.engine import Engine
from keytrail.engine.tokens import Tokens
from keytrail.errors import InvalidInput, KeytrailError
from keytrail.http import commands, feed, ops, reads, ui
from keytrail.http.metrics import Metrics
from keytrail.http.middleware import ServiceMiddleware
from keytrail.http.problems import Problem, problem_of, problem_response, service_problem
from keytrail.inputs import check_count

__all__ = ["DEFAULT_MAX_BODY", "create_app"]

# The largest body the service reads: every request body is a few hundred bytes.
DEFAULT_MAX_BODY = 64 * 1024

_DESCRIPTION = """\
The Amazon Sales Channel API-key onboarding as an audited state machine, over HTTP.

Every endpoint but the operations ones and `/gateway/apikeycheck` needs
`Authorization: Bearer TOKEN` (`keytrail token create --name NAME --scope drive|audit|admin`).
Errors are RFC 9457 `application/problem+json`; their `type` names the class of error.
"""


def _request_id(request: Request) -> str | None:
    found = request.scope.get("state", {}).get("request_id")
    return found if isinstance(found, str) else None


def _validation_detail(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The first refusal as a sentence, and every refusal's place and message (never the value sent)."""
    listed: list[dict[str, Any]] = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": error.get("type"),
        }
        for error in errors
    ]
    if not listed:
        return "The request is not valid; nothing was done.", listed
    first = listed[0]
    where = ".".join(first["loc"]) or "the request"
    more = f" (and {len(listed) - 1} more)" if len(listed) > 1 else ""
    return f"The request is not valid: {where}: {first['msg']}{more}. Nothing was done.", listed


def _problem_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, every error response described as what it is: problem+json.

    FastAPI describes a declared error model as ``application/json`` and adds its own 422 shape;
    the service answers every error with ``application/problem+json``, so the document says so.
    """
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    problem = {"schema": {"$ref": "#/components/schemas/ProblemOut"}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault("413", {"description": "The body is over the size limit."})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {"application/problem+json": problem}
                    if response.get("description") == "Validation Error":
                        response["description"] = "Invalid input; nothing was done."
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = document
    return document


def create_app(engine_or_url: Engine | str, *, max_body: int = DEFAULT_MAX_BODY) -> FastAPI:
    """The HTTP service of DESIGN.md section 9 over ``engine_or_url``.

    Given a URL, the app opens its engine now (so a bad URL fails here, not at the first
    request) and closes it at shutdown; given an engine, the caller keeps owning it.
    """
    check_count("max_body", max_body, least=1, most=64 * 1024 * 1024)
    owned = isinstance(engine_or_url, str)
    engine = Engine.open(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                engine.close()

    app = FastAPI(
        title="keytrail",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.tokens = Tokens(engine)
    app.state.metrics = metrics = Metrics(lambda: engine.commit_stats)
    app.include_router(commands.router)
    app.include_router(reads.router)
    app.include_router(feed.router)
    app.include_router(ops.router)
    app.include_router(ui.router)

    def answer(request: Request, problem: Problem) -> Response:
        return problem_response(problem, request_id=_request_id(request))

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> Response:
        return answer(request, exc)

    @app.exception_handler(KeytrailError)
    async def on_keytrail_error(request: Request, exc: KeytrailError) -> Response:
        return answer(request, problem_of(exc, now=engine.now()))

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(request: Request, exc: RequestValidationError) -> Response:
        detail, listed = _validation_detail(list(exc.errors()))
        problem = problem_of(InvalidInput(detail))
        problem.members = {"errors": listed}
        return answer(request, problem)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            problem = service_problem("not-found", f"There is no endpoint {request.url.path[:200]}.")
        elif exc.status_code == 400:  # FastAPI's answer to a body that is not even text
            problem = problem_of(InvalidInput("The request body is not JSON in UTF-8; nothing was done."))
        elif exc.status_code == 405:
            problem = service_problem(
                "method-not-allowed", f"{request.method} is not allowed on {request.url.path[:200]}."
            )
            problem.headers = dict(exc.headers or {})
        else:  # pragma: no cover - Starlette raises only those two for routing
            problem = service_problem("internal", str(exc.detail)[:200], status=exc.status_code)
        return answer(request, problem)

    app.openapi = lambda: _problem_document(app)  # type: ignore[method-assign]
    app.add_middleware(ServiceMiddleware, max_body=max_body, metrics=metrics)
    return app
