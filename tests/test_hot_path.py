"""The hot path (access and proceed on a tracked stream) writes exactly the rows and hashes of the generic path."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keytrail import Engine, State
from keytrail.errors import ConcurrencyConflict, IllegalTransition
from keytrail.persistence import EventStore
from keytrail.persistence.store import events_table, streams_table
from keytrail.pgcluster import scratch_database
from keytrail.portal import AuthorityRecords, KeyAuthority, SavedKey, Verdict
from keytrail.states import Reason
from tests.conftest import MovableClock
from tests.helpers import drive_to, put_saved_key


class InTransaction:
    """The embedded authority behind a plug-in verifier: the hot path is for the authority itself only."""

    def __init__(self, authority: KeyAuthority) -> None:
        self.authority = authority

    def verify(self, saved: SavedKey | None, at: datetime) -> Verdict:
        return self.authority.verify(saved, at)

    def verify_in(self, records: AuthorityRecords, saved: SavedKey | None, at: datetime) -> Verdict:
        return self.authority.verify_in(records, saved, at)


@pytest.fixture
def generic_url(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the same backend as ``db_url``."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/generic.db"
        return
    with scratch_database(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture
def restart_ids(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Account ids and keys from a counter, restarted by the returned call, so two databases driven alike match."""
    counter = [itertools.count()]
    monkeypatch.setattr("keytrail.portal.authority.uuid.uuid4", lambda: uuid.UUID(int=next(counter[0])))
    monkeypatch.setattr("keytrail.portal.authority.secrets.token_urlsafe", lambda n: f"{next(counter[0]):043d}")
    monkeypatch.setattr("keytrail.portal.authority.secrets.token_hex", lambda n: f"{next(counter[0]):016x}")

    def restart() -> None:
        counter[0] = itertools.count()

    return restart


def _scenario(engine: Engine, clock: MovableClock) -> None:
    """Every verdict the hot path can reach: valid, expired, invalid (unknown and revoked), missing; actors too."""
    engine.access("never-saved")  # first event: the generic path
    engine.access("never-saved", actor="admin@acme")  # missing, on a tracked stream
    key = drive_to(engine, "acme", State.StoreIntegration)
    assert key is not None
    for n in range(3):
        clock.advance(seconds=1)
        assert engine.access("acme", actor=None if n else "cron").state is State.StoreIntegration
    put_saved_key(engine, "acme", "kt_" + "u" * 43)  # a key the authority does not know
    clock.advance(seconds=1)
    assert engine.access("acme").reason is Reason.invalid
    put_saved_key(engine, "acme", key)
    clock.advance(seconds=1)
    assert engine.access("acme").state is State.Validated
    assert engine.proceed("acme").state is State.StoreIntegration
    clock.advance(days=366)  # past the key's expiry
    assert engine.access("acme").reason is Reason.expired
    clock.advance(days=-366)
    key_id = engine.status("acme").key_id
    assert key_id is not None
    engine.portal.revoke_key(key_id)
    clock.advance(seconds=1)
    assert engine.access("acme").reason is Reason.invalid


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.database.read() as conn:
        events = conn.execute(sa.select(events_table).order_by(events_table.c.position)).all()
        streams = conn.execute(sa.select(streams_table).order_by(streams_table.c.stream_id)).all()
        raw: list[tuple[Any, ...]] = []
        if engine.database.dialect == "sqlite":  # the stored text itself, byte for byte
            raw = [tuple(r) for r in conn.exec_driver_sql("SELECT data, occurred_at FROM events ORDER BY position")]
            raw += [tuple(r) for r in conn.exec_driver_sql("SELECT stream_id, updated_at FROM streams ORDER BY 1")]
    return {"events": [tuple(r) for r in events], "streams": [tuple(r) for r in streams], "raw": raw}


def test_the_hot_path_writes_the_rows_of_the_generic_path(
    db_url: str, generic_url: str, restart_ids: Callable[[], None]
) -> None:
    """Same scenario on two databases, one with the hot path off: identical events, hashes and projections."""
    hot_clock, generic_clock = MovableClock(), MovableClock()
    hot = Engine.open(db_url, clock=hot_clock)
    generic = Engine.open(generic_url, clock=generic_clock)
    generic.verifier = InTransaction(generic.portal)  # every command through the SQLAlchemy Core path
    try:
        restart_ids()
        _scenario(hot, hot_clock)
        restart_ids()
        appended: list[str] = []
        original = EventStore.append

        def spy(self: EventStore, *args: Any, **kwargs: Any) -> Any:
            appended.append(args[1])
            return original(self, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(EventStore, "append", spy)
            _scenario(generic, generic_clock)
        assert appended  # the generic engine really took the generic path
        assert _rows(generic) == _rows(hot)
        assert hot.verify().ok
    finally:
        hot.close()
        generic.close()


def test_access_on_a_tracked_stream_takes_the_hot_path(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a stream has a projection, access and proceed run without the generic append."""
    drive_to(engine, "acme", State.Validated)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the generic path ran")

    monkeypatch.setattr(EventStore, "append", refuse)
    assert engine.proceed("acme").state is State.StoreIntegration
    assert engine.access("acme").version == 8


def test_the_hot_path_refuses_like_the_generic_path(engine: Engine) -> None:
    """An illegal trigger or a stale expected version writes nothing and says why."""
    drive_to(engine, "acme", State.StoreIntegration)
    with pytest.raises(IllegalTransition, match="acme is StoreIntegration"):
        engine.proceed("acme")
    with pytest.raises(ConcurrencyConflict, match="not the expected version 3"):
        engine.access("acme", expected_version=3)
    assert engine.access("acme", expected_version=7).version == 8
    assert len(engine.history("acme")) == 8


def test_idempotent_access_keeps_its_first_outcome(engine: Engine, clock: MovableClock) -> None:
    """An idempotency key still returns the first outcome (that command takes the generic path)."""
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
