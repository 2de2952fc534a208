"""An engine shared by threads, read while written, and closed: found by review, kept by these tests."""

from __future__ import annotations

import threading

import pytest

from keytrail import Engine, State
from keytrail.errors import StorageError
from tests.conftest import MovableClock
from tests.helpers import drive_to


def _hammer(engine: Engine, streams: list[str], calls: int, errors: list[BaseException]) -> None:
    try:
        for n in range(calls):
            engine.access(streams[n % len(streams)])
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_an_in_memory_engine_shared_by_threads_keeps_every_stream_whole() -> None:
    """An in-memory database is one connection: threads take turns instead of sharing a transaction."""
    with Engine.open("sqlite://") as engine:
        streams = [f"store-{n}" for n in range(4)]
        for stream in streams:
            drive_to(engine, stream, State.StoreIntegration)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_hammer, args=(engine, streams, 60, errors)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        report = engine.verify()
        assert report.ok, report.problems
        assert report.events == 4 * 7 + 6 * 60 + 1 + 4  # and the authority's: an account, a key per store


def test_verify_while_another_thread_writes_sees_one_snapshot(db_url: str, clock: MovableClock) -> None:
    """verify reads the projection and the events as of one instant, so live writes are no false problems."""
    with Engine.open(db_url, clock=clock) as engine:
        streams = [f"store-{n:03d}" for n in range(40)]
        for stream in streams:
            engine.access(stream)
        errors: list[BaseException] = []
        writer = threading.Thread(target=_hammer, args=(engine, streams, 400, errors))
        writer.start()
        reports = []
        while writer.is_alive():
            reports.append(engine.verify())
        writer.join()
        assert errors == []
        assert reports
        assert [p for report in reports for p in report.problems] == []


def test_a_closed_engine_refuses_to_work(db_url: str, clock: MovableClock) -> None:
    engine = Engine.open(db_url, clock=clock)
    engine.access("acme")
    engine.close()
    for use in (lambda: engine.access("acme"), lambda: engine.state("acme"), engine.verify):
        with pytest.raises(StorageError, match="was closed"):
            use()
