"""The one command path: refusals, idempotent retries and threads sharing one engine."""

from __future__ import annotations

from datetime import timedelta

import pytest

from keytrail import Engine, State
from keytrail.errors import ConcurrencyConflict, IllegalTransition
from tests.conftest import MovableClock
from tests.helpers import drive_to


def test_a_refused_command_writes_nothing(engine: Engine) -> None:
    """An illegal trigger or a stale expected version writes nothing and says why."""
    drive_to(engine, "acme", State.StoreIntegration)
    with pytest.raises(IllegalTransition, match="acme is StoreIntegration"):
        engine.proceed("acme")
    with pytest.raises(ConcurrencyConflict, match="not the expected version 3"):
        engine.access("acme", expected_version=3)
    assert engine.access("acme", expected_version=7).version == 8
    assert len(engine.history("acme")) == 8


def test_idempotent_access_keeps_its_first_outcome(engine: Engine, clock: MovableClock) -> None:
    """An idempotency key returns the first outcome, found by the command's joined read."""
    drive_to(engine, "acme", State.StoreIntegration)
    first = engine.access("acme", idempotency_key="view-1")
    clock.advance(timedelta(seconds=5))
    again = engine.access("acme", idempotency_key="view-1")
    assert (first.version, False) == (again.version, first.replayed)
    assert again.replayed


def test_one_engine_shared_by_threads_keeps_every_stream_whole(engine: Engine) -> None:
    """Threads share one engine: the pinned connection serves one at a time, the pool the others."""
    import threading

    for n in range(4):
        drive_to(engine, f"store-{n}", State.StoreIntegration)
    done: list[int] = []
    failures: list[BaseException] = []

    def visit(n: int) -> None:
        try:
            for _ in range(15):
                engine.access(f"store-{n}")
                done.append(n)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=visit, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(done) == 60
    assert [engine.status(f"store-{n}").version for n in range(4)] == [22, 22, 22, 22]
    assert engine.verify().ok
