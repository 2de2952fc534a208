"""``keytrail tail``: the settled global order on stdout, resumable by position or by subscription."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner, Result

from keytrail import Engine
from keytrail.cli import app

runner = CliRunner()


def run(db: str, *args: str) -> Result:
    return runner.invoke(app, ["--db", db, *args])


def _log(db: str, count: int) -> None:
    with Engine.open(db) as engine:
        for n in range(count):
            engine.access(f"acme-{n % 2}")


def test_tail_prints_the_log_in_order_and_resumes_after_a_position(tmp_path: Path) -> None:
    """One line per event, position first; ``--after`` starts past it; ``--json`` is one object per line."""
    db = f"sqlite:///{tmp_path}/k.db"
    _log(db, 4)
    shown = run(db, "tail")
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["1", "2", "3", "4"]
    assert lines[0].split("\t")[2:5] == ["acme-0", "1", "access"]
    later = run(db, "tail", "--after", "2", "--json")
    objects = [json.loads(line) for line in later.stdout.splitlines()]
    assert [(o["position"], o["stream"], o["version"]) for o in objects] == [(3, "acme-0", 2), (4, "acme-1", 2)]


def test_tail_with_a_subscription_moves_its_checkpoint(tmp_path: Path) -> None:
    """A second run of the same subscription prints only what came since."""
    db = f"sqlite:///{tmp_path}/k.db"
    _log(db, 3)
    first = run(db, "tail", "--subscription", "warehouse", "--json")
    assert [json.loads(line)["position"] for line in first.stdout.splitlines()] == [1, 2, 3]
    _log(db, 2)
    second = run(db, "tail", "--subscription", "warehouse", "--json")
    assert [json.loads(line)["position"] for line in second.stdout.splitlines()] == [4, 5]
    with Engine.open(db) as engine:
        assert engine.subscription("warehouse").position == 5


def test_tail_refuses_after_with_a_subscription(tmp_path: Path) -> None:
    """Both starting points at once is bad usage: exit 2, one line, nothing printed."""
    db = f"sqlite:///{tmp_path}/k.db"
    _log(db, 1)
    result = run(db, "tail", "--after", "1", "--subscription", "warehouse")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "not both" in result.stderr


def test_tail_follow_prints_events_as_they_commit(tmp_path: Path) -> None:
    """``--follow`` keeps running and prints an event committed after it started."""
    db = f"sqlite:///{tmp_path}/k.db"
    _log(db, 1)
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).parents[1]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "keytrail.cli", "--db", db, "tail", "--follow", "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["position"] == 1
        _log(db, 1)
        assert json.loads(proc.stdout.readline())["position"] == 2
    finally:
        proc.kill()
        proc.communicate()
