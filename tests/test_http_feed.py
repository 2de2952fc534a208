"""The feed over a real `keytrail serve`: a page of the settled global order, and server-sent events that resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keytrail.pgcluster import scratch_database
from tests.http_server import Served, serve


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(f"feed-{request.param}")
    if request.param == "sqlite":
        with serve(f"sqlite:///{folder}/keytrail.db", folder) as server:
            yield _tokens(server)
        return
    with scratch_database(request.getfixturevalue("postgres_server")) as url, serve(url, folder) as server:
        yield _tokens(server)


def _tokens(server: Served) -> Served:
    server.token("driver", "drive")
    server.token("auditor", "audit")
    return server


def _views(served: Served, *streams: str) -> None:
    with served.client(served.tokens["driver"]) as drive:
        for stream in streams:
            assert drive.post(f"/v1/onboardings/{stream}/access").status_code == 200


def _sse_events(lines: Iterator[str], count: int) -> list[tuple[int, dict[str, object]]]:
    """The next ``count`` events of a server-sent-events body: (id, data)."""
    found: list[tuple[int, dict[str, object]]] = []
    event_id: int | None = None
    for line in lines:
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            assert event_id is not None
            found.append((event_id, json.loads(line[6:])))
            if len(found) == count:
                return found
    raise AssertionError("the stream ended")


def test_pages_of_the_settled_order(served: Served) -> None:
    _views(served, "feed-a", "feed-b", "feed-a")
    with served.client(served.tokens["auditor"]) as audit:
        first = audit.get("/v1/events", params={"after": 0, "limit": 2}).json()
        rest = audit.get("/v1/events", params={"after": first["next"], "limit": 1000}).json()
        after_all = audit.get("/v1/events", params={"after": rest["next"]}).json()
    events = first["events"] + rest["events"]
    positions = [event["position"] for event in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert first["next"] == positions[1]
    mine = [(e["stream"], e["version"]) for e in events if str(e["stream"]).startswith("feed-")]
    assert mine[-3:] == [("feed-a", 1), ("feed-b", 1), ("feed-a", 2)]
    assert after_all == {"events": [], "next": rest["next"]}


def test_the_feed_needs_the_audit_scope_and_valid_bounds(served: Served) -> None:
    with served.client(served.tokens["driver"]) as drive:
        assert drive.get("/v1/events").status_code == 403
        assert drive.get("/v1/events/stream").status_code == 403
    with served.client(served.tokens["auditor"]) as audit:
        assert audit.get("/v1/events", params={"limit": 0}).status_code == 422
        assert audit.get("/v1/events", params={"after": -1}).status_code == 422
        bad = audit.get("/v1/events/stream", headers={"Last-Event-ID": "not-a-position"})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert httpx.get(served.url + "/v1/events").status_code == 401


def test_server_sent_events_follow_and_resume(served: Served) -> None:
    _views(served, "sse-a")
    with served.client(served.tokens["auditor"]) as audit:
        start = audit.get("/v1/events", params={"after": 0, "limit": 1000}).json()["next"]
        with audit.stream("GET", "/v1/events/stream", params={"after": start}, timeout=30) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            _views(served, "sse-b", "sse-c")  # committed while the stream is open: they arrive
            (first_id, first), (second_id, second) = _sse_events(lines, 2)
        assert (first["stream"], second["stream"]) == ("sse-b", "sse-c") and first_id < second_id
        headers = {"Last-Event-ID": str(first_id)}
        with audit.stream("GET", "/v1/events/stream", headers=headers, timeout=30) as resumed:
            [(resumed_id, again)] = _sse_events(resumed.iter_lines(), 1)
        assert (resumed_id, again["stream"]) == (second_id, "sse-c")  # resumes right after the last one seen


def test_the_feed_is_in_the_openapi_document(served: Served, tmp_path: Path) -> None:
    paths = httpx.get(served.url + "/openapi.json").json()["paths"]
    assert "/v1/events" in paths and "/v1/events/stream" in paths
