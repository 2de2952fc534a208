"""Several real OS processes driving one onboarding: page views queue, they never fail for racing each other."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keytrail import Engine, State
from keytrail.cli import app
from keytrail.crypto import SECRET_KEY_ENV, generate_secret_key
from keytrail.errors import ConcurrencyConflict
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
