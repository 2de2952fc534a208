"""The command line's habits: options where users put them, errors as JSON, schemas, wrapping, colour, the sandbox clock."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from keytrail.cli import app

runner = CliRunner()


def test_the_demo_log_is_one_auditors_can_practise_on(tmp_path: Path) -> None:
    """The demo's events have actors, lie in the past, and are minutes apart, not microseconds."""
    url = f"sqlite:///{tmp_path}/demo.db"
    assert runner.invoke(app, ["--db", url, "demo"]).exit_code == 0
    shown = runner.invoke(app, ["--db", url, "history", "acme-store", "--json"])
    events = json.loads(shown.stdout)["events"]
    assert len(events) == 14
    assert all(e["actor"] for e in events)
    times = [datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")) for e in events]
    assert max(times) < datetime.now(UTC) - timedelta(days=1)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= timedelta(minutes=1)
    assert times[-1] - times[0] > timedelta(days=365)
