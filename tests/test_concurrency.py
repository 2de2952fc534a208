"""Several real OS processes driving one onboarding: page views queue, they never fail for racing each other."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs
from typer.testing import CliRunner

from keytrail import Engine, Reason, State
from keytrail.cli import app
from keytrail.crypto import SECRET_KEY_ENV, fingerprint, generate_secret_key
from keytrail.errors import ConcurrencyConflict
from keytrail.persistence.commands import CommandSql
from keytrail.persistence.store import events_table
from tests.conftest import MovableClock
from tests.helpers import drive_to, snapshot

PROCESSES = 4
VIEWS = 75  # per process: 300 page views of one store in all

# Each worker opens its own engine, says it is ready, waits for "go" (so that all of them start
# together, on a stream none has seen yet) and then views the store's page VIEWS times. Odd
# workers pass an idempotency key, which takes the general path; even ones take the hot path.
_WORKER = textwrap.dedent(
    """
    import json, sys
    from collections import Counter
    from keytrail import Engine

    url, stream, views, worker = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    engine = Engine.open(url)
    print("ready", flush=True)
    sys.stdin.readline()
    failures = Counter()
    for view in range(views):
        key = f"w{worker}-v{view}" if worker % 2 else None
        try:
            engine.access(stream, idempotency_key=key, actor=f"worker-{worker}")
        except Exception as exc:
            failures[type(exc).__name__] += 1
    engine.close()
    print(json.dumps(dict(failures)), flush=True)
    """
)


def _views_from_processes(db_url: str, stream: str) -> list[dict[str, int]]:
    """Run PROCESSES workers at once; each reports its failures by error type."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, db_url, stream, str(VIEWS), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    for worker in workers:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert line == "ready\n", worker.communicate()[1]
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def test_page_views_of_one_store_from_several_processes_never_fail(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four processes view one new store 300 times in all: no failure, versions 1..300 without gaps, verify ok."""
    monkeypatch.setenv(SECRET_KEY_ENV, generate_secret_key())
    Engine.open(db_url).close()  # the schema, before the workers race for the store's first version
    reports = _views_from_processes(db_url, "acme")
    assert reports == [{}] * PROCESSES
    with Engine.open(db_url, create=False) as engine:
        with engine.database.read() as conn:
            versions = conn.execute(
                sa.select(events_table.c.version)
                .where(events_table.c.stream_id == "acme")
                .order_by(events_table.c.version)
            ).scalars()
            assert list(versions) == list(range(1, PROCESSES * VIEWS + 1))
        assert engine.status("acme").version == PROCESSES * VIEWS
        report = engine.verify()
        assert report.ok, [str(problem) for problem in report.problems]


def test_a_stale_expected_version_is_a_conflict_and_writes_nothing(engine: Engine) -> None:
    """The caller's expected version is stale: ConcurrencyConflict at once (no retry), exit code 4, nothing written."""
    drive_to(engine, "acme", State.StoreIntegration)
    version = engine.status("acme").version
    before = snapshot(engine)
    for command in (engine.access, engine.proceed):
        with pytest.raises(ConcurrencyConflict, match=f"at version {version}, not the expected version 1") as caught:
            command("acme", expected_version=1)
        assert caught.value.exit_code == 4
    assert snapshot(engine) == before
    assert engine.access("acme", expected_version=version).version == version + 1


def test_the_cli_exits_4_on_a_stale_expected_version(tmp_path: Path, clock: MovableClock) -> None:
    """--expected-version on a driving command: stale is one line on stderr and exit code 4, nothing written."""
    url = f"sqlite:///{tmp_path}/keytrail.db"
    runner = CliRunner()
    first = runner.invoke(app, ["--db", url, "access", "acme", "--expected-version", "0", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["version"] == 1
    with Engine.open(url, clock=clock) as engine:
        before = snapshot(engine)
    stale = runner.invoke(app, ["--db", url, "access", "acme", "--expected-version", "0"])
    assert stale.exit_code == 4, stale.output
    assert stale.stdout == ""
    assert stale.stderr.count("\n") == 1 and "not the expected version 0" in stale.stderr
    with Engine.open(url, clock=clock) as engine:
        assert snapshot(engine) == before
    again = runner.invoke(app, ["--db", url, "access", "acme", "--expected-version", "1", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["version"] == 2


# -- PostgreSQL: a command waits for the stream's lock, then reads what the holder committed ----------


class _Paused:
    """Holds the first command's write transaction open right after its event and projection were
    written (the append), until released: every later command appends unhindered."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        original = CommandSql.append

        def append(sql: CommandSql, *args: Any) -> Any:
            recorded = original(sql, *args)
            if not self.reached.is_set():
                self.reached.set()
                self.release.wait(30)
            return recorded

        monkeypatch.setattr(CommandSql, "append", append)


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(call())
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _wait_for_a_lock_wait(url: str) -> None:
    """Until a backend of this database waits for a lock: the second command has reached the holder's lock."""
    watcher = sa.create_engine(url)
    try:
        with watcher.connect() as conn:
            for _ in range(600):
                waiting = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
                if waiting:
                    return
                conn.rollback()
                time.sleep(0.05)
        pytest.fail("The second command never waited for the first one's lock.")
    finally:
        watcher.dispose()


@pytest.mark.postgres
def test_a_queued_page_view_sees_the_key_saved_before_it(
    postgres_server: str, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """access waits while save_config holds the stream, then verifies the key just saved, not the one before."""
    from keytrail.pgcluster import scratch_database

    new_key = "kt_" + "Z" * 43
    with scratch_database(postgres_server) as url, Engine.open(url, clock=clock) as viewer:
        drive_to(viewer, "acme", State.Validated)
        with Engine.open(url, clock=clock) as saver:
            paused = _Paused(monkeypatch)
            saving, saved = _in_thread(lambda: saver.save_config("acme", key=new_key))
            assert paused.reached.wait(30)
            viewing, viewed = _in_thread(lambda: viewer.access("acme"))
            _wait_for_a_lock_wait(url)
            paused.release.set()
            saving.join(30)
            viewing.join(30)
        assert saved[0].version == 7, saved
        outcome = viewed[0]
        assert (outcome.version, outcome.state, outcome.reason) == (8, State.Prompted, Reason.invalid), outcome
        assert viewer.history("acme")[-1].version == 8
        with viewer.database.read() as conn:
            data = conn.execute(
                sa.select(events_table.c.data).where(events_table.c.stream_id == "acme", events_table.c.version == 8)
            ).scalar_one()
        assert data["fingerprint"] == fingerprint(new_key)
        assert viewer.verify().ok


@pytest.mark.postgres
def test_two_first_commands_of_a_new_store_both_end_well(
    postgres_server: str, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing to lock yet: the loser of the race for version 1 retries, then queues, and writes version 2."""
    from keytrail.pgcluster import scratch_database

    with scratch_database(postgres_server) as url, Engine.open(url, clock=clock) as second:
        with Engine.open(url, clock=clock) as first, capture_logs() as logs:
            paused = _Paused(monkeypatch)
            winning, won = _in_thread(lambda: first.access("fresh"))
            assert paused.reached.wait(30)
            losing, lost = _in_thread(lambda: second.access("fresh"))
            _wait_for_a_lock_wait(url)  # the loser's version 1 waits on the winner's
            paused.release.set()
            winning.join(30)
            losing.join(30)
        assert won[0].version == 1, won
        assert lost[0].version == 2, lost
        retries = [entry for entry in logs if entry["event"] == "concurrency_retry"]
        assert [entry["attempt"] for entry in retries] == [1]
        assert 0 <= retries[0]["pause_ms"] <= 1.0  # the first pause is at most 1 ms, then they double
        assert [event.version for event in second.history("fresh")] == [1, 2]
        assert second.verify().ok
