"""Group commit: concurrent callers of one engine share commits, and each still gets exactly its own outcome."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keytrail import Engine, State
from keytrail.errors import ConcurrencyConflict, IllegalTransition, InvalidInput
from keytrail.persistence.commands import CommandSql
from tests.conftest import MovableClock
from tests.helpers import drive_to

ROOT = Path(__file__).resolve().parent.parent


def _sqlite(tmp_path: Path, name: str = "keytrail.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def test_sixteen_threads_lose_nothing_and_fork_nothing(tmp_path: Path) -> None:
    """16 threads x 500 commands, on shared and separate streams: every outcome is the event written for it."""
    threads, calls = 16, 500
    with Engine.open(_sqlite(tmp_path), durability="normal") as engine:
        shared = ["shared-0", "shared-1"]
        separate = [f"own-{n}" for n in range(threads // 2)]
        for stream in shared + separate:
            drive_to(engine, stream, State.StoreIntegration)
        before = {stream: engine.status(stream).version for stream in shared + separate}
        outcomes: list[Any] = []
        failures: list[BaseException] = []
        start = threading.Barrier(threads)

        def caller(n: int) -> None:
            stream = shared[n % 2] if n < threads // 2 else separate[n - threads // 2]
            start.wait()
            try:
                for call in range(calls):
                    key = f"t{n}-c{call}" if call % 50 == 0 else None  # some with idempotency keys
                    outcomes.append(engine.access(stream, actor=f"thread-{n}", idempotency_key=key))
            except BaseException as exc:
                failures.append(exc)

        workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert failures == []
        assert len(outcomes) == threads * calls
        claimed = Counter((o.stream, o.version) for o in outcomes)
        assert max(claimed.values()) == 1  # no two callers were told the same event
        events = {(e.stream_id, e.version): e for stream in shared + separate for e in engine.events(stream)}
        for outcome in outcomes:  # every caller's outcome is the event written for it
            event = events[outcome.stream, outcome.version]
            assert (event.trigger, event.dest, event.occurred_at) == (
                "access",
                outcome.state.value,
                outcome.occurred_at,
            )
        written = sum(engine.status(s).version - before[s] for s in before)
        assert written == threads * calls  # none lost
        assert engine.verify().ok
        for stream in shared + separate:
            assert engine.replay(stream).state is engine.status(stream).state
        stats = engine.commit_stats
        assert stats is not None and stats.commands >= threads * calls
        assert stats.commits < stats.commands  # callers did share commits


def _held_leader(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The first command's transaction waits after its append until released, so the others queue behind it."""
    reached, release = threading.Event(), threading.Event()
    original = CommandSql.append

    def append(sql: CommandSql, *args: Any) -> Any:
        recorded = original(sql, *args)
        if not reached.is_set():
            reached.set()
            release.wait(30)
        return recorded

    monkeypatch.setattr(CommandSql, "append", append)
    return reached, release


def _wait_for_queue(engine: Engine, callers: int) -> None:
    """Until ``callers`` commands wait for the next commit (bounded: a test that never gets there fails)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = engine.commit_stats
        if stats is not None and stats.waiting >= callers:
            return
        time.sleep(0.005)
    raise AssertionError(f"{callers} callers never queued for the next commit")


def _in_thread(call: Any, results: dict[str, Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = call()
        except BaseException as exc:
            results[name] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_failing_command_in_a_batch_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: MovableClock
) -> None:
    """An illegal trigger, a stale expected version and a malformed key in a batch are refused and written
    nowhere; the batch's other commands commit, and each caller gets its own answer."""
    with Engine.open(_sqlite(tmp_path), clock=clock) as engine:
        for stream in ("a", "b", "c", "d"):
            drive_to(engine, stream, State.Validated)
        versions = {s: engine.status(s).version for s in "abcd"}
        reached, release = _held_leader(monkeypatch)
        results: dict[str, Any] = {}
        leader = _in_thread(lambda: engine.access("a"), results, "leader")
        assert reached.wait(30)
        followers = [
            _in_thread(lambda: engine.proceed("b"), results, "proceed-b"),
            _in_thread(
                lambda: engine.register("c", email="x@y.test", password="p" * 16, company="C"), results, "illegal"
            ),
            _in_thread(lambda: engine.access("d", expected_version=1), results, "stale"),
            _in_thread(lambda: engine.access("c"), results, "access-c"),
        ]
        _wait_for_queue(
            engine, 3
        )  # proceed-b, stale and access-c queue behind the held commit; illegal is refused first
        release.set()
        for thread in (leader, *followers):
            thread.join(30)
        assert isinstance(results["illegal"], IllegalTransition)
        assert isinstance(results["stale"], ConcurrencyConflict)
        assert results["proceed-b"].state is State.StoreIntegration
        assert results["access-c"].version == versions["c"] + 1
        assert results["leader"].version == versions["a"] + 1
        assert engine.status("d").version == versions["d"]  # the stale command wrote nothing
        assert engine.verify().ok
        stats = engine.commit_stats
        assert stats is not None and stats.largest >= 2  # the followers shared a commit


def test_a_refusal_inside_the_batch_rolls_back_its_own_writes_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that fails after writing (inside its savepoint) leaves no trace; its batch neighbours commit."""
    with Engine.open(_sqlite(tmp_path)) as engine:
        for stream in ("a", "b", "c"):
            drive_to(engine, stream, State.Validated)
        before = {s: engine.status(s).version for s in "abc"}
        reached, release = _held_leader(monkeypatch)
        results: dict[str, Any] = {}
        leader = _in_thread(lambda: engine.access("a"), results, "leader")
        assert reached.wait(30)
        original = CommandSql.append

        def failing_append(sql: CommandSql, dbapi: Any, stream: str, *args: Any) -> Any:
            recorded = original(sql, dbapi, stream, *args)
            if stream == "b":  # written, then refused: the savepoint must take it back
                raise InvalidInput("b is refused after its rows were written.")
            return recorded

        monkeypatch.setattr(CommandSql, "append", failing_append)
        followers = [
            _in_thread(lambda: engine.access("b"), results, "b"),
            _in_thread(lambda: engine.access("c"), results, "c"),
        ]
        _wait_for_queue(engine, 2)
        release.set()
        for thread in (leader, *followers):
            thread.join(30)
        assert isinstance(results["b"], InvalidInput)
        assert results["c"].version == before["c"] + 1
        assert engine.status("b").version == before["b"]
        assert [e.version for e in engine.events("b")][-1] == before["b"]
        assert engine.verify().ok


def test_group_commit_can_be_turned_off_and_is_off_on_request(tmp_path: Path) -> None:
    with Engine.open(_sqlite(tmp_path), group_commit=False) as engine:
        engine.access("acme")
        assert engine.commit_stats is None
    with pytest.raises(InvalidInput, match="max_batch"):
        Engine.open(_sqlite(tmp_path), max_batch=0)
    with pytest.raises(InvalidInput, match="group_commit"):
        Engine.open(_sqlite(tmp_path), group_commit="yes")  # type: ignore[arg-type]


_WRITER = """
import sys, threading
from keytrail import Engine
engine = Engine.open(sys.argv[1], group_commit=True)
lock = threading.Lock()

def run(n):
    for call in range(100000):
        outcome = engine.access(f"store-{n % 4}")
        with lock:
            print(outcome.stream, outcome.version, flush=True)

threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_during_batches_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """A writer killed mid-batch: every event a caller was told about is in the log, and the log verifies."""
    url = _sqlite(tmp_path)
    with Engine.open(url) as engine:
        for n in range(4):
            engine.access(f"store-{n}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KEYTRAIL_LOG_LEVEL": "warning"}
    process = subprocess.Popen([sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE, env=env, text=True)
    assert process.stdout is not None
    acknowledged: list[tuple[str, int]] = []
    for line in process.stdout:
        stream, version = line.split()
        acknowledged.append((stream, int(version)))
        if len(acknowledged) >= 400:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    process.stdout.close()
    with Engine.open(url, create=False) as engine:
        logged = {(e.stream_id, e.version) for n in range(4) for e in engine.events(f"store-{n}")}
        assert set(acknowledged) <= logged
        assert engine.verify().ok


def test_opening_a_second_engine_keeps_the_first_ones_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening the same file again in this process must not drop the POSIX locks the first engine holds:
    another process must still find the database locked while a command of the first is mid-write."""
    url = _sqlite(tmp_path)
    with Engine.open(url) as first:
        first.access("acme")
        reached, release = _held_leader(monkeypatch)
        results: dict[str, Any] = {}
        writer = _in_thread(lambda: first.access("acme"), results, "write")
        assert reached.wait(30)  # the first engine holds the write lock now
        try:
            Engine.open(url, create=False).close()  # reads what the file is, then closes
            probe = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
                    "try:\n    c.execute('BEGIN IMMEDIATE'); print('acquired')\n"
                    "except sqlite3.OperationalError as e:\n    print(e)",
                    str(tmp_path / "keytrail.db"),
                ],
                check=False,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            release.set()
            writer.join(30)
        assert probe.stdout.strip() == "database is locked"
        assert results["write"].version == 2
        assert first.verify().ok


# -- random interleavings equal some serial order --------------------------------------------------

_STREAMS = ("s0", "s1", "s2")
_COMMANDS = st.sampled_from(["access", "proceed", "save_kept"])


def _run(engine: Engine, command: str, stream: str, actor: str) -> bool:
    """One command; False when the engine refused it (refusals write nothing)."""
    try:
        if command == "access":
            engine.access(stream, actor=actor)
        elif command == "proceed":
            engine.proceed(stream, actor=actor)
        else:
            engine.save_config(stream, key="*" * 8, actor=actor)  # asterisks keep the saved key
    except IllegalTransition:
        return False
    return True


def _rows(engine: Engine) -> list[tuple[Any, ...]]:
    return [
        (e.stream_id, e.version, e.trigger, e.source, e.dest, e.reason, e.data, e.actor, e.hash)
        for stream in _STREAMS
        for e in engine.events(stream)
    ]


@given(
    programs=st.lists(
        st.lists(st.tuples(_COMMANDS, st.sampled_from(_STREAMS)), min_size=1, max_size=8), min_size=2, max_size=4
    )
)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_interleavings_equal_a_serial_order(
    programs: list[list[tuple[str, str]]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Threads run random programs at once; replaying the committed commands one at a time, in the log's
    order, on a copy of the starting database writes exactly the same events (versions, states, hashes)."""
    folder = tmp_path_factory.mktemp("interleavings")
    template = folder / "template.db"
    clock = MovableClock()  # does not move: times, and so hashes, depend only on the order
    with Engine.open(f"sqlite:///{template}", clock=clock) as engine:
        for stream in _STREAMS:
            drive_to(engine, stream, State.Validated)
    for copy in ("concurrent.db", "serial.db"):
        shutil.copy(template, folder / copy)
        shutil.copy(folder / "template.db.key", folder / f"{copy}.key")  # the key file beside each copy, 0600 kept
    with Engine.open(f"sqlite:///{folder / 'concurrent.db'}", clock=clock) as engine:
        start = threading.Barrier(len(programs))

        def run(n: int) -> None:
            start.wait()
            for i, (command, stream) in enumerate(programs[n]):
                _run(engine, command, stream, f"t{n}-{i}")

        threads = [threading.Thread(target=run, args=(n,)) for n in range(len(programs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        concurrent = _rows(engine)
        committed = sorted(
            (e.position, e.actor) for stream in _STREAMS for e in engine.events(stream) if e.actor is not None
        )
        assert engine.verify().ok
    with Engine.open(f"sqlite:///{folder / 'serial.db'}", clock=clock) as serial:
        for _, actor in committed:
            n, i = (int(part) for part in actor[1:].split("-"))
            command, stream = programs[n][i]
            assert _run(serial, command, stream, actor)  # the serial order accepts every committed command
        assert _rows(serial) == concurrent
    for thread_program_index in range(len(programs)):  # each thread's commands committed in its own order
        mine = [int(actor.split("-")[1]) for _, actor in committed if actor.startswith(f"t{thread_program_index}-")]
        assert mine == sorted(mine)
