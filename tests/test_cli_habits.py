"""The command line's habits: options where users put them, errors as JSON, schemas, wrapping, colour, the sandbox clock."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from keytrail import schemas
from keytrail.cli import app, rendering
from tests.helpers import EMAIL, PASSWORD
from tests.json_schemas import check_json_output

runner = CliRunner()
SCRIPT = Path(sys.executable).parent / "keytrail"


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


def _run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Invoke the app as given (global options wherever the test puts them), schemas checked under --json."""
    result = runner.invoke(app, list(args), input=input, env=env)
    check_json_output(args, result.stdout, result.stderr, result.exit_code)
    return result


def _script(
    *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, check=False, timeout=120, env=env, input=input
    )
    check_json_output(args, done.stdout, done.stderr, done.returncode)
    return done


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/k.db"


# -- global options where users put them ------------------------------------------------------------------


def test_global_options_after_the_command(db: str) -> None:
    """``--db`` after the command, ``--json`` and ``--actor`` before it: the same run as in the canonical order."""
    first = _run("access", "acme", "--db", db, "--actor", "ops", "--json")
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout)["state"] == "Prompted"
    again = _run("--json", "--actor", "ops2", "--db", db, "access", "acme")
    assert again.exit_code == 0, again.stderr
    shown = _run("--json", "--db", db, "history", "acme")
    assert [e["actor"] for e in json.loads(shown.stdout)["events"]] == ["ops", "ops2"]
    listed = _run("keys", "list", "--email", EMAIL, f"--db={db}")
    assert "no account with the email" in listed.stderr  # the database given after the command was used
    status = _run("status", "--db", db, "--json")
    assert [h["stream"] for h in json.loads(status.stdout)] == ["acme"]


# -- errors under --json -------------------------------------------------------------------------------------


def test_an_error_under_json_is_one_object_with_its_facts(db: str) -> None:
    """Under --json a failure is ``{"error": {...}}`` on stderr with the exit code: type, message and facts."""
    assert _run("--db", db, "access", "acme").exit_code == 0
    illegal = _run("--db", db, "proceed", "acme", "--json")
    assert (illegal.exit_code, illegal.stdout) == (2, "")
    error = json.loads(illegal.stderr)["error"]
    assert error["type"] == "IllegalTransition" and error["exit_code"] == 2
    assert error["allowed_now"] and "proceed is allowed only in" in error["message"]
    missing = _run("--db", db.replace("k.db", "absent.db"), "status", "--json")
    assert json.loads(missing.stderr)["error"]["type"] == "UnknownDatabase"
    stale = _run("--db", db, "access", "acme", "--expected-version", "0", "--json")
    assert (stale.exit_code, json.loads(stale.stderr)["error"]["type"]) == (4, "ConcurrencyConflict")


def test_a_locked_account_says_when_to_retry(db: str) -> None:
    """AccountLocked under --json carries retry_after (seconds) and locked_until; the password is nowhere."""
    created = _run(
        "--db", db, "account", "create", "--email", EMAIL, "--company", "Acme", "--password-stdin", input=PASSWORD
    )
    assert created.exit_code == 0, created.stderr
    _run("--db", db, "access", "acme")
    for _ in range(5):
        last = _run("--db", db, "sign-in", "acme", "--email", EMAIL, "--password-stdin", "--json", input="wrong one\n")
    error = json.loads(last.stderr)["error"]
    assert (last.exit_code, error["type"]) == (2, "AccountLocked")
    assert 0 < error["retry_after"] <= 15 * 60
    assert datetime.fromisoformat(error["locked_until"].replace("Z", "+00:00")) > datetime.now(UTC)
    assert "wrong one" not in last.stderr


def test_a_usage_error_under_json_from_the_script() -> None:
    """An unknown option is a usage error: exit 2 and, under --json, one JSON object on stderr."""
    done = _script("status", "--bogus", "--json")
    assert (done.returncode, done.stdout) == (2, "")
    assert json.loads(done.stderr)["error"]["type"] == "UsageError"


def test_every_schema_is_shipped_and_valid() -> None:
    """Each command with --json has a schema in the package, and every schema is valid draft 2020-12."""
    import jsonschema

    for name in {*schemas.FOR_COMMAND.values(), "error"}:
        jsonschema.Draft202012Validator.check_schema(schemas.load(name))


# -- terminals --------------------------------------------------------------------------------------------------


def _table_rows(drawn: str) -> list[list[str]]:
    """The logical rows of a rich table: a line whose first cell is empty continues the row above."""
    rows: list[list[str]] = []
    for line in drawn.splitlines():
        if line.count("│") < 2:
            continue
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{kept} {more}".strip() for kept, more in zip(rows[-1], cells, strict=True)]
    return rows


def test_tables_wrap_and_never_truncate_at_80_columns(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On an 80-column terminal the history table wraps: every value is there whole, if over several lines."""
    actor = "operations-team-lead@acme-commerce.example"
    for _ in range(2):
        _run("--db", db, "access", "acme", "--actor", actor)
    expected = [line.split("\t") for line in _run("--db", db, "history", "acme").stdout.splitlines()[1:]]
    monkeypatch.setattr(rendering, "_stdout_is_terminal", lambda: True)
    shown = _run("--db", db, "history", "acme", env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.stderr
    assert all(len(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout
    assert "…" not in shown.stdout
    drawn = _table_rows(shown.stdout)  # the header is drawn with ┃, not │
    squeezed = [[cell.replace(" ", "") for cell in row] for row in drawn]
    assert squeezed == [[cell.replace(" ", "") for cell in row] for row in expected], shown.stdout


def test_no_color_removes_every_style(tmp_path: Path) -> None:
    """With NO_COLOR set, the demo prints no escape sequence at all, bold included; without it, it does."""
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "100"}
    styled = _script("--db", f"sqlite:///{tmp_path}/styled.db", "demo", env=env)
    assert styled.returncode == 0 and "\x1b[" in styled.stdout
    plain = _script("--db", f"sqlite:///{tmp_path}/plain.db", "demo", env={**env, "NO_COLOR": "1"})
    assert plain.returncode == 0 and "\x1b[" not in plain.stdout


def test_help_shows_no_artefacts() -> None:
    """No ``<bool>`` beside flags and no doubled brackets (``[[ID]]``) in any command's help."""
    commands = [[name] for name in schemas.FOR_COMMAND if " " not in name] + [["export"], ["diagram"], ["demo"], []]
    commands += [name.split() for name in schemas.FOR_COMMAND if " " in name]
    for command in commands:
        shown = runner.invoke(app, [*command, "--help"])
        assert shown.exit_code == 0, (command, shown.stdout)
        assert "<bool>" not in shown.stdout and "[[" not in shown.stdout, (command, shown.stdout)


def test_shell_completion_is_offered() -> None:
    """``keytrail --show-completion bash`` prints the completion script docs/cli.md tells users to install."""
    done = _script("--show-completion", "bash", env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert done.returncode == 0, done.stderr
    assert "complete" in done.stdout and "keytrail" in done.stdout


# -- -o on every command that writes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "acme", "--json"),
        ("history", "acme"),
        ("replay", "acme"),
        ("verify",),
        ("digest",),
        ("expiring",),
        ("export",),
        ("diagram",),
    ],
    ids=" ".join,
)
def test_dash_o_writes_the_output_to_a_file(db: str, tmp_path: Path, args: tuple[str, ...]) -> None:
    """Every command whose output is kept (reports, digests, exports, diagrams) takes -o FILE: stdout stays empty."""
    _run("--db", db, "access", "acme")
    expected = _run("--db", db, *args)
    target = tmp_path / "out.txt"
    written = _run("--db", db, *args, "-o", str(target))
    assert (written.exit_code, written.stdout) == (expected.exit_code, "")
    assert target.read_text(encoding="utf-8") == expected.stdout


# -- the sandbox clock ------------------------------------------------------------------------------------------------


def test_keytrail_now_moves_a_sandbox_through_time(tmp_path: Path) -> None:
    """A database made by ``init --sandbox`` honours KEYTRAIL_NOW: the expiry story, told from the shell."""
    url = f"sqlite:///{tmp_path}/sandbox.db"
    made = _run("--db", url, "init", "--sandbox")
    assert made.exit_code == 0, made.stderr
    then = {"KEYTRAIL_NOW": "2030-01-01T09:00:00Z"}
    first = _run("--db", url, "access", "acme", "--json", env=then)
    assert json.loads(first.stdout)["occurred_at"].startswith("2030-01-01T09:00:00")
    later = _run("--db", url, "history", "acme", "--json", env={"KEYTRAIL_NOW": "2031-06-01T00:00:00Z"})
    assert later.exit_code == 0, later.stderr


def test_keytrail_now_is_refused_by_any_other_database(db: str) -> None:
    """Outside a sandbox, KEYTRAIL_NOW is refused with exit 2 before anything is written: time is not forged."""
    assert _run("--db", db, "access", "acme").exit_code == 0
    refused = _run("--db", db, "access", "acme", env={"KEYTRAIL_NOW": "2030-01-01T09:00:00Z"})
    assert refused.exit_code == 2
    assert "KEYTRAIL_NOW" in refused.stderr and "sandbox" in refused.stderr
    assert len(json.loads(_run("--db", db, "history", "acme", "--json").stdout)["events"]) == 1
    bad = _run("--db", db, "status", env={"KEYTRAIL_NOW": "tomorrow"})
    assert bad.exit_code == 2
    assert _run("--db", db, "init", "--sandbox").exit_code == 2  # a database in use never becomes a sandbox
