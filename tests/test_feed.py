"""The log as a feed: a settled global order that never skips an event committing late, followed
by many processes, and named subscriptions that resume after a crash (at-least-once)."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keytrail import Engine
from keytrail.errors import InvalidInput
from keytrail.persistence import Database
from keytrail.persistence.units import Storage
from tests import feed_workers
from tests.feed_workers import END_STREAM, append

_SPAWN = multiprocessing.get_context("spawn")


def _run(target: Any, *args: Any) -> Any:
    process = _SPAWN.Process(target=target, args=args)
    process.start()
    return process


def _naive_read(url: str, after: int) -> list[int]:
    """The reader this feature replaces: every event whose position is past the checkpoint, as committed now."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT position FROM events WHERE position > :a ORDER BY position"), {"a": after}
            )
            return [row[0] for row in rows]
    finally:
        engine.dispose()


@pytest.fixture
def storage(engine: Engine) -> Iterator[Storage]:
    """A second process's view of the engine's database: its own connections, the command path's statements."""
    other = Storage(Database(engine.database.url))
    try:
        yield other
    finally:
        other.database.close()


def test_feed_pages_through_the_log_in_position_order(engine: Engine) -> None:
    """Pages of the global order, each ``next`` the ``after`` of the following one, every event once."""
    for n in range(7):
        engine.access(f"acme-{n % 3}")
    first = engine.feed(after=0, limit=3)
    assert [e.position for e in first.events] == [1, 2, 3]
    assert first.next == 3
    rest = engine.feed(after=first.next, limit=100)
    assert [e.position for e in rest.events] == [4, 5, 6, 7]
    assert rest.next == 7
    empty = engine.feed(after=rest.next)
    assert (empty.events, empty.next) == ([], 7)
    assert {e.stream for e in first.events + rest.events} == {"acme-0", "acme-1", "acme-2"}
    assert first.as_dict()["next"] == 3
    assert first.as_dict()["events"][0]["stream"] == "acme-0"


def test_feed_refuses_a_bad_cursor_or_limit(engine: Engine) -> None:
    """A negative position or a limit out of range is one clear error."""
    with pytest.raises(InvalidInput, match="after"):
        engine.feed(after=-1)
    with pytest.raises(InvalidInput, match="limit"):
        engine.feed(after=0, limit=0)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_late_committing_writer_is_never_skipped(engine: Engine, storage: Storage, db_url: str) -> None:
    """Position 1 taken, 2 committed first: the naive ``position > checkpoint`` reader moves past 1 and
    never sees it (the negative control); the feed stops below 1 until it commits, then gives both."""
    engine.access("early")  # position 1
    with storage.write() as held:
        head = held.load("late").head
        late_position = _held_append(held, head)
        committed_first = append(Storage(engine.database), "quick", "b")[0]
        assert committed_first > late_position
        naive = _naive_read(db_url, after=1)
        assert naive == [committed_first]  # the naive reader's checkpoint moves to committed_first
        page = engine.feed(after=1)
        assert page.events == []
        assert page.next == 1  # not past the position still in flight
    # The held transaction commits: the naive reader, resuming after its checkpoint, has lost it.
    assert _naive_read(db_url, after=naive[-1]) == []
    assert late_position not in naive
    page = engine.feed(after=1)
    assert [e.position for e in page.events] == [late_position, committed_first]
    assert page.next == committed_first


def _held_append(unit: Any, head: Any) -> int:
    from datetime import UTC, datetime

    from keytrail.events import PendingEvent

    event = PendingEvent("access", "Unverified", "Prompted", "missing", {}, "a", datetime.now(UTC), None)
    return int(unit.append("late", head, event).position)


def _writers_and_followers(url: str, tmp_path: Path, writers: int, per_writer: int) -> None:
    """``writers`` processes (half of them holding transactions open a while) and two followers;
    every acknowledged event reaches each follower exactly once, in the same order, streams in version order."""
    streams = [f"shared-{n}" for n in range(6)]
    seed = Storage(Database(url))
    for stream in streams:
        append(seed, stream, "seed")
    followers = [_run(feed_workers.follower, url, str(tmp_path / f"follower-{n}.json")) for n in range(2)]
    outs = [str(tmp_path / f"writer-{n}.json") for n in range(writers)]
    procs = [
        _run(feed_workers.writer, url, n, per_writer, [*streams, f"own-{n}"], n % 2 == 0, outs[n])
        for n in range(writers)
    ]
    for proc in procs:
        proc.join(timeout=240)
        assert proc.exitcode == 0
    append(seed, END_STREAM, "seed")
    seed.database.close()
    for proc in followers:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    acked = {tuple(row) for out in outs for row in json.loads(Path(out).read_text())}
    assert len(acked) == writers * per_writer
    seen = [[tuple(row) for row in json.loads((tmp_path / f"follower-{n}.json").read_text())] for n in range(2)]
    assert seen[0] == seen[1]
    positions = [row[0] for row in seen[0]]
    assert positions == sorted(set(positions))  # exactly once, in the global order
    assert acked <= set(seen[0])
    assert len(seen[0]) == len(acked) + len(streams) + 1  # nothing else: the seeds and the end marker
    versions: dict[str, int] = {}
    for _, stream, version in seen[0]:
        assert version == versions.get(stream, 0) + 1
        versions[stream] = version


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_eight_writer_processes_and_two_followers_on_postgresql(engine: Engine, tmp_path: Path, db_url: str) -> None:
    """8 writer processes, half of them holding transactions open a random while, 2 followers."""
    _writers_and_followers(db_url, tmp_path, writers=8, per_writer=60)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_several_writer_processes_and_two_followers_on_sqlite(engine: Engine, tmp_path: Path, db_url: str) -> None:
    """The same on SQLite: its one writer at a time gives the order; the same test proves it."""
    _writers_and_followers(db_url, tmp_path, writers=4, per_writer=40)


def test_a_subscriber_killed_between_handling_and_checkpointing_resumes(
    engine: Engine, tmp_path: Path, db_url: str
) -> None:
    """SIGKILL after the handler returned, before the checkpoint moved: the next run delivers that event
    again (at-least-once) and every later one; nothing is lost."""
    for n in range(12):
        engine.access(f"acme-{n % 4}")
    positions = [e.position for e in engine.feed(after=0).events]
    log = tmp_path / "handled.txt"
    killed = _run(feed_workers.subscriber, db_url, "mailer", str(log), positions[6])
    killed.join(timeout=120)
    assert killed.exitcode == -9
    assert engine.subscription("mailer").position == positions[5]
    resumed = _run(feed_workers.subscriber, db_url, "mailer", str(log), -1)
    resumed.join(timeout=120)
    assert resumed.exitcode == 0
    handled = [int(line) for line in log.read_text().split()]
    assert handled == positions[:7] + positions[6:]
    assert engine.subscription("mailer").position == positions[-1]


def test_subscription_moves_only_after_the_handler_returned(engine: Engine) -> None:
    """A handler that raises leaves the checkpoint on the last event it handled; the error goes to the caller."""
    for n in range(3):
        engine.access(f"acme-{n}")
    handled: list[int] = []

    def handler(event: Any) -> None:
        if event.position == 2:
            raise RuntimeError("the mailer is down")
        handled.append(event.position)

    subscription = engine.subscription("mailer")
    assert subscription.position == 0
    with pytest.raises(RuntimeError, match="mailer is down"):
        subscription.run(handler)
    assert handled == [1]
    assert engine.subscription("mailer").position == 1
    assert engine.subscription("mailer").run(lambda e: handled.append(e.position)) == 2
    assert handled == [1, 2, 3]
    assert engine.subscription("other").position == 0


def test_subscription_names_are_checked(engine: Engine) -> None:
    """A subscription's name is an id like an onboarding's: anything else is one clear error."""
    with pytest.raises(InvalidInput):
        engine.subscription("no spaces allowed")


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_digest_taken_while_a_writer_is_mid_command_still_checks(engine: Engine, storage: Storage) -> None:
    """The digest stops below a position still in flight, so the event committing late lands after
    its prefix: the kept token still checks afterwards (before, it covered a prefix that later grew)."""
    from keytrail.engine import reports

    engine.access("early")
    taken: list[reports.Digest] = []
    with storage.write() as held:
        _held_append(held, held.load("late").head)
        append(Storage(engine.database), "quick", "b")
        # The digest waits for the writers in flight at its start: take it on another thread,
        # commit the held transaction once that thread is waiting, then join.
        import threading

        thread = threading.Thread(target=lambda: taken.append(reports.digest(engine)))
        thread.start()
        thread.join(timeout=0.3)  # it must still be waiting for the held writer
        assert thread.is_alive()
    thread.join(timeout=60)
    check = reports.check_digest(engine, taken[0].token)
    assert check.ok, check.message
    assert taken[0].events == 3


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("trigger", "'bogus'"),
        ("data", """'{"a": 1, "a": 2}'"""),
        ("occurred_at", "'2026-01-01T09:00:00.000000'"),
        ("occurred_at", "'2026-13-01 09:00:00.000000'"),
        ("version", "'two'"),
    ],
)
def test_a_damaged_row_stops_the_feed_naming_it(tmp_path: Path, column: str, value: str) -> None:
    """The feed reads as strictly as every reader: a row not as keytrail writes it is CorruptEvent, never passed on."""
    from keytrail.errors import CorruptEvent

    url = f"sqlite:///{tmp_path}/k.db"
    with Engine.open(url) as engine:
        for n in range(4):
            engine.access(f"acme-{n % 2}")
        assert len(engine.feed().events) == 4
    raw = sa.create_engine(url)
    with raw.begin() as conn:
        conn.execute(sa.text(f"UPDATE events SET {column} = {value} WHERE position = 3"))
    raw.dispose()
    with Engine.open(url) as engine, pytest.raises(CorruptEvent, match="acme-0") as caught:
        engine.feed()
    assert caught.value.exit_code == 1
