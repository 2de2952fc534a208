"""The log as a feed over HTTP: ``GET /v1/events`` (a page of the settled global order) and
``GET /v1/events/stream`` (server-sent events, ``id:`` = position, resumable with ``Last-Event-ID``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from keytrail.engine import Engine
from keytrail.errors import InvalidInput
from keytrail.http.auth import Auditor
from keytrail.http.commands import json_response
from keytrail.http.models import FeedOut
from keytrail.http.reads import problem_responses

__all__ = ["router"]

router = APIRouter(prefix="/v1")
After = Annotated[int, Query(ge=0, le=2**62, description="The position after which to start (0: the beginning).")]
# A stream idle this long sends a comment line, so that proxies keep the connection and a gone client is noticed.
_HEARTBEAT = 15.0
_POLL_CAP = 0.5


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


@router.get(
    "/events",
    tags=["audit"],
    response_model=None,
    responses={
        200: {"model": FeedOut, "description": "The next events of the settled global order, and `next`."},
        **problem_responses(401, 403, 422, 500, 503),
    },
)
def events(
    request: Request,
    token: Auditor,
    after: After = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """A page of the log in its settled global order: it never skips an event that commits late."""
    return json_response(_engine(request).feed(after, limit).as_dict())


def _frame(event: dict[str, Any], position: int) -> bytes:
    return f"id: {position}\nevent: event\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


@router.get(
    "/events/stream",
    tags=["audit"],
    response_model=None,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events: one `event` per log event, `id:` its position, forever.",
        },
        **problem_responses(401, 403, 422, 500, 503),
    },
)
async def event_stream(
    request: Request,
    token: Auditor,
    after: After = 0,
    last_event_id: Annotated[str | None, Header(description="Resume after this position (sent on reconnect).")] = None,
) -> Response:
    """Every event after ``after`` (or ``Last-Event-ID``), then each new one as it settles."""
    engine = _engine(request)
    if last_event_id is not None:
        if not last_event_id.isdigit() or len(last_event_id) > 19:
            raise InvalidInput("Last-Event-ID must be a position: a whole number of at least 0.")
        after = int(last_event_id)
    first = await run_in_threadpool(engine.feed, after, 500)  # errors answer as problems, before streaming

    async def frames() -> AsyncIterator[bytes]:
        page, pause, idle = first, 0.001, 0.0
        while True:
            for event in page.events:
                yield _frame({"stream": event.stream, **event.as_dict()}, event.position)
            if page.events:
                pause, idle = 0.001, 0.0
            else:
                if idle >= _HEARTBEAT:
                    yield b": keep-alive\n\n"
                    idle = 0.0
                if await request.is_disconnected():
                    return
                await asyncio.sleep(pause)
                idle += pause
                pause = min(pause * 2, _POLL_CAP)
            page = await run_in_threadpool(engine.feed, page.next, 500)

    return StreamingResponse(frames(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
