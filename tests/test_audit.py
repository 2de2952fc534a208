"""Auditors' guarantees: every kind of tampering is found and named; concurrent writers never fork a stream."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keytrail import Engine, State
from keytrail.errors import ConcurrencyConflict
from keytrail.events import GENESIS_HASH, RecordedEvent, event_hash
from keytrail.persistence.store import events_table, streams_table
from tests.conftest import MovableClock
from tests.helpers import drive_to


def _tamper(engine: Engine, change: Callable[[Connection], object]) -> None:
    with engine.database.write() as conn:
        change(conn)


def _where(stream: str, version: int) -> sa.ColumnElement[bool]:
    return sa.and_(events_table.c.stream_id == stream, events_table.c.version == version)


@pytest.fixture
def logged(engine: Engine) -> Engine:
    for name in ("store-a", "store-b", "store-c"):
        drive_to(engine, name, State.StoreIntegration)
    assert engine.verify().ok
    return engine


def test_an_edited_row_is_found(logged: Engine) -> None:
    _tamper(logged, lambda c: c.execute(sa.update(events_table).where(_where("store-b", 3)).values(actor="mallory")))
    report = logged.verify()
    assert not report.ok
    assert [(p.stream, p.version, p.kind) for p in report.problems] == [("store-b", 3, "hash")]


def test_an_edited_row_with_a_recomputed_hash_is_found(logged: Engine) -> None:
    """Rewriting a row and its hash breaks the next row's chain link."""
    with logged.database.read() as conn:
        row = conn.execute(sa.select(events_table).where(_where("store-a", 5))).one()._asdict()
    row["actor"] = "mallory"
    new_hash = event_hash(row["prev_hash"], RecordedEvent(**row).hashed_fields())
    _tamper(
        logged,
        lambda c: c.execute(sa.update(events_table).where(_where("store-a", 5)).values(actor="mallory", hash=new_hash)),
    )
    problems = logged.verify().problems
    assert [(p.stream, p.version, p.kind) for p in problems] == [("store-a", 6, "chain")]


def test_an_edited_destination_is_an_illegal_step(logged: Engine) -> None:
    _tamper(logged, lambda c: c.execute(sa.update(events_table).where(_where("store-a", 5)).values(dest="Validated")))
    problems = logged.verify().problems
    assert [(p.stream, p.version) for p in problems] == [("store-a", 5)]
    assert [(p.version, p.kind) for p in logged.replay("store-a").problems] == [(5, "illegal"), (6, "discontinuous")]


def test_a_deleted_row_is_found(logged: Engine) -> None:
    _tamper(logged, lambda c: c.execute(sa.delete(events_table).where(_where("store-c", 4))))
    problems = logged.verify().problems
    assert [(p.stream, p.version, p.kind) for p in problems] == [("store-c", 4, "missing")]


def test_a_deleted_last_row_is_found_through_the_projection(logged: Engine) -> None:
    _tamper(logged, lambda c: c.execute(sa.delete(events_table).where(_where("store-c", 7))))
    problems = logged.verify().problems
    assert [(p.stream, p.version, p.kind) for p in problems] == [("store-c", 7, "projection")]


def test_an_inserted_row_is_found(logged: Engine) -> None:
    def insert(conn: Connection) -> None:
        conn.execute(
            sa.update(events_table)
            .where(events_table.c.stream_id == "store-a", events_table.c.version >= 3)
            .values(version=events_table.c.version + 100)
        )
        conn.execute(
            sa.update(events_table)
            .where(events_table.c.stream_id == "store-a", events_table.c.version >= 103)
            .values(version=events_table.c.version - 99)
        )
        row = conn.execute(sa.select(events_table).where(_where("store-a", 2))).one()._asdict()
        row.update(version=3, trigger="access", source="SignedIn", dest="Prompted", reason="missing")
        del row["position"]
        conn.execute(sa.insert(events_table), row)

    _tamper(logged, insert)
    problems = logged.verify().problems
    assert [(p.stream, p.version) for p in problems] == [("store-a", 3)]


def test_reordered_rows_are_found(logged: Engine) -> None:
    def swap(conn: Connection) -> None:
        conn.execute(sa.update(events_table).where(_where("store-b", 2)).values(version=-2))
        conn.execute(sa.update(events_table).where(_where("store-b", 3)).values(version=2))
        conn.execute(sa.update(events_table).where(_where("store-b", -2)).values(version=3))

    _tamper(logged, swap)
    problems = logged.verify().problems
    assert [(p.stream, p.version) for p in problems] == [("store-b", 2)]


def test_a_forged_projection_is_found(logged: Engine) -> None:
    _tamper(
        logged,
        lambda c: c.execute(
            sa.update(streams_table).where(streams_table.c.stream_id == "store-c").values(state="Validated")
        ),
    )
    problems = logged.verify().problems
    assert [(p.stream, p.version, p.kind) for p in problems] == [("store-c", 7, "projection")]


def test_an_illegal_step_with_a_valid_chain_is_found(logged: Engine) -> None:
    """Someone who recomputes every hash still cannot make an illegal step pass."""

    def forge(conn: Connection) -> None:
        rows = [
            r._asdict()
            for r in conn.execute(
                sa.select(events_table).where(events_table.c.stream_id == "store-a").order_by(events_table.c.version)
            )
        ]
        rows[1]["dest"] = "StoreIntegration"
        prev = GENESIS_HASH
        for row in rows:
            row["prev_hash"], row["hash"] = prev, event_hash(prev, RecordedEvent(**row).hashed_fields())
            prev = row["hash"]
            conn.execute(
                sa.update(events_table)
                .where(events_table.c.position == row["position"])
                .values(dest=row["dest"], prev_hash=row["prev_hash"], hash=row["hash"])
            )
        conn.execute(sa.update(streams_table).where(streams_table.c.stream_id == "store-a").values(head_hash=prev))

    _tamper(logged, forge)
    problems = logged.verify().problems
    assert [(p.stream, p.version, p.kind) for p in problems] == [("store-a", 2, "illegal")]
    assert not logged.replay("store-a").ok


def test_verify_one_stream(logged: Engine) -> None:
    _tamper(logged, lambda c: c.execute(sa.update(events_table).where(_where("store-b", 3)).values(actor="x")))
    assert logged.verify("store-a").ok
    assert not logged.verify("store-b").ok


def test_two_engines_racing_on_one_stream_never_fork_it(db_url: str, clock: MovableClock) -> None:
    """Both engines fire access at once, many times; every command lands (retrying) and versions stay 1..n."""
    engines = [Engine.open(db_url, clock=clock, busy_timeout=30, retries=50) for _ in range(2)]
    try:
        drive_to(engines[0], "acme", State.StoreIntegration)
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def hammer(engine: Engine) -> None:
            start.wait()
            try:
                for _ in range(25):
                    engine.access("acme")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=hammer, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        versions = [event.version for event in engines[1].history("acme")]
        assert versions == list(range(1, 7 + 50 + 1))
        assert engines[1].verify().ok
    finally:
        for engine in engines:
            engine.close()


def test_expected_version_fails_cleanly_without_retry(engine: Engine) -> None:
    drive_to(engine, "acme", State.Prompted)
    with pytest.raises(ConcurrencyConflict, match="not the expected version 0"):
        engine.access("acme", expected_version=0)
    assert engine.access("acme", expected_version=1).version == 2
