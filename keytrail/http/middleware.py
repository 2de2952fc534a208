"""What every request goes through: a request id, the body size limit, the access log and the request metrics.

A plain ASGI middleware (no per-request task or stream wrapping): the body is read here in
full, up to the limit, before any route sees it, so an oversized body is refused with 413 and
nothing runs. The access log line carries the method, path, route, status, time, actor (the
token's name) and request id: never a body, never a header's value.
"""

from __future__ import annotations

import re
import uuid
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keytrail.http.metrics import Metrics
from keytrail.http.problems import problem_response, service_problem
from keytrail.logs import get_logger

__all__ = ["ServiceMiddleware"]

_log = get_logger("keytrail.http")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


class ServiceMiddleware:
    """Request id, body limit, access log and request metrics around the whole app."""

    def __init__(self, app: ASGIApp, *, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        given = (_header(scope, b"x-request-id") or b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = [500]
        response_started = [False]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                response_started[0] = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("ascii"))]
            await send(message)

        try:
            body = await self._body(scope, receive)
            if body is None:
                problem = service_problem(
                    "payload-too-large",
                    f"The request body is larger than the limit of {self.max_body} bytes; nothing was done.",
                    limit=self.max_body,
                )
                await problem_response(problem, request_id=request_id)(scope, receive, send_with_id)
                return
            await self.app(scope, _replay(body, receive), send_with_id)
        except _Disconnected:
            status[0] = 499  # nginx's "client closed request": nothing was run, nothing is sent
        except Exception as exc:  # a bug: the client gets a problem with the request id, the log gets the type
            _log.error("request_failed", request_id=request_id, error=type(exc).__name__, exc_info=True)
            if not response_started[0]:
                problem = service_problem("internal", f"The request failed unexpectedly (request id {request_id}).")
                await problem_response(problem, request_id=request_id)(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope["method"], str(status[0])).inc()
            _log.info(
                "request",
                request_id=request_id,
                method=scope["method"],
                path=scope["path"],
                route=template,
                status=status[0],
                duration_ms=round((perf_counter() - started) * 1000, 3),
                actor=state.get("actor"),
            )

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole request body, or None when it is over the limit (by its Content-Length or as it arrives)."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to run
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _Disconnected(Exception):
    """The client disconnected before its body arrived."""


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body read already, then waits for the disconnect as usual."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
