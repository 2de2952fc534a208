"""The installed ``keytrail`` console script as a real subprocess against a real database file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import EMAIL, PASSWORD
from tests.json_schemas import check_json_output

SCRIPT = Path(sys.executable).parent / "keytrail"


@pytest.fixture
def keytrail(tmp_path: Path) -> Any:
    """Run the console script on a database file in the test's folder; returns the completed process."""
    if not SCRIPT.exists():
        pytest.fail(f"The keytrail console script is not installed beside {sys.executable}; run make lint first.")
    env = {**os.environ, "KEYTRAIL_DATABASE_URL": f"sqlite:///{tmp_path}/real.db"}

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(SCRIPT), *args],
            check=False,
            input=input,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        check_json_output(args, done.stdout, done.stderr, done.returncode)
        return done

    return run


def assert_failed(done: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("keytrail: "), done.stderr
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_flow_audit_and_draw_from_the_terminal(keytrail: Any, tmp_path: Path) -> None:
    """The walk-through of docs/cli.md: the whole flow, then status, verify, export, digest and a diagram."""
    created = keytrail("account", "create", "--email", EMAIL, "--company", "Acme", "--password-stdin", input=PASSWORD)
    assert created.returncode == 0, created.stderr
    first = json.loads(keytrail("access", "acme", "--json").stdout)
    assert (first["stream"], first["state"], first["reason"], first["version"]) == ("acme", "Prompted", "missing", 1)
    signed = keytrail("sign-in", "acme", "--email", EMAIL, "--password-stdin", "--json", input=PASSWORD + "\n")
    assert json.loads(signed.stdout)["state"] == "SignedIn"
    generated = json.loads(keytrail("generate-key", "acme", "--json").stdout)
    key = generated["key"]
    assert generated["state"] == "KeyGenerated" and key.startswith("kt_")
    assert json.loads(keytrail("copy-key", "acme", "--json").stdout)["key"] == key
    saved = keytrail("save-config", "acme", "--key-stdin", input=key + "\n")
    assert saved.stdout == "acme: save_config -> ConfigSaved, version 5\n"
    assert json.loads(keytrail("access", "acme", "--json").stdout)["state"] == "Validated"
    done = json.loads(keytrail("proceed", "acme", "--json").stdout)
    assert {k: done[k] for k in ("stream", "state", "reason", "version")} == {
        "stream": "acme",
        "state": "StoreIntegration",
        "reason": None,
        "version": 7,
    }

    status = json.loads(keytrail("status", "acme", "--json").stdout)
    assert (status["state"], status["version"]) == ("StoreIntegration", 7)
    verified = keytrail("verify")
    assert (verified.returncode, verified.stdout) == (
        0,
        "verify: ok: 1 onboarding(s), 2 authority stream(s), 9 event(s), 0 problem(s).\n",
    )
    exported = keytrail("export", "--format", "jsonl")
    lines = exported.stdout.splitlines()
    # The onboarding's 7 events and the authority's: the account created, the key generated.
    assert len(lines) == 9 and {json.loads(line)["stream_id"][:5] for line in lines} == {"acme", "@acco", "@key:"}
    assert key not in exported.stdout and PASSWORD not in exported.stdout
    token = keytrail("digest").stdout.strip()
    assert token.startswith("9:")  # 7 of acme, 2 of the authority
    assert keytrail("digest", "--check", token).returncode == 0
    drawn = keytrail("diagram", "--highlight", "acme")
    assert "class StoreIntegration current" in drawn.stdout
    history = keytrail("history", "acme")
    assert history.stdout.splitlines()[-1].split("\t")[2:5] == ["proceed", "Validated", "StoreIntegration"]
    assert key not in keytrail("history", "acme", "--json").stdout


def test_bad_input_from_the_real_script(keytrail: Any, tmp_path: Path) -> None:
    """Missing database, unknown id, illegal trigger, malformed key, empty stdin, usage: one line, exit 2."""
    assert_failed(keytrail("status"), 2, "no keytrail database")
    assert not (tmp_path / "real.db").exists()
    assert keytrail("access", "acme").returncode == 0
    assert_failed(keytrail("history", "nobody"), 2, "'nobody'")
    assert_failed(keytrail("proceed", "acme"), 2, "acme is Prompted; proceed is allowed only in Validated")
    assert_failed(keytrail("save-config", "acme", "--key-stdin", input="short\n"), 2, "16 to 256 characters")
    assert_failed(keytrail("save-config", "acme", "--key-stdin", input=""), 2, "held no API key")
    assert_failed(keytrail("save-config", "acme"), 2, "no terminal to prompt")
    assert_failed(keytrail("status", "--bogus"), 2, "No such option: --bogus")
    assert_failed(keytrail("frobnicate"), 2, "No such command")
    assert json.loads(keytrail("status", "acme", "--json").stdout)["version"] == 1


def test_audit_problem_exits_1(keytrail: Any, tmp_path: Path) -> None:
    """A tampered log: verify exits 1 and lists the problem on stdout."""
    import sqlite3

    assert keytrail("access", "acme").returncode == 0
    assert keytrail("access", "acme").returncode == 0
    with sqlite3.connect(tmp_path / "real.db") as raw:
        raw.execute("UPDATE events SET reason = 'expired' WHERE version = 1")
    done = keytrail("verify", "--json")
    assert done.returncode == 1
    assert [p["version"] for p in json.loads(done.stdout)["problems"]] == [1]


def test_no_arguments_prints_help_and_exits_2(keytrail: Any) -> None:
    """Without a command, the help is shown and the exit code says usage; no error line is added."""
    done = keytrail()
    assert done.returncode == 2
    assert "Usage" in done.stdout and "sign-in" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("args", [("status", "--" + "x" * 100_000), ("no-such-command-" + "x" * 100_000,)])
def test_a_huge_unknown_option_or_command_is_one_short_line(keytrail: Any, args: tuple[str, ...]) -> None:
    """A usage error echoes the value it refuses, clipped: one line, never 100,000 characters."""
    done = keytrail(*args)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 400, done.stderr[:500]


def test_python_dash_m_runs_the_same_command(keytrail: Any, tmp_path: Path) -> None:
    """``python -m keytrail.cli`` runs the console script's ``main``: its help, its errors and exit codes."""
    env = {**os.environ, "KEYTRAIL_DATABASE_URL": f"sqlite:///{tmp_path}/real.db"}

    def module(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keytrail.cli", *args],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    shown = module("--help")
    assert shown.returncode == 0 and "python -m keytrail.cli" in shown.stdout and "sign-in" in shown.stdout
    script, by_module = keytrail("status", "--bogus"), module("status", "--bogus")
    assert (by_module.returncode, by_module.stdout, by_module.stderr) == (script.returncode, "", script.stderr)
