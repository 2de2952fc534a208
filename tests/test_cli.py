"""The ``keytrail`` command through typer's test runner: every command, its --json schema, exit codes, bad input."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import typer
from freezegun import freeze_time
from typer.testing import CliRunner, Result

from keytrail import Engine, State
from keytrail.cli import app, driving, parse_duration, rendering
from keytrail.errors import InvalidInput
from tests.conftest import MovableClock
from tests.helpers import EMAIL, PASSWORD, drive_to
from tests.json_schemas import check_json_output

OUTCOME_KEYS = {"stream", "trigger", "state", "reason", "version", "occurred_at", "replayed"}
KEY_OUTCOME_KEYS = OUTCOME_KEYS | {"key_id", "hint", "expires_at", "key"}
STATUS_KEYS = {"stream", "state", "reason", "version", "account_id", "key_id", "updated_at", "head_hash"}
EVENT_KEYS = {
    "position",
    "version",
    "occurred_at",
    "trigger",
    "source",
    "dest",
    "reason",
    "actor",
    "idempotency_key",
    "hash",
}
EXPORT_KEYS = {
    "position",
    "stream_id",
    "version",
    "trigger",
    "source",
    "dest",
    "reason",
    "data",
    "actor",
    "occurred_at",
    "idempotency_key",
    "schema_version",
    "prev_hash",
    "hash",
}
PROBLEM_KEYS = {"stream", "version", "kind", "message"}

runner = CliRunner()


def run(db: str, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Invoke the app; under --json, its output is validated against the shipped schemas."""
    result = runner.invoke(app, ["--db", db, *args], input=input, env=env)
    check_json_output(args, result.stdout, result.stderr, result.exit_code)
    return result


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def one_error_line(result: Result, code: int, *fragments: str) -> str:
    """The command failed with ``code`` and exactly one stderr line naming the facts, and printed nothing."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("keytrail: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""
    return lines[0]


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cli.db"


def drive_flow(db: str) -> dict[str, Any]:
    """The source document's flow through the CLI alone; returns each step's --json output."""
    seen: dict[str, Any] = {}
    seen["account"] = ok_json(
        run(
            db, "account", "create", "--email", EMAIL, "--company", "Acme", "--password-stdin", "--json", input=PASSWORD
        )
    )
    seen["access1"] = ok_json(run(db, "access", "acme", "--json", "--actor", "ops"))
    seen["sign_in"] = ok_json(
        run(db, "sign-in", "acme", "--email", EMAIL, "--password-stdin", "--json", input=PASSWORD)
    )
    seen["generate"] = ok_json(run(db, "generate-key", "acme", "--json"))
    seen["copy"] = ok_json(run(db, "copy-key", "acme", "--json"))
    seen["save"] = ok_json(run(db, "save-config", "acme", "--key-stdin", "--json", input=seen["copy"]["key"] + "\n"))
    seen["access2"] = ok_json(run(db, "access", "acme", "--json"))
    seen["proceed"] = ok_json(run(db, "proceed", "acme", "--json"))
    return seen


def test_whole_flow_json_schemas(db_url: str) -> None:
    """The source document's flow from the command line alone, on both backends, with each --json schema."""
    seen = drive_flow(db_url)
    assert set(seen["account"]) == {"account_id", "email", "company", "created_at"}
    for name in ("access1", "sign_in", "save", "access2", "proceed"):
        assert set(seen[name]) == OUTCOME_KEYS, name
    for name in ("generate", "copy"):
        assert set(seen[name]) == KEY_OUTCOME_KEYS, name
    assert (seen["access1"]["state"], seen["access1"]["reason"], seen["access1"]["version"]) == (
        "Prompted",
        "missing",
        1,
    )
    assert seen["generate"]["key"] == seen["copy"]["key"]
    assert seen["generate"]["hint"] == seen["generate"]["key"][-4:]
    assert [seen[n]["state"] for n in ("sign_in", "generate", "copy", "save", "access2", "proceed")] == [
        "SignedIn",
        "KeyGenerated",
        "KeyCopied",
        "ConfigSaved",
        "Validated",
        "StoreIntegration",
    ]
    assert seen["proceed"]["version"] == 7
    status = ok_json(run(db_url, "status", "acme", "--json"))
    assert set(status) == STATUS_KEYS
    assert (status["state"], status["reason"], status["version"]) == ("StoreIntegration", None, 7)
    report = ok_json(run(db_url, "verify", "--json"))
    assert report == {"ok": True, "streams": 1, "authority_streams": 2, "events": 7 + 2, "problems": []}


def test_text_output_of_driving_commands(sqlite_db: str) -> None:
    """Without --json a driving command prints one sentence; key commands add the key id and the key."""
    run(sqlite_db, "account", "create", "--email", EMAIL, "--company", "Acme", "--password-stdin", input=PASSWORD)
    result = run(sqlite_db, "access", "acme")
    assert result.exit_code == 0
    assert result.stdout == "acme: access -> Prompted (reason: missing), version 1\n"
    run(sqlite_db, "sign-in", "acme", "--email", EMAIL, "--password-stdin", input=PASSWORD)
    generated = run(sqlite_db, "generate-key", "acme", "--description", "Amazon Sales Channel")
    lines = generated.stdout.splitlines()
    assert lines[0] == "acme: generate_key -> KeyGenerated, version 3"
    assert lines[1].startswith("key id: key_")
    assert lines[2].startswith("key: kt_")


def test_sign_in_with_live_session(sqlite_db: str) -> None:
    """--session reuses the account's live session: the "already signed in" branch, no password read."""
    drive_flow(sqlite_db)
    ok_json(run(sqlite_db, "save-config", "acme", "--key-stdin", "--json", input="x" * 20))
    prompted = ok_json(run(sqlite_db, "access", "acme", "--json"))
    assert (prompted["state"], prompted["reason"]) == ("Prompted", "invalid")
    again = ok_json(run(sqlite_db, "sign-in", "acme", "--email", EMAIL, "--session", "--json"))
    assert again["state"] == "SignedIn"


def test_register_then_existing_key(sqlite_db: str) -> None:
    """register creates the account and signs in; copy-key --key-id copies an existing key of the account."""
    ok_json(run(sqlite_db, "access", "shop", "--json"))
    registered = ok_json(
        run(
            sqlite_db,
            *("register", "shop", "--email", "new@shop.test", "--company", "Shop", "--password-stdin", "--json"),
            input=PASSWORD,
        )
    )
    assert registered["state"] == "SignedIn"
    generated = ok_json(run(sqlite_db, "generate-key", "shop", "--json"))
    listed = ok_json(run(sqlite_db, "keys", "list", "--email", "new@shop.test", "--json"))
    assert listed["email"] == "new@shop.test"
    assert [k["key_id"] for k in listed["keys"]] == [generated["key_id"]]
    assert set(listed["keys"][0]) == {
        "key_id",
        "description",
        "hint",
        "fingerprint",
        "created_at",
        "expires_at",
        "revoked_at",
        "status",
    }
    assert generated["key"] not in json.dumps(listed)
    copied = ok_json(run(sqlite_db, "copy-key", "shop", "--key-id", generated["key_id"], "--json"))
    assert copied["key"] == generated["key"]


def test_keys_revoke_makes_access_prompt(sqlite_db: str) -> None:
    """A revoked key verifies as invalid: the next access prompts with that reason."""
    seen = drive_flow(sqlite_db)
    revoked = ok_json(run(sqlite_db, "keys", "revoke", seen["generate"]["key_id"], "--json"))
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    after = ok_json(run(sqlite_db, "access", "acme", "--json"))
    assert (after["state"], after["reason"]) == ("Prompted", "invalid")
    text = run(sqlite_db, "keys", "list", "--email", EMAIL)
    assert text.exit_code == 0
    assert text.stdout.splitlines()[0].split("\t") == [
        "key_id",
        "description",
        "hint",
        "created_at",
        "expires_at",
        "status",
    ]
    assert text.stdout.splitlines()[1].endswith("\trevoked")


def test_idempotency_key_replays_first_outcome(sqlite_db: str) -> None:
    """The same --idempotency-key returns the first outcome and writes nothing new."""
    first = ok_json(run(sqlite_db, "access", "acme", "--idempotency-key", "req-1", "--json"))
    again = ok_json(run(sqlite_db, "access", "acme", "--idempotency-key", "req-1", "--json"))
    assert (again["version"], again["replayed"], first["replayed"]) == (1, True, False)
    assert ok_json(run(sqlite_db, "status", "acme", "--json"))["version"] == 1


def test_status_all_history_and_replay(sqlite_db: str) -> None:
    """status lists every onboarding; history is the timeline; replay --as-of rebuilds a past state."""
    drive_flow(sqlite_db)
    ok_json(run(sqlite_db, "access", "other", "--json"))
    everyone = ok_json(run(sqlite_db, "status", "--json"))
    assert [h["stream"] for h in everyone] == ["acme", "other"]
    assert all(set(h) == STATUS_KEYS for h in everyone)
    table = run(sqlite_db, "status")
    assert table.stdout.splitlines() == [
        "stream\tstate\treason\tversion\tupdated_at",
        *[f"{h['stream']}\t{h['state']}\t{h['reason'] or ''}\t{h['version']}\t{h['updated_at']}" for h in everyone],
    ]
    one = run(sqlite_db, "status", "other")
    assert one.stdout == "other: Prompted (reason: missing), version 1\n"

    timeline = ok_json(run(sqlite_db, "history", "acme", "--json"))
    assert timeline["stream"] == "acme"
    assert [e["version"] for e in timeline["events"]] == list(range(1, 8))
    assert all(set(e) == EVENT_KEYS for e in timeline["events"])
    assert timeline["events"][0]["actor"] == "ops"
    text = run(sqlite_db, "history", "acme").stdout.splitlines()
    assert text[0].split("\t") == ["version", "time (UTC)", "trigger", "from", "to", "reason", "actor"]
    assert text[1].split("\t")[2:] == ["access", "Unverified", "Prompted", "missing", "ops"]

    rebuilt = ok_json(run(sqlite_db, "replay", "acme", "--json"))
    assert rebuilt["path"] == [
        "Unverified",
        "Prompted",
        "SignedIn",
        "KeyGenerated",
        "KeyCopied",
        "ConfigSaved",
        "Validated",
        "StoreIntegration",
    ]
    assert (rebuilt["state"], rebuilt["version"], rebuilt["ok"], rebuilt["problems"]) == (
        "StoreIntegration",
        7,
        True,
        [],
    )
    past = ok_json(run(sqlite_db, "replay", "acme", "--as-of", "2000-01-01T00:00:00Z", "--json"))
    assert (past["state"], past["version"], past["path"], past["as_of"]) == (
        "Unverified",
        0,
        ["Unverified"],
        "2000-01-01T00:00:00.000000+00:00",
    )
    at_first = ok_json(run(sqlite_db, "replay", "acme", "--as-of", timeline["events"][0]["occurred_at"], "--json"))
    assert at_first["version"] >= 1


def test_replay_as_of_a_past_instant(sqlite_db: str, clock: MovableClock) -> None:
    """--as-of cuts the stream at that instant (events written with a clock the test moves)."""
    with Engine.open(sqlite_db, clock=clock) as engine:
        drive_to(engine, "acme", State.SignedIn)
        middle = clock.advance(hours=1)
        clock.advance(hours=1)
        engine.generate_key("acme", description="Amazon Sales Channel")
    rebuilt = ok_json(run(sqlite_db, "replay", "acme", "--as-of", middle.isoformat(), "--json"))
    assert (rebuilt["state"], rebuilt["version"]) == ("SignedIn", 2)
    naive = ok_json(run(sqlite_db, "replay", "acme", "--as-of", middle.replace(tzinfo=None).isoformat(), "--json"))
    assert naive["version"] == 2


def test_export_jsonl_and_csv_hold_no_secrets(sqlite_db: str, tmp_path: Path) -> None:
    """export prints every event with every column, one JSON object per line, and never a key or password."""
    seen = drive_flow(sqlite_db)
    key = seen["generate"]["key"]
    jsonl = run(sqlite_db, "export", "--format", "jsonl")
    assert jsonl.exit_code == 0
    every = [json.loads(line) for line in jsonl.stdout.splitlines()]
    rows = [r for r in every if r["stream_id"] == "acme"]
    assert len(rows) == 7 and len(every) == 7 + 2  # and the authority's: an account created, a key generated
    assert all(set(r) == EXPORT_KEYS for r in rows)
    assert [r["version"] for r in rows] == list(range(1, 8))
    assert key not in jsonl.stdout and PASSWORD not in jsonl.stdout
    assert rows[4]["data"]["hint"] == key[-4:]

    as_csv = run(sqlite_db, "export", "--format", "csv")
    table = [r for r in csv.DictReader(io.StringIO(as_csv.stdout)) if r["stream_id"] == "acme"]
    assert len(table) == 7 and set(table[0]) == EXPORT_KEYS
    assert json.loads(table[4]["data"]) == rows[4]["data"]
    assert key not in as_csv.stdout and PASSWORD not in as_csv.stdout

    target = tmp_path / "events.jsonl"
    to_file = run(sqlite_db, "export", "--stream", "acme", "-o", str(target))
    assert (to_file.exit_code, to_file.stdout) == (0, "")
    assert [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()] == rows
    one_error_line(run(sqlite_db, "export", "--format", "xml"), 2, "'xml' is not an export format")
    one_error_line(run(sqlite_db, "export", "-o", str(tmp_path / "absent" / "x.jsonl")), 2, "No such file or directory")


def test_verify_and_digest_find_tampering(sqlite_db: str, tmp_path: Path) -> None:
    """An edited row: verify exits 1 naming stream and version; the kept digest no longer checks."""
    drive_flow(sqlite_db)
    token = run(sqlite_db, "digest").stdout.strip()
    count, _, digest_hex = token.partition(":")
    assert count == "9" and len(digest_hex) == 64  # 7 of acme, 2 of the authority
    described = ok_json(run(sqlite_db, "digest", "--json"))
    assert set(described) == {"events", "digest", "last_position", "token"} and described["token"] == token
    ok_json(run(sqlite_db, "access", "other", "--json"))
    still = run(sqlite_db, "digest", "--check", token)
    assert still.exit_code == 0 and "1 events were added since" in still.stdout
    bare = ok_json(run(sqlite_db, "digest", "--check", digest_hex, "--json"))
    assert bare["ok"] is True and bare["new_events"] == 1

    with sqlite3.connect(tmp_path / "cli.db") as raw:
        raw.execute("UPDATE events SET actor = 'mallory' WHERE stream_id = 'acme' AND version = 3")
    report = run(sqlite_db, "verify", "--json")
    assert report.exit_code == 1
    found = json.loads(report.stdout)
    assert found["ok"] is False
    assert [(p["stream"], p["version"], p["kind"]) for p in found["problems"]] == [("acme", 3, "hash")]
    assert all(set(p) == PROBLEM_KEYS for p in found["problems"])
    text = run(sqlite_db, "verify")
    assert text.exit_code == 1
    assert "problem: acme v3:" in text.stdout
    assert run(sqlite_db, "verify", "other").exit_code == 0

    changed = run(sqlite_db, "digest", "--check", token, "--json")
    assert changed.exit_code == 1
    assert json.loads(changed.stdout)["ok"] is False
    assert run(sqlite_db, "digest", "--check", digest_hex).exit_code == 1


def test_digest_check_notices_deleted_events(sqlite_db: str, tmp_path: Path) -> None:
    """A kept digest of more events than the log now holds fails: events were deleted."""
    drive_flow(sqlite_db)
    token = run(sqlite_db, "digest").stdout.strip()
    with sqlite3.connect(tmp_path / "cli.db") as raw:
        raw.execute("DELETE FROM events WHERE stream_id = 'acme' AND version = 7")
    result = run(sqlite_db, "digest", "--check", token)
    assert result.exit_code == 1
    assert "covers 9 events but the log now holds only 8" in result.stdout


def test_expiring_lists_keys_by_window(sqlite_db: str, clock: MovableClock) -> None:
    """expiring --within lists onboardings whose saved key expires inside the window, per the key authority."""
    with Engine.open(sqlite_db, clock=clock) as engine:
        drive_to(engine, "acme", State.StoreIntegration)
    # The CLI's clock is the system clock; the key was made at the conftest's fixed start (2026-01-01) and
    # lives a year, so a window of a few thousand days always covers it and a zero window never does
    # unless it already expired.
    wide = ok_json(run(sqlite_db, "expiring", "--within", "5000d", "--json"))
    assert set(wide) == {"as_of", "within_seconds", "onboardings"}
    assert wide["within_seconds"] == 5000 * 86400
    assert [k["stream"] for k in wide["onboardings"]] == ["acme"]
    assert set(wide["onboardings"][0]) == {"stream", "state", "key_id", "hint", "expires_at", "expired", "days_left"}
    assert wide["onboardings"][0]["expires_at"] == "2027-01-01T09:00:00.000000+00:00"
    narrow = ok_json(run(sqlite_db, "expiring", "--within", "0s", "--json"))
    assert [k["expired"] for k in narrow["onboardings"]] in ([], [True])
    one_error_line(run(sqlite_db, "expiring", "--within", "soon"), 2, "'soon' is not a duration")


def test_expiring_with_a_fresh_key(sqlite_db: str) -> None:
    """A key generated now expires in a year: inside a 400-day window, outside a 30-day one."""
    drive_flow(sqlite_db)
    assert [k["stream"] for k in ok_json(run(sqlite_db, "expiring", "--within", "400d", "--json"))["onboardings"]] == [
        "acme"
    ]
    assert ok_json(run(sqlite_db, "expiring", "--within", "30d", "--json"))["onboardings"] == []
    assert run(sqlite_db, "expiring", "--within", "30d").stdout == "No saved key expires within 30d.\n"


def test_diagram_command(sqlite_db: str, tmp_path: Path) -> None:
    """diagram prints each format; --highlight marks the onboarding's path; -o writes a file."""
    mermaid = run(sqlite_db, "diagram")
    assert mermaid.exit_code == 0 and mermaid.stdout.startswith("flowchart LR\n")
    assert "linkStyle" not in mermaid.stdout
    assert run(sqlite_db, "diagram", "--format", "dot").stdout.startswith("digraph onboarding {")
    drive_flow(sqlite_db)
    marked = run(sqlite_db, "diagram", "--highlight", "acme")
    assert "class StoreIntegration current" in marked.stdout
    assert "linkStyle " in marked.stdout
    target = tmp_path / "d.svg"
    written = run(sqlite_db, "diagram", "--format", "svg", "--highlight", "acme", "-o", str(target))
    assert (written.exit_code, written.stdout) == (0, "")
    assert target.read_text(encoding="utf-8").lstrip().startswith("<?xml")
    one_error_line(run(sqlite_db, "diagram", "--format", "png"), 2, "'png' is not a diagram format")
    one_error_line(run(sqlite_db, "diagram", "--highlight", "nobody"), 2, "no onboarding 'nobody'")


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """demo walks the flow, the expiry and the repeat, then prints the timeline, verify and the diagram."""
    result = run(f"sqlite:///{tmp_path}/demo.db", "demo")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "reason: expired" in out
    assert "verify: ok: 1 onboarding(s), 3 authority stream(s), 17 events, 0 problem(s)" in out
    assert "flowchart LR" in out and "class StoreIntegration current" in out and "linkStyle" in out
    assert "kt_" not in out
    assert f"keytrail --db sqlite:///{tmp_path}/demo.db serve --port 8080" in out.replace("\n", "")


def test_demo_refuses_a_database_in_use(tmp_path: Path) -> None:
    """The demo creates an account with a published password, so it never runs on a database that holds anything."""
    url = f"sqlite:///{tmp_path}/live.db"
    assert run(url, "access", "live-store").exit_code == 0
    result = run(url, "demo")
    assert result.exit_code == 2
    assert "needs a fresh database" in result.stderr
    assert run(url, "history", "live-store", "--json").stdout.count('"version"') == 1


# -- bad input and failures -------------------------------------------------------------------------------


def test_missing_database_is_bad_input(tmp_path: Path) -> None:
    """A reading command on a database that does not exist exits 2 and creates nothing."""
    db = f"sqlite:///{tmp_path}/absent.db"
    for args in (
        ("status",),
        ("history", "acme"),
        ("verify",),
        ("export",),
        ("digest",),
        ("keys", "list", "--email", EMAIL),
    ):
        one_error_line(run(db, *args), 2, "no keytrail database", "absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_not_a_keytrail_database(tmp_path: Path) -> None:
    """A foreign file is refused with exit 2 and left untouched."""
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"hello, not sqlite at all")
    one_error_line(run(f"sqlite:///{foreign}", "status"), 2, "not a keytrail database")
    one_error_line(run(f"sqlite:///{foreign}", "access", "acme"), 2, "not a keytrail database")
    assert foreign.read_bytes() == b"hello, not sqlite at all"


def test_unreachable_server_exits_3() -> None:
    """A database server that does not answer is exit 3, one line."""
    one_error_line(run("postgresql+psycopg://u:pw@127.0.0.1:1/x", "status"), 3, "cannot be reached")


def test_unknown_onboarding(sqlite_db: str) -> None:
    """Reading an onboarding that does not exist is exit 2 naming it."""
    run(sqlite_db, "access", "acme")
    for args in (
        ("status", "nobody"),
        ("history", "nobody"),
        ("replay", "nobody"),
        ("verify", "nobody"),
        ("export", "--stream", "nobody"),
        ("diagram", "--highlight", "nobody"),
    ):
        one_error_line(run(sqlite_db, *args), 2, "'nobody'")


def test_illegal_trigger_names_state_and_allowed(sqlite_db: str) -> None:
    """An illegal trigger is exit 2, names the state and what is allowed, and writes nothing."""
    run(sqlite_db, "access", "acme")
    line = one_error_line(run(sqlite_db, "proceed", "acme"), 2, "acme is Prompted", "Allowed now:")
    assert "proceed is allowed only in Validated" in line
    assert ok_json(run(sqlite_db, "status", "acme", "--json"))["version"] == 1


def test_malformed_and_missing_secrets(sqlite_db: str) -> None:
    """Malformed keys, empty stdin and no terminal to prompt on are exit 2, and nothing is written."""
    run(sqlite_db, "access", "acme")
    one_error_line(run(sqlite_db, "save-config", "acme", "--key-stdin", input="short\n"), 2, "16 to 256 characters")
    one_error_line(
        run(sqlite_db, "save-config", "acme", "--key-stdin", input="has a space inside it\n"), 2, "printable ASCII"
    )
    one_error_line(run(sqlite_db, "save-config", "acme", "--key-stdin", input=""), 2, "held no API key")
    one_error_line(run(sqlite_db, "save-config", "acme"), 2, "no terminal to prompt", "--key-stdin")
    one_error_line(
        run(sqlite_db, "sign-in", "acme", "--email", EMAIL, "--password-stdin", input="\n"), 2, "held no password"
    )
    one_error_line(run(sqlite_db, "sign-in", "acme", "--email", EMAIL, "--session", "--password-stdin"), 2, "not both")
    assert ok_json(run(sqlite_db, "status", "acme", "--json"))["version"] == 1


def test_wrong_password_is_one_line_without_the_password(sqlite_db: str) -> None:
    """Wrong credentials: exit 2, one line, and the password never appears anywhere."""
    drive = run(
        sqlite_db, "account", "create", "--email", EMAIL, "--company", "Acme", "--password-stdin", input=PASSWORD
    )
    assert drive.exit_code == 0
    run(sqlite_db, "access", "acme")
    wrong = "not the password at all"
    result = run(sqlite_db, "sign-in", "acme", "--email", EMAIL, "--password-stdin", input=wrong)
    line = one_error_line(result, 2, "wrong email or password")
    assert wrong not in line


def test_bad_ids_and_tokens(sqlite_db: str) -> None:
    """Malformed onboarding ids, key ids, digests and instants are exit 2 before anything is written."""
    one_error_line(run(sqlite_db, "access", "bad id"), 2, "not a valid onboarding id")
    run(sqlite_db, "access", "acme")
    one_error_line(run(sqlite_db, "keys", "revoke", "nope"), 2, "not a key id")
    one_error_line(run(sqlite_db, "keys", "revoke", "key_0123456789abcdef"), 2, "no key key_0123456789abcdef")
    one_error_line(run(sqlite_db, "keys", "list", "--email", "who@else.test"), 2, "no account")
    one_error_line(run(sqlite_db, "digest", "--check", "12:xyz"), 2, "is not a digest")
    one_error_line(run(sqlite_db, "replay", "acme", "--as-of", "yesterday"), 2, "not an ISO 8601 instant")


def test_usage_errors_exit_2(sqlite_db: str) -> None:
    """Unknown options and missing arguments are usage errors (exit 2)."""
    assert run(sqlite_db, "status", "--bogus").exit_code == 2
    assert run(sqlite_db, "access").exit_code == 2


def test_hidden_prompt_reads_the_secret(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the password is asked twice, hidden, and never echoed to stdout."""
    monkeypatch.setattr(driving, "_stdin_is_terminal", lambda: True)
    result = run(
        sqlite_db,
        "account",
        "create",
        "--email",
        EMAIL,
        "--company",
        "Acme",
        "--json",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.stderr
    assert PASSWORD not in result.output
    run(sqlite_db, "access", "acme")
    signed = run(sqlite_db, "sign-in", "acme", "--email", EMAIL, "--json", input=f"{PASSWORD}\n")
    assert json.loads(signed.stdout)["state"] == "SignedIn"


def test_logs_go_to_stderr_only(sqlite_db: str) -> None:
    """With info logs on, stdout is still exactly the command's JSON; the log lines are on stderr."""
    result = run(sqlite_db, "access", "acme", "--json", env={"KEYTRAIL_LOG_LEVEL": "info"})
    assert json.loads(result.stdout)["state"] == "Prompted"
    assert '"transition"' in result.stderr


def test_help_lists_the_commands_in_the_flows_order() -> None:
    """The flow's commands first, in its order, then the audit commands, the demo, serve, and the groups.

    The order is the order the command modules register on the app (keytrail/cli/__init__.py).
    """
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    assert group.list_commands(typer.Context(group)) == [
        *("init", "access", "sign-in", "register", "generate-key", "copy-key", "save-config", "proceed"),
        *("status", "history", "replay", "audit", "expiring", "verify", "export", "digest", "diagram", "report"),
        *("demo", "serve", "tail", "account", "keys", "checkpoint", "token", "db"),
    ]


def test_rich_table_on_a_terminal(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, tables are drawn with rich; piped, they are tab-separated (checked above)."""
    run(sqlite_db, "access", "acme", "--actor", "[b]ops")
    monkeypatch.setattr(rendering, "_stdout_is_terminal", lambda: True)
    result = run(sqlite_db, "history", "acme")
    assert "History of acme" in result.stdout
    assert "[b]ops" in result.stdout  # an actor is shown as given, never read as markup
    assert "\t" not in result.stdout
    assert "┃" in result.stdout or "|" in result.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("2w", 14 * 86400), ("12h", 12 * 3600), ("1d12h", 36 * 3600), ("90m", 5400), ("0s", 0)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    """Durations are a number and a unit, possibly several."""
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "30 days", "-1d", "1y"])
def test_parse_duration_refuses(text: str) -> None:
    """Anything else is refused with the accepted form."""
    with pytest.raises(InvalidInput, match="not a duration"):
        parse_duration(text)


def test_progress_on_a_terminal_leaves_stdout_alone(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With stderr on a terminal, verify, replay and export draw progress there; stdout is unchanged."""
    drive_flow(sqlite_db)
    piped = {args: run(sqlite_db, *args).stdout for args in (("verify",), ("replay", "acme"), ("export",))}
    monkeypatch.setattr(rendering, "_stderr_is_terminal", lambda: True)
    for args, expected in piped.items():
        result = run(sqlite_db, *args)
        assert (result.exit_code, result.stdout) == (0, expected), args


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("expiring", "--within", "99999999999d"), "at most 100 years"),
        (("expiring", "--within", "36526d"), "at most 100 years"),
        (("replay", "acme", "--as-of", "9999-12-31T23:59:59-12:00"), "outside"),
        (("replay", "acme", "--as-of", "0001-01-01T00:00:00+14:00"), "outside"),
        (("digest", "--check", "\u00b2:" + "ab" * 32), "not an event count"),
        (("digest", "--check", "\u0661\u0662:" + "ab" * 32), "not an event count"),
    ],
    ids=["within-overflow", "within-past-100-years", "as-of-past-9999", "as-of-before-1", "digest-²", "digest-arabic"],
)
def test_out_of_range_values_are_bad_input_not_a_crash(sqlite_db: str, args: tuple[str, ...], fragment: str) -> None:
    """Values that parse but overflow a date, or digits that are not ASCII, exit 2 with one line, never 70."""
    run(sqlite_db, "access", "acme")
    one_error_line(run(sqlite_db, *args), 2, fragment)


LONG = "x" * 100_000


@pytest.mark.parametrize(
    "args",
    [
        ("export", "--format", LONG),
        ("diagram", "--format", LONG),
        ("expiring", "--within", LONG),
        ("replay", "acme", "--as-of", LONG),
        ("digest", "--check", LONG + ":" + "ab" * 32),
        ("--db", "sqlite:///" + LONG + "/k.db", "status"),
        ("--db", "nosuch://" + LONG, "status"),
        ("--db", "sqlite:///" + LONG, "diagram", "-o", "/nonexistent-folder/x"),
        ("--db", "postgresql://u@" + LONG + "/db", "status"),
        ("diagram", "-o", "./" + LONG),
        ("diagram", "-o", "/nonexistent-folder/" + LONG),
        ("key-file", "save-config", "acme", "--key-stdin"),
    ],
    ids=[
        "export-format",
        "diagram-format",
        "within",
        "as-of",
        "digest",
        "db-path",
        "db-scheme",
        "db-and-output",
        "db-host",
        "output-name",
        "output-folder",
        "key-file",
    ],
)
def test_a_huge_value_is_not_echoed_whole(sqlite_db: str, args: tuple[str, ...]) -> None:
    run(sqlite_db, "access", "acme")
    env = {"KEYTRAIL_SECRET_KEY_FILE": "./" + LONG} if args[0] == "key-file" else None
    args = args[1:] if args[0] == "key-file" else args
    result = runner.invoke(
        app, args if args[0] == "--db" else ["--db", sqlite_db, *args], env=env, input="k" * 20 + "\n"
    )
    line = one_error_line(result, 2)
    assert len(line) < 400, line[:500]


def test_query_parameters_on_a_sqlite_url_create_no_strange_file(tmp_path: Path) -> None:
    """sqlite:///k.db?mode=ro&uri=true is refused, never a new file named k.db?mode=ro (with or without k.db)."""
    url = f"sqlite:///{tmp_path}/k.db"
    for _ in range(2):
        for query in ("?mode=ro&uri=true", "?mode=ro", "?uri=true"):
            one_error_line(run(url + query, "status"), 2, "query")
            one_error_line(run(url + query, "access", "acme"), 2, "query")
        assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["k.db", "k.db.key"])
        assert run(url, "access", "acme").exit_code == 0


def _times_in(value: Any, found: list[str]) -> list[str]:
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, str) and (name.endswith("_at") or name == "as_of"):
                found.append(item)
            else:
                _times_in(item, found)
    elif isinstance(value, list):
        for item in value:
            _times_in(item, found)
    return found


def test_every_json_time_has_microseconds_even_at_a_whole_second(sqlite_db: str) -> None:
    """docs/cli.md's schema spells every time 2026-...T09:00:00.000000+00:00, whatever the clock read."""
    outputs: list[Any] = []
    with freeze_time("2026-01-01 09:00:00"):
        outputs.extend(drive_flow(sqlite_db).values())
        for args in (
            ("status", "acme"),
            ("status",),
            ("history", "acme"),
            ("replay", "acme", "--as-of", "2026-01-01T09:00:00Z"),
            ("expiring", "--within", "400d"),
            ("keys", "list", "--email", EMAIL),
            ("digest",),
        ):
            outputs.append(ok_json(run(sqlite_db, *args, "--json")))
        key_id = outputs[3]["key_id"]
        outputs.append(ok_json(run(sqlite_db, "keys", "revoke", key_id, "--json")))
    times = _times_in(outputs, [])
    assert len(times) > 20
    for time in times:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", time), time
