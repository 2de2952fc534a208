"""Group commit when callers misbehave: interrupted waiters, nested commands, foreign errors, damaged rows, close().

Each test reproduces a way the first group commit could hang callers or answer them wrongly.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from keytrail import Engine, State
from keytrail.errors import IntegrityViolation, InvalidInput, StorageError
from keytrail.persistence.units import Storage, Unit
from keytrail.portal import AuthorityRecords, SavedKey, Verdict
from tests.helpers import drive_to


def _wait_for_queue(storage: Storage, callers: int) -> None:
    """Until ``callers`` wait for the next commit (bounded: a test that never gets there fails)."""
    assert storage.group is not None
    deadline = time.monotonic() + 60
    while storage.group.stats.waiting < callers:
        assert time.monotonic() < deadline, f"{callers} callers never queued for the next commit"
        time.sleep(0.005)


def _holding(storage: Storage) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """A caller that leads a batch and holds it open until released, so that others queue behind it."""
    leading, release = threading.Event(), threading.Event()

    def slow(unit: Unit) -> None:
        leading.set()
        release.wait(30)

    thread = threading.Thread(target=storage.commit, args=(slow,))
    thread.start()
    assert leading.wait(30)
    return thread, leading, release


def test_a_waiter_interrupted_by_ctrl_c_leaves_no_one_waiting(tmp_path: Path) -> None:
    """A follower interrupted while it waits (Ctrl-C) never runs, and the callers after it are served."""
    with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine:
        storage = Storage(engine.database, group_commit=True)
        holder, _, release = _holding(storage)
        timer = threading.Timer(0.3, signal.pthread_kill, args=(threading.main_thread().ident, signal.SIGINT))
        timer.start()
        ran: list[str] = []
        with pytest.raises(KeyboardInterrupt):
            storage.commit(lambda unit: ran.append("interrupted caller's work"))
        release.set()
        holder.join(30)
        later: list[Any] = []
        after = threading.Thread(target=lambda: later.append(storage.commit(lambda unit: "served")), daemon=True)
        after.start()
        after.join(30)
        assert later == ["served"]
        assert ran == []


class _Reentrant:
    """A verifier that drives the engine from inside the command's transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def verify(self, saved: SavedKey | None, at: datetime) -> Verdict:
        return Verdict.missing()

    def verify_in(self, records: AuthorityRecords, saved: SavedKey | None, at: datetime) -> Verdict:
        self.engine.access("another-store")
        return Verdict.missing()


def test_a_command_started_inside_a_command_is_refused_not_left_waiting(tmp_path: Path) -> None:
    with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine:
        engine.verifier = _Reentrant(engine)
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                engine.access("acme")
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(30)
        assert not thread.is_alive()
        assert isinstance(outcome[0], StorageError) and "inside another command" in str(outcome[0])
        assert list(engine.streams()) == []  # neither command wrote anything


def test_a_foreign_error_in_a_batch_reaches_its_caller_as_itself(tmp_path: Path) -> None:
    """Alone or batched, a caller's own exception comes back unchanged (never rewrapped with its text)."""

    class Refused(Exception):
        pass

    def refuse(unit: Unit) -> None:
        raise Refused("no")

    with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine:
        storage = Storage(engine.database, group_commit=True)
        with pytest.raises(Refused):
            storage.commit(refuse)
        holder, _, release = _holding(storage)
        errors: list[BaseException] = []
        results: list[Any] = []

        def call(work: Any) -> None:
            try:
                results.append(storage.commit(work))
            except BaseException as exc:
                errors.append(exc)

        callers = [threading.Thread(target=call, args=(refuse,)), threading.Thread(target=call, args=(lambda u: 1,))]
        for caller in callers:
            caller.start()
        _wait_for_queue(storage, 2)
        release.set()
        for thread in (holder, *callers):
            thread.join(30)
        assert [type(e) for e in errors] == [Refused] and results == [1]
        assert storage.group is not None and storage.group.stats.largest >= 2


def test_a_damaged_key_row_blocks_verification_only(tmp_path: Path) -> None:
    """The authority's row of the saved key damaged: access names it, but saving another key (the fix) works."""
    path = tmp_path / "k.db"
    with Engine.open(f"sqlite:///{path}") as engine:
        drive_to(engine, "acme", State.Validated)
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE api_keys SET expires_at = 'garbage'")
    with Engine.open(f"sqlite:///{path}") as engine:
        with pytest.raises(IntegrityViolation, match="garbage"):
            engine.access("acme")
        assert engine.save_config("acme", key="kt_" + "Z" * 43).state is State.ConfigSaved
        assert engine.access("acme").state is State.Prompted  # the new key is unknown to the authority


def test_close_while_callers_wait_lets_nothing_commit_afterwards(tmp_path: Path) -> None:
    engine = Engine.open(f"sqlite:///{tmp_path}/k.db")
    storage = Storage(engine.database, group_commit=True)
    holder, _, release = _holding(storage)
    answers: list[Any] = []

    def call() -> None:
        try:
            answers.append(storage.commit(lambda unit: unit.append))
        except BaseException as exc:
            answers.append(exc)

    waiter = threading.Thread(target=call)
    waiter.start()
    _wait_for_queue(storage, 1)
    closing = threading.Thread(target=engine.close)
    closing.start()
    deadline = time.monotonic() + 60
    while not engine.database.closed:  # close() marks the database closed first, then waits for the held commit
        assert time.monotonic() < deadline
        time.sleep(0.005)
    release.set()
    for thread in (holder, waiter, closing):
        thread.join(30)
    assert isinstance(answers[0], StorageError) and "closed" in str(answers[0])


def test_in_memory_databases_take_turns_instead(tmp_path: Path) -> None:
    """One shared connection: no group commit by default, and asking for it is refused."""
    with Engine.open("sqlite://") as engine:
        assert engine.commit_stats is None
    with pytest.raises(InvalidInput, match="in-memory"):
        Engine.open("sqlite://", group_commit=True)


def test_a_read_nested_in_a_write_on_the_shared_connection_commits_nothing() -> None:
    """In-memory: a read started inside a write on the same connection fails; the write rolls back whole."""
    with Engine.open("sqlite://") as engine:
        storage = Storage(engine.database)
        now = datetime.now(UTC)

        def work(unit: Unit) -> None:
            unit.save_config("s1", "sealed", "fp-half-written", "abcd", now)
            with pytest.raises(StorageError):
                engine.history("s1")
            raise InvalidInput("the command fails after the read: nothing may be written")

        with pytest.raises(InvalidInput):
            storage.commit(work)
        with storage.read() as unit:
            assert list(unit.configs()) == []
