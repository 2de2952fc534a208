"""A second attack on the fixes of issue 9: what a reviewer with database write access tried.

Each test names the hole it closes; each failed on the code as the fixes left it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from keytrail import Engine, State
from keytrail.cli import app
from keytrail.engine import reports
from keytrail.errors import CorruptEvent, CorruptProjection, InvalidInput, KeytrailError, UnknownKey
from keytrail.persistence import KeytrailTable
from keytrail.persistence.store import events_table
from keytrail.portal.http import HttpKeyVerifier
from tests.conftest import MovableClock
from tests.helpers import EMAIL, PASSWORD, drive_to, ensure_account

runner = CliRunner()


def cli(db: str, *args: str) -> Result:
    return runner.invoke(app, ["--db", db, *args])


def _write(engine: Engine, statement: str, **params: Any) -> None:
    with engine.database.write() as conn:
        conn.execute(sa.text(statement), params)


def snapshot(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table as stored (plain SQL: a damaged time is not parsed)."""
    with engine.database.read() as conn:
        return {
            table.name: sorted(map(repr, conn.execute(sa.text(f"SELECT * FROM {table.name}"))))
            for table in KeytrailTable.metadata.sorted_tables
        }


@pytest.fixture
def sqlite_engine(tmp_path: Path, clock: MovableClock) -> Any:
    with Engine.open(f"sqlite:///{tmp_path}/keytrail.db", clock=clock) as opened:
        yield opened


# -- a damaged projection row met by an ordinary command (general path and hot path) -------------------

DAMAGED_HEADS = {
    "garbage time": "updated_at = 'garbage'",
    "time as a number": "updated_at = 12",
    "respelled time": "updated_at = updated_at || '+05:00'",
    "version as text": "version = '3x'",
    "version as a fraction": "version = 2.5",
    "unknown state": "state = 'Bogus'",
    "head hash as a blob": "head_hash = X'07'",
}
COMMANDS: dict[str, tuple[State, Callable[[Engine], Any]]] = {
    "sign_in": (State.Prompted, lambda e: e.sign_in("acme", email=EMAIL, password=PASSWORD)),
    "generate_key": (State.SignedIn, lambda e: e.generate_key("acme", description="x")),
    "copy_key": (State.KeyGenerated, lambda e: e.copy_key("acme")),
    "save_config": (State.KeyCopied, lambda e: e.save_config("acme", key="k" * 32)),
    "access (hot path)": (State.ConfigSaved, lambda e: e.access("acme")),
    "proceed (hot path)": (State.Validated, lambda e: e.proceed("acme")),
}


@pytest.mark.parametrize("damage", DAMAGED_HEADS.values(), ids=list(DAMAGED_HEADS))
@pytest.mark.parametrize("command", COMMANDS.values(), ids=list(COMMANDS))
def test_a_damaged_projection_stops_every_command_cleanly(
    sqlite_engine: Engine, damage: str, command: tuple[State, Callable[[Engine], Any]]
) -> None:
    """Before: ValueError / TypeError from the general path's projection read (exit 70); a
    fractional version was written on as version 3.5."""
    state, run = command
    drive_to(sqlite_engine, "acme", state)
    _write(sqlite_engine, f"UPDATE streams SET {damage} WHERE stream_id = 'acme'")
    before = snapshot(sqlite_engine)
    with pytest.raises(CorruptProjection, match="acme") as caught:
        run(sqlite_engine)
    assert caught.value.exit_code == 1
    assert snapshot(sqlite_engine) == before


def test_a_damaged_saved_key_time_stops_a_command_cleanly(sqlite_engine: Engine) -> None:
    drive_to(sqlite_engine, "acme", State.ConfigSaved)
    _write(sqlite_engine, "UPDATE store_config SET saved_at = 'garbage' WHERE stream_id = 'acme'")
    before = snapshot(sqlite_engine)
    with pytest.raises(CorruptProjection, match="acme"):
        sqlite_engine.save_config("acme", key="k" * 32)
    assert snapshot(sqlite_engine) == before


@pytest.mark.parametrize(
    "args",
    [
        ["sign-in", "acme", "--email", EMAIL, "--password-stdin"],
        ["generate-key", "acme", "--description", "x"],
        ["access", "acme"],
        ["status", "acme"],
    ],
    ids=lambda a: a[0],
)
def test_the_cli_exits_1_on_a_damaged_projection(sqlite_engine: Engine, args: list[str]) -> None:
    drive_to(sqlite_engine, "acme", State.SignedIn)
    _write(sqlite_engine, "UPDATE streams SET updated_at = 'garbage' WHERE stream_id = 'acme'")
    result = runner.invoke(app, ["--db", sqlite_engine.database.url, *args], input=PASSWORD + "\n")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "acme" in result.stderr


# -- values no reader can show -----------------------------------------------------------------------


def _assert_one_line_exit_1(result: Result, *fragments: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    said = result.stderr or result.stdout
    assert "Traceback" not in said
    for fragment in fragments:
        assert fragment in said, said


LONE_SURROGATE = '{"fingerprint": "\\ud800", "hint": "x"}'


@pytest.mark.parametrize("args", [["export"], ["export", "--format", "csv"], ["verify"], ["digest"]], ids=" ".join)
def test_a_lone_surrogate_in_data_is_named_by_every_reader(sqlite_engine: Engine, args: list[str]) -> None:
    """``\\ud800`` is valid JSON text but no character: json.dumps keeps it escaped, so the row
    passes the spelling check, and an export then failed encoding it (UnicodeEncodeError, exit 70)."""
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    _write(sqlite_engine, "UPDATE events SET data = :d WHERE stream_id = 'acme' AND version = 6", d=LONE_SURROGATE)
    _assert_one_line_exit_1(cli(sqlite_engine.database.url, *args), "acme")


def test_a_lone_surrogate_in_data_is_a_corrupt_event(sqlite_engine: Engine) -> None:
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    _write(sqlite_engine, "UPDATE events SET data = :d WHERE stream_id = 'acme' AND version = 6", d=LONE_SURROGATE)
    with pytest.raises(CorruptEvent, match="version 6 of acme"):
        sqlite_engine.history("acme")


DAMAGED_PORTAL_TIMES = {
    "key expiry": "UPDATE api_keys SET expires_at = 'garbage'",
    "key revocation": "UPDATE api_keys SET revoked_at = 'garbage'",
    "saved key time": "UPDATE store_config SET saved_at = 'garbage'",
    "account lock": "UPDATE accounts SET locked_until = 'garbage'",
}


@pytest.mark.parametrize("damage", DAMAGED_PORTAL_TIMES.values(), ids=list(DAMAGED_PORTAL_TIMES))
@pytest.mark.parametrize(
    "args",
    [["expiring", "--within", "30d"], ["access", "acme"], ["status", "acme"], ["verify"]],
    ids=" ".join,
)
def test_a_damaged_time_outside_the_log_is_one_error(sqlite_engine: Engine, damage: str, args: list[str]) -> None:
    """The key authority's and the saved key's times are parsed by SQLAlchemy, which raised a bare
    ValueError (exit 70) on a time keytrail never writes; now an IntegrityViolation (exit 1) or no effect."""
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    _write(sqlite_engine, damage)
    result = cli(sqlite_engine.database.url, *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1), (result.exit_code, result.stdout, result.stderr)
    if result.exit_code == 1 and result.stderr:
        assert len(result.stderr.strip().splitlines()) == 1 and "garbage" in result.stderr, result.stderr


# -- idempotent retries ------------------------------------------------------------------------------


def test_a_retry_after_the_onboarding_switched_account_shows_no_key(engine: Engine) -> None:
    """The onboarding signed in as another account since: copy_key could not hand the first
    account's key over now, so neither may a retry (before: the key came back, the first
    account's session on the onboarding being still live)."""
    ensure_account(engine)
    engine.access("acme")
    engine.sign_in("acme", email=EMAIL, password=PASSWORD)
    first = engine.generate_key("acme", description="x", idempotency_key="req-1")
    engine.copy_key("acme")
    engine.save_config("acme", key="k" * 32)  # not a key the portal issued: access sends it back
    assert engine.access("acme").state is State.Prompted
    ensure_account(engine, "other@acme.test")
    engine.sign_in("acme", email="other@acme.test", password=PASSWORD)
    with pytest.raises(UnknownKey):
        engine.copy_key("acme", key_id=first.key_id)
    with pytest.raises(KeytrailError, match="cannot be shown again") as caught:
        engine.generate_key("acme", description="x", idempotency_key="req-1")
    assert first.key not in str(caught.value)


# -- -o and the key file ---------------------------------------------------------------------------


@pytest.mark.parametrize("db", ["bogus://x", "sqlite:///k.db?mode=ro"], ids=["unknown scheme", "refused query"])
def test_o_never_overwrites_the_named_key_file_even_when_the_url_is_refused(tmp_path: Path, db: str) -> None:
    """diagram needs no database, so it ran with a URL keytrail refuses; the guard then knew no
    files at all and wrote the diagram over the key file KEYTRAIL_SECRET_KEY_FILE names (exit 0)."""
    key_file = tmp_path / "k.key"
    key_file.write_text("the key\n")
    result = runner.invoke(
        app, ["--db", db, "diagram", "-o", str(key_file)], env={"KEYTRAIL_SECRET_KEY_FILE": str(key_file)}
    )
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "encryption key file" in result.stderr
    assert key_file.read_text() == "the key\n"


def test_o_never_overwrites_the_database_a_refused_url_names(tmp_path: Path) -> None:
    """Before: ``--db 'sqlite:///k.db?mode=ro' diagram -o k.db`` wrote the diagram over the database (exit 0)."""
    url = f"sqlite:///{tmp_path}/k.db"
    with Engine.open(url) as opened:
        drive_to(opened, "acme", State.Prompted)
    before = (tmp_path / "k.db").read_bytes()
    result = runner.invoke(app, ["--db", url + "?mode=ro", "diagram", "-o", str(tmp_path / "k.db")])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert (tmp_path / "k.db").read_bytes() == before


# -- inputs that are not text ------------------------------------------------------------------------

UNDECODABLE = "pass\udcffword"  # what Python makes of the byte 0xff in an argument or on stdin


def test_a_password_that_is_not_text_is_bad_input(sqlite_engine: Engine) -> None:
    """Bytes that are no UTF-8 reach Python as lone surrogates; hashing them failed (UnicodeEncodeError, exit 70)."""
    with pytest.raises(InvalidInput, match="password"):
        sqlite_engine.portal.create_account(EMAIL, UNDECODABLE, company="Acme")
    drive_to(sqlite_engine, "acme", State.Prompted)
    with pytest.raises(InvalidInput, match="password"):
        sqlite_engine.sign_in("acme", email=EMAIL, password=UNDECODABLE)


def test_a_database_url_that_is_not_text_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="database URL"):
        Engine.open(f"sqlite:///{tmp_path}/k\udcff.db")


def test_the_real_process_refuses_undecodable_bytes_with_exit_2(tmp_path: Path) -> None:
    keytrail = str(Path(sys.executable).parent / "keytrail")
    url = f"sqlite:///{tmp_path}/k.db"
    runs = [
        subprocess.run(
            [keytrail, "--db", url, "account", "create", "--email", EMAIL, "--company", "x", "--password-stdin"],
            input=b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\n",
            capture_output=True,
            check=False,
            timeout=120,
        ),
        subprocess.run(
            [keytrail, "--db", os.fsencode(url[:-4]) + b"\xff.db", "status"],
            capture_output=True,
            check=False,
            timeout=120,
        ),
    ]
    for done in runs:
        assert done.returncode == 2, done.stderr
        assert b"unexpected" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    "url", ["postgresql://u@[::1/x", "postgresql+asyncpg://u@db.test/x"], ids=["unclosed bracket", "missing driver"]
)
def test_a_database_url_keytrail_cannot_use_is_bad_input(url: str) -> None:
    """Before: ValueError from the URL parser, ModuleNotFoundError from SQLAlchemy (exit 70)."""
    with pytest.raises(InvalidInput):
        Engine.open(url)
    result = runner.invoke(app, ["--db", url, "status"])
    assert result.exit_code == 2, (result.exception, result.stderr)


# -- the key gateway's settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"backoff": float("nan")},
        {"retries": 1.5},
        {"retries": True},
        {"timeout": "5"},
    ],
    ids=["nan timeout", "endless timeout", "nan backoff", "fractional retries", "bool retries", "text timeout"],
)
def test_gateway_settings_that_are_no_numbers_are_bad_input(setting: dict[str, Any]) -> None:
    """Before: accepted, then ValueError ("deadline must not be NaN") or TypeError at the first
    verification (exit 70), or a deadline that never comes, which no hostile gateway could be cut by."""
    with pytest.raises(InvalidInput):
        HttpKeyVerifier("http://127.0.0.1:9", **setting)


@pytest.mark.parametrize(
    "data", ['{"description": "x"}', "not json", '{"key_id": 5}', '{"key_id": "k", "key_id": "key_0000000000000000"}']
)
def test_a_retry_of_a_damaged_event_is_an_integrity_error(sqlite_engine: Engine, data: str) -> None:
    """The retry reads the earlier event's key id without the readers' checks: KeyError, TypeError or
    JSONDecodeError (exit 70) before; a repeated member was read as its last copy."""
    drive_to(sqlite_engine, "acme", State.SignedIn)
    sqlite_engine.generate_key("acme", description="x", idempotency_key="req-1")
    _write(sqlite_engine, "UPDATE events SET data = :d WHERE stream_id = 'acme' AND version = 3", d=data)
    with pytest.raises(CorruptEvent, match="version 3 of acme"):
        sqlite_engine.generate_key("acme", description="x", idempotency_key="req-1")


def test_a_retry_of_an_event_without_its_key_id_is_an_integrity_error(engine: Engine) -> None:
    drive_to(engine, "acme", State.SignedIn)
    engine.generate_key("acme", description="x", idempotency_key="req-1")
    with engine.database.write() as conn:
        conn.execute(
            sa.update(events_table)
            .where(events_table.c.stream_id == "acme", events_table.c.version == 3)
            .values(data={"description": "x"})
        )
    with pytest.raises(CorruptEvent, match="version 3 of acme"):
        engine.generate_key("acme", description="x", idempotency_key="req-1")


@pytest.mark.parametrize("within", [timedelta.max, 30, None], ids=["largest timedelta", "a number", "None"])
def test_expiring_refuses_a_window_that_is_no_span(sqlite_engine: Engine, within: Any) -> None:
    """Before: OverflowError or TypeError (exit 70 for a caller of the report)."""
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    with pytest.raises(InvalidInput):
        reports.expiring(sqlite_engine, within)


@pytest.mark.parametrize("token", [None, b"0:" + b"0" * 64, 5], ids=["None", "bytes", "a number"])
def test_check_digest_refuses_a_token_that_is_no_text(sqlite_engine: Engine, token: Any) -> None:
    with pytest.raises(InvalidInput):
        reports.check_digest(sqlite_engine, token)
