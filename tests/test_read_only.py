"""The auditor's open: a handed-over database read without the encryption key, writing and creating nothing.

The suite runs as root, which chmod does not stop; so besides making the file and its folder
read-only, every test compares the folder's listing (names, sizes, modification times) before
and after: ``read_only=True`` (SQLite's ``mode=ro``) must leave no new file, no -wal, no -shm, no
key file, whatever the permissions would have allowed.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keytrail import Engine, State
from keytrail.cli import app
from keytrail.engine import reports
from keytrail.engine.tokens import Tokens
from keytrail.errors import DatabaseUnavailable, ReadOnly, SecretKeyError, StorageError
from tests.conftest import START, MovableClock
from tests.helpers import EMAIL, PASSWORD, drive_to, skip_outside_ci, snapshot
from tests.json_schemas import check_json_output

runner = CliRunner()
Listing = dict[str, tuple[int, int]]


def listing(folder: Path) -> Listing:
    """Every file of the folder with its size and modification time: a write or a new file changes it."""
    return {entry.name: (entry.stat().st_size, entry.stat().st_mtime_ns) for entry in folder.iterdir()}


def _history(engine: Engine) -> dict[str, str]:
    """Two onboardings and an authority with a revoked key: something to audit. Returns the key ids."""
    drive_to(engine, "acme", State.StoreIntegration)
    drive_to(engine, "beta", State.KeyGenerated)
    revoked = engine.status("beta").key_id
    assert revoked is not None
    engine.portal.revoke_key(revoked)
    engine.access("gamma")
    drive_to(engine, "delta", State.KeyGenerated)
    return {"revoked": revoked}


@pytest.fixture
def handed_over(tmp_path: Path, clock: MovableClock) -> Iterator[tuple[str, Path]]:
    """A database as an auditor receives it: closed, its key file deleted, file and folder read-only."""
    folder = tmp_path / "audit"
    folder.mkdir()
    url = f"sqlite:///{folder}/keytrail.db"
    with Engine.open(url, clock=clock) as engine:
        _history(engine)
    (folder / "keytrail.db.key").unlink()
    assert sorted(p.name for p in folder.iterdir()) == ["keytrail.db"]
    (folder / "keytrail.db").chmod(0o444)
    folder.chmod(0o555)
    try:
        yield url, folder
    finally:
        folder.chmod(0o755)
        (folder / "keytrail.db").chmod(0o644)


READS: dict[str, Callable[[Engine], Any]] = {
    "status": lambda e: e.status("acme"),
    "state": lambda e: e.state("acme"),
    "streams": lambda e: list(e.streams()),
    "history": lambda e: e.history("acme"),
    "replay": lambda e: e.replay("acme"),
    "replay as of": lambda e: e.replay("acme", START + timedelta(seconds=1)),
    "audit": lambda e: e.audit("acme"),
    "audit at": lambda e: e.audit("acme", at=START + timedelta(seconds=1)),
    "verify": lambda e: e.verify(),
    "events": lambda e: list(e.events()),
    "saved key status": lambda e: e.saved_key_status("acme"),
    "saved key verdicts": lambda e: e.admin.saved_key_verdicts(),
    "digest": reports.digest,
    "check digest": lambda e: reports.check_digest(e, reports.digest(e).token),
    "expiring": lambda e: reports.expiring(e, timedelta(days=400)),
    "export": lambda e: list(reports.export_rows(e)),
    "keys list": lambda e: e.portal.list_keys(EMAIL),
    "tokens list": lambda e: Tokens(e).listed(),
}

WRITES: dict[str, Callable[[Engine], Any]] = {
    "access": lambda e: e.access("acme"),
    "access new": lambda e: e.access("epsilon"),
    "sign_in": lambda e: e.sign_in("gamma", email=EMAIL, password=PASSWORD),
    "sign_in wrong": lambda e: e.sign_in("gamma", email=EMAIL, password="a wrong password"),
    "register": lambda e: e.register("gamma", email="new@acme.test", password=PASSWORD, company="Acme"),
    "generate_key": lambda e: e.generate_key("acme", description="Amazon Sales Channel"),
    "copy_key": lambda e: e.copy_key("delta"),
    "save_config": lambda e: e.save_config("gamma", key="k" * 20),
    "proceed": lambda e: e.proceed("acme"),
    "create_account": lambda e: e.portal.create_account("other@acme.test", PASSWORD, company="Acme"),
    "revoke_key": lambda e: e.portal.revoke_key(e.status("acme").key_id or ""),
    "rotate": lambda e: e.admin.rotate_secret_key("x" * 44),
    "put_saved_key": lambda e: e.admin.put_saved_key("gamma", "k" * 20),
    "token create": lambda e: Tokens(e).create("auditor", "audit"),
}


@pytest.mark.parametrize("read", list(READS), ids=str)
def test_every_read_works_without_the_key_and_creates_nothing(
    handed_over: tuple[str, Path], clock: MovableClock, read: str
) -> None:
    url, folder = handed_over
    before = listing(folder)
    with Engine.open(url, clock=clock, read_only=True) as engine:
        READS[read](engine)
        assert engine.verify().ok
    assert listing(folder) == before


@pytest.mark.parametrize("write", list(WRITES), ids=str)
def test_every_write_is_refused_with_one_clear_error(
    handed_over: tuple[str, Path], clock: MovableClock, write: str
) -> None:
    url, folder = handed_over
    before = listing(folder)
    with Engine.open(url, clock=clock, read_only=True) as engine:
        rows = snapshot(engine)
        with pytest.raises(ReadOnly, match="opened read-only") as caught:
            WRITES[write](engine)
        assert caught.value.exit_code == 2 and isinstance(caught.value, StorageError)
        assert snapshot(engine) == rows
    assert listing(folder) == before


def test_reads_need_no_key_even_without_read_only(tmp_path: Path, clock: MovableClock) -> None:
    """An ordinary open reads too without the key; only a command that seals or decrypts asks for it, then."""
    url = f"sqlite:///{tmp_path}/keytrail.db"
    with Engine.open(url, clock=clock) as engine:
        _history(engine)
    (tmp_path / "keytrail.db.key").unlink()
    with Engine.open(url, clock=clock) as engine:
        for read in READS.values():
            read(engine)
        engine.access("acme")  # verifies by fingerprint: no secret needed
        with pytest.raises(SecretKeyError, match="does not exist"):
            engine.save_config("gamma", key="k" * 20)
        with pytest.raises(SecretKeyError, match="does not exist"):
            engine.copy_key("delta")
    assert not (tmp_path / "keytrail.db.key").exists()


def test_a_live_database_is_read_through_its_own_wal_files(tmp_path: Path, clock: MovableClock) -> None:
    """While a writer has it open (its -wal and -shm exist), a read-only engine sees its commits and adds no file."""
    url = f"sqlite:///{tmp_path}/keytrail.db"
    with Engine.open(url, clock=clock) as writer:
        drive_to(writer, "acme", State.Validated)
        names = {p.name for p in tmp_path.iterdir()}
        assert {"keytrail.db-wal", "keytrail.db-shm"} <= names
        with Engine.open(url, clock=clock, read_only=True) as reader:
            assert reader.state("acme") is State.Validated
            writer.proceed("acme")
            assert reader.state("acme") is State.StoreIntegration
            assert reader.verify().ok
        assert {p.name for p in tmp_path.iterdir()} == names


def test_a_copy_with_its_wal_but_no_shm_is_refused_clearly(tmp_path: Path, clock: MovableClock) -> None:
    """SQLite cannot read a -wal without a -shm, and immutable mode would ignore the -wal: refuse, create nothing."""
    live, copy = tmp_path / "live", tmp_path / "copy"
    live.mkdir()
    copy.mkdir()
    with Engine.open(f"sqlite:///{live}/keytrail.db", clock=clock) as writer:
        drive_to(writer, "acme", State.Validated)
        assert (live / "keytrail.db-wal").stat().st_size > 0
        shutil.copy(live / "keytrail.db", copy / "keytrail.db")
        shutil.copy(live / "keytrail.db-wal", copy / "keytrail.db-wal")
    before = listing(copy)
    with pytest.raises(DatabaseUnavailable, match="-wal") as caught:
        Engine.open(f"sqlite:///{copy}/keytrail.db", read_only=True)
    assert "wal_checkpoint" in str(caught.value)
    assert listing(copy) == before


def test_a_missing_database_is_not_created_read_only(tmp_path: Path) -> None:
    from keytrail.errors import UnknownDatabase

    with pytest.raises(UnknownDatabase):
        Engine.open(f"sqlite:///{tmp_path}/absent.db", read_only=True)
    assert list(tmp_path.iterdir()) == []


def _cli(url: str, *args: str) -> Any:
    result = runner.invoke(app, ["--db", url, *args])
    check_json_output(args, result.stdout, result.stderr, result.exit_code)
    return result


CLI_READS = [
    ("status",),
    ("status", "acme", "--json"),
    ("history", "acme", "--json"),
    ("replay", "acme", "--json"),
    ("replay", "acme", "--as-of", "2026-01-01T09:00:00Z"),
    ("audit", "acme", "--json"),
    ("audit", "acme", "--at", "2026-01-01T09:00:00Z"),
    ("verify", "--json"),
    ("export", "--format", "jsonl"),
    ("export", "--format", "csv"),
    ("digest", "--json"),
    ("expiring", "--within", "400d", "--json"),
    ("diagram", "--highlight", "acme"),
    ("report", "acme", "--at", "2026-01-01T09:00:00Z"),
]
CLI_WRITES = [
    ("access", "acme"),
    ("proceed", "acme"),
    ("save-config", "gamma", "--key-stdin"),
    ("keys", "revoke", "key_0123456789abcdef"),
    ("account", "create", "--email", "x@acme.test", "--company", "Acme", "--password-stdin"),
    ("token", "create", "--name", "auditor", "--scope", "audit"),
    ("init",),
    ("demo",),
    ("serve", "--port", "1"),
]


@pytest.mark.parametrize("flag", [("--read-only",), ()], ids=["--read-only", "plain"])
def test_the_cli_reads_without_the_key(handed_over: tuple[str, Path], flag: tuple[str, ...]) -> None:
    """Every reading command, with or without --read-only; with it, nothing in the folder changes."""
    url, folder = handed_over
    before = listing(folder)
    for args in CLI_READS:
        result = _cli(url, *flag, *args)
        assert result.exit_code == 0, (args, result.stderr)
        if flag:
            assert listing(folder) == before, args


def test_the_cli_refuses_every_write_under_read_only(handed_over: tuple[str, Path]) -> None:
    url, folder = handed_over
    before = listing(folder)
    for args in CLI_WRITES:
        takes_json = args[0] not in ("init", "demo", "serve")
        full = [*args, "--json"] if takes_json else list(args)
        result = runner.invoke(app, ["--read-only", "--db", url, *full], input="k" * 20 + "\n")
        check_json_output(full, result.stdout, result.stderr, result.exit_code)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert ('"type": "ReadOnly"' if takes_json else "read-only") in result.stderr, (args, result.stderr)
    assert listing(folder) == before


def test_the_read_only_option_stands_anywhere(handed_over: tuple[str, Path]) -> None:
    url, _ = handed_over
    result = runner.invoke(app, ["status", "acme", "--db", url, "--read-only"])
    assert (result.exit_code, result.stdout) == (0, "acme: StoreIntegration, version 7\n"), result.stderr


def test_the_file_modes_survive(handed_over: tuple[str, Path]) -> None:
    """The fixture really hands over a read-only file in a read-only folder (for a non-root run of this suite)."""
    _, folder = handed_over
    assert stat.S_IMODE(folder.stat().st_mode) == 0o555
    assert stat.S_IMODE((folder / "keytrail.db").stat().st_mode) == 0o444
    assert not os.access(folder, os.W_OK) or os.geteuid() == 0


@pytest.mark.postgres
def test_postgres_read_only_uses_a_read_only_transaction_and_no_key(
    postgres_server: str, clock: MovableClock, tmp_path: Path
) -> None:
    from keytrail.pgcluster import scratch_database

    with scratch_database(postgres_server) as url:
        with Engine.open(url, clock=clock) as engine:
            _history(engine)
        key_files = list((tmp_path / "xdg" / "keytrail").iterdir())
        assert len(key_files) == 1
        key_files[0].unlink()
        with Engine.open(url, clock=clock, read_only=True) as engine:
            for read in READS.values():
                read(engine)
            with engine.database.read() as conn:
                assert conn.execute(sa.text("SHOW transaction_read_only")).scalar() == "on"
            rows = snapshot(engine)
            for write in WRITES.values():
                with pytest.raises(ReadOnly):
                    write(engine)
            assert snapshot(engine) == rows
        assert list((tmp_path / "xdg" / "keytrail").iterdir()) == []


_ON_A_READ_ONLY_MOUNT = """
import sys
from keytrail import Engine
from keytrail.engine import reports
from keytrail.errors import ReadOnly
url = sys.argv[1]
with Engine.open(url, read_only=True) as engine:
    assert engine.verify().ok and engine.history("acme") and reports.digest(engine).events
    assert list(reports.export_rows(engine)) and engine.replay("acme").ok
    try:
        engine.access("acme")
    except ReadOnly:
        print("refused")
"""


def test_on_a_read_only_mount(handed_over: tuple[str, Path]) -> None:
    """Root ignores chmod, but not a read-only mount: the audit runs on one (in a private mount namespace)."""
    import subprocess
    import sys

    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        skip_outside_ci("A read-only bind mount needs root and unshare; the chmod tests cover a non-root run.")
    probe = subprocess.run([unshare, "-m", "--propagation", "private", "true"], check=False, capture_output=True)
    if probe.returncode != 0:
        skip_outside_ci(f"unshare -m is not allowed here: {probe.stderr.decode(errors='replace').strip()}.")
    _, folder = handed_over
    mounted = folder.parent / "mounted"
    mounted.mkdir()
    script = (
        f'mount --bind "{folder}" "{mounted}" && mount -o remount,bind,ro "{mounted}" && '
        f'exec "{sys.executable}" -c "$0" "sqlite:///{mounted}/keytrail.db"'
    )
    before = listing(folder)
    done = subprocess.run(
        [unshare, "-m", "--propagation", "private", "/bin/sh", "-c", script, _ON_A_READ_ONLY_MOUNT],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, "refused\n"), done.stderr
    assert listing(folder) == before
