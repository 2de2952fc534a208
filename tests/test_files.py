"""The files keytrail writes beside a database: ``-o`` outputs, the encryption key file, the database file itself."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from keytrail import Engine, State
from keytrail.cli import app
from keytrail.crypto import SECRET_KEY_FILE_ENV, generate_secret_key, load_secret_keys, write_key_file
from keytrail.errors import SecretKeyError
from tests.conftest import MovableClock
from tests.helpers import drive_to, skip_outside_ci

runner = CliRunner()


def run(db: str, *args: str) -> Result:
    return runner.invoke(app, ["--db", db, *args])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def populated(tmp_path: Path, clock: MovableClock) -> Path:
    """A SQLite database with one onboarding, its key file beside it (and its -wal/-shm while open)."""
    folder = tmp_path / "data"
    folder.mkdir()
    with Engine.open(f"sqlite:///{folder}/k.db", clock=clock) as engine:
        drive_to(engine, "acme", State.KeyGenerated)
    return folder


# -- item 6: -o never lands on the database or its key ------------------------------------------------


@pytest.mark.parametrize(
    "command", [("export",), ("export", "--format", "csv"), ("diagram",), ("diagram", "--highlight", "acme")]
)
@pytest.mark.parametrize("victim", ["k.db", "k.db-wal", "k.db-shm", "k.db-journal", "k.db.key"])
@pytest.mark.parametrize("spelling", ["absolute", "symlink", "dotdot"])
def test_an_output_onto_the_database_or_its_key_is_refused(
    populated: Path, command: tuple[str, ...], victim: str, spelling: str
) -> None:
    """-o naming the database, its -wal/-shm/-journal or its key file (directly, via a link, via ..) touches nothing."""
    target = populated / victim
    if not target.exists():
        target.write_bytes(b"sqlite side file stand-in")
    before = _files(populated)
    if spelling == "symlink":
        link = populated.parent / "innocent.out"
        link.symlink_to(target)
        given = str(link)
    elif spelling == "dotdot":
        (populated / "sub").mkdir()
        given = os.path.relpath(populated / "sub" / ".." / victim)
    else:
        given = str(target)
    result = run(f"sqlite:///{populated}/k.db", *command, "-o", given)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "keytrail: " in result.stderr and "-o" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert _files(populated) == before
    assert not list(populated.glob(".*tmp*")) and not list(populated.parent.glob(".*tmp*"))
    with Engine.open(f"sqlite:///{populated}/k.db") as engine:
        assert engine.state("acme") is State.KeyGenerated and engine.verify().ok


def test_the_key_file_named_by_the_environment_is_refused_too(
    populated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "elsewhere.key"
    key_file.write_bytes((populated / "k.db.key").read_bytes())
    key_file.chmod(0o600)
    monkeypatch.setenv(SECRET_KEY_FILE_ENV, str(key_file))
    before = key_file.read_bytes()
    for command in (("export",), ("diagram",)):
        result = run(f"sqlite:///{populated}/k.db", *command, "-o", str(key_file))
        assert result.exit_code == 2, (result.stdout, result.stderr)
        assert key_file.read_bytes() == before


def test_an_error_mid_export_leaves_the_target_as_it_was(populated: Path) -> None:
    """The output is written to a temporary file and renamed only once complete."""
    target = populated.parent / "events.jsonl"
    target.write_text("the previous export\n", encoding="utf-8")
    with sqlite3.connect(populated / "k.db") as conn:
        conn.execute("UPDATE events SET data = '{not json' WHERE version = 2")
    result = run(f"sqlite:///{populated}/k.db", "export", "-o", str(target))
    assert result.exit_code != 0
    assert target.read_text(encoding="utf-8") == "the previous export\n"
    unknown = run(f"sqlite:///{populated}/k.db", "export", "--stream", "ghost", "-o", str(target))
    assert unknown.exit_code == 2
    assert target.read_text(encoding="utf-8") == "the previous export\n"
    assert sorted(p.name for p in populated.parent.iterdir()) == ["data", "events.jsonl"]


def test_an_output_replaces_the_target_whole_and_keeps_its_mode(populated: Path) -> None:
    target = populated.parent / "machine.mmd"
    target.write_text("old, and longer than the new diagram " * 1000, encoding="utf-8")
    target.chmod(0o640)
    result = run(f"sqlite:///{populated}/k.db", "diagram", "-o", str(target))
    assert (result.exit_code, result.stdout) == (0, "")
    assert target.read_text(encoding="utf-8").startswith("flowchart LR\n") and "old, and" not in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    link = populated.parent / "link.jsonl"
    real = populated.parent / "real.jsonl"
    real.write_text("", encoding="utf-8")
    link.symlink_to(real)
    assert run(f"sqlite:///{populated}/k.db", "export", "-o", str(link)).exit_code == 0
    exported = real.read_text(encoding="utf-8")
    assert link.is_symlink() and exported.count("\n") == exported.count('"stream_id"') >= 3


def test_an_output_to_a_device_or_a_pipe_is_written_to_it_not_replaced(populated: Path) -> None:
    """/dev/null and a FIFO have nothing to replace: the output goes to them, and they stay what they were."""
    result = run(f"sqlite:///{populated}/k.db", "export", "-o", os.devnull)
    assert (result.exit_code, result.stdout) == (0, "")
    assert stat.S_ISCHR(Path(os.devnull).stat().st_mode)
    fifo = populated.parent / "events.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)  # noqa: S607
    result = run(f"sqlite:///{populated}/k.db", "export", "-o", str(fifo))
    out, _ = reader.communicate(timeout=60)
    assert result.exit_code == 0 and out.decode().count("\n") == out.decode().count('"stream_id"') >= 3
    assert stat.S_ISFIFO(fifo.stat().st_mode)


# -- item 7: the key file is created atomically, durably, owner-only --------------------------------------


ROUNDS = 12


def _first_opens(folder: str, start: Any, results: Any) -> None:
    """One of the racing processes: in each round, open that round's new database the moment all are ready."""
    for round_ in range(ROUNDS):
        start.wait()  # every process reaches the starting line before any opens: they race for real
        try:
            Engine.open(f"sqlite:///{folder}/race{round_}.db").close()
        except Exception as exc:  # the test counts every kind of failure
            results.put(f"round {round_}: {type(exc).__name__}: {exc}")
        else:
            results.put("ok")


def test_many_processes_opening_a_new_database_at_once_agree_on_one_key(tmp_path: Path) -> None:
    """8 processes making their first call on the same new database at once, 12 times: no failure, one key."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(8), context.Queue()
    workers = [context.Process(target=_first_opens, args=(str(tmp_path), start, results)) for _ in range(8)]
    for worker in workers:
        worker.start()
    outcomes = [results.get() for _ in range(8 * ROUNDS)]
    for worker in workers:
        worker.join()
    assert [o for o in outcomes if o != "ok"] == []
    for round_ in range(ROUNDS):
        key_file = tmp_path / f"race{round_}.db.key"
        assert len(key_file.read_text(encoding="ascii").split()) == 1
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        with Engine.open(f"sqlite:///{tmp_path}/race{round_}.db") as engine:
            engine.access("acme")
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_a_new_database_and_its_key_file_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine:
            engine.access("acme")
            for name in ("k.db", "k.db-wal", "k.db-shm", "k.db.key"):
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(old)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_a_key_file_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    url = f"sqlite:///{tmp_path}/k.db"
    Engine.open(url).close()
    key_file = tmp_path / "k.db.key"
    key_file.chmod(mode)
    with Engine.open(url) as engine, pytest.raises(SecretKeyError, match=r"chmod 600") as caught:
        engine.admin.check_secret_key()  # reads need no key: it is looked for at first use
    assert str(key_file) in str(caught.value) and oct(mode)[2:] in str(caught.value)
    assert key_file.read_text(encoding="ascii").strip() not in str(caught.value)
    assert run(url, "status").exit_code == 0
    result = runner.invoke(app, ["--db", url, "save-config", "acme", "--key-stdin"], input="k" * 20 + "\n")
    assert result.exit_code == 2 and "chmod 600" in result.stderr
    key_file.chmod(0o600)
    Engine.open(url).close()


def test_a_symlink_planted_at_the_key_path_is_not_followed_when_creating(tmp_path: Path) -> None:
    """A link at the key file's place, pointing where an attacker reads, is refused; nothing is written through it."""
    victim = tmp_path / "attacker-reads-this"
    (tmp_path / "k.db.key").symlink_to(victim)
    with pytest.raises(SecretKeyError, match="link"):
        Engine.open(f"sqlite:///{tmp_path}/k.db")
    assert not victim.exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_the_temporary_key_files_have_unpredictable_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old predictable name (``.NAME.PID.tmp``) holds a planted link; neither writer follows it."""
    victim = tmp_path / "attacker-reads-this"
    key_file = tmp_path / "k.db.key"
    (tmp_path / f".{key_file.name}.{os.getpid()}.tmp").symlink_to(victim)
    keys, _ = load_secret_keys(key_file, create=True)
    assert len(keys) == 1 and not victim.exists()
    write_key_file(key_file, [generate_secret_key(), key_file.read_text(encoding="ascii").strip()])
    assert not victim.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and not key_file.is_symlink()
    with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine:
        engine.admin.rotate_secret_key(generate_secret_key())
    assert not victim.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_an_empty_key_file_beside_an_existing_database_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/k.db"
    with Engine.open(url) as engine:
        engine.access("acme")
    key_file = tmp_path / "k.db.key"
    key_file.write_bytes(b"")
    with Engine.open(url) as engine, pytest.raises(SecretKeyError, match="is empty") as caught:
        engine.admin.check_secret_key()
    assert "restore" in str(caught.value)
    assert key_file.read_bytes() == b""


def test_an_empty_key_file_left_before_any_database_is_replaced(tmp_path: Path) -> None:
    """A 0-byte key file from a full disk or an old version, with no database yet, blocks nothing."""
    key_file = tmp_path / "k.db.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine:
        engine.access("acme")
    assert len(key_file.read_text(encoding="ascii").split()) == 1
    with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine:
        assert engine.state("acme") is State.Prompted


def _tiny_filesystem(path: Path) -> bool:
    path.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],  # noqa: S607
            capture_output=True,
            check=False,
        )
    except OSError:
        return False
    return done.returncode == 0


def test_a_full_disk_leaves_no_empty_key_file(tmp_path: Path) -> None:
    """On a full filesystem the key cannot be written: a clear error, and no 0-byte key file left to block later runs."""
    disk = tmp_path / "disk"
    if not _tiny_filesystem(disk):
        skip_outside_ci("Mounting a tiny tmpfs needs root, and this machine could not mount one.")
    try:
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass  # the disk is full
        finally:
            os.close(fd)
        (disk / "k.db").touch()  # the database file fits (0 bytes); its key does not
        with pytest.raises(SecretKeyError, match="cannot be written"):
            load_secret_keys(disk / "k.db.key", create=True)
        assert not (disk / "k.db.key").exists()
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "k.db"]
        filler.unlink()
        keys, _ = load_secret_keys(disk / "k.db.key", create=True)
        assert len(keys) == 1
    finally:
        subprocess.run(["umount", str(disk)], check=False)  # noqa: S607


def test_a_failed_key_write_leaves_no_key_file(tmp_path: Path) -> None:
    """A write that fails (here: the key path is taken by a folder the link cannot replace) leaves nothing behind."""
    folder = tmp_path / "no-space"
    folder.mkdir()
    # RLIMIT_FSIZE 0 makes every write of a byte fail with EFBIG, as a full disk would, without root.
    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))\n"
        "from keytrail.crypto import load_secret_keys\n"
        "from keytrail.errors import SecretKeyError\n"
        "try:\n"
        "    load_secret_keys(Path(sys.argv[1]), create=True)\n"
        "except SecretKeyError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(2)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder / "k.db.key")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "cannot be written" in done.stdout
    assert list(folder.iterdir()) == []


def test_rotation_refuses_a_key_file_others_can_read_and_changes_nothing(tmp_path: Path) -> None:
    """Rotation reads the key file as opening does: a file others may read is refused before anything is re-sealed."""
    url = f"sqlite:///{tmp_path}/k.db"
    key_file = tmp_path / "k.db.key"
    with Engine.open(url) as engine:
        drive_to(engine, "acme", State.StoreIntegration)
        key_file.chmod(0o644)
        before = key_file.read_bytes()
        with pytest.raises(SecretKeyError, match="chmod 600"):
            engine.admin.rotate_secret_key(generate_secret_key())
        assert key_file.read_bytes() == before
    key_file.chmod(0o600)
    with Engine.open(url) as engine:  # the old key still opens every secret
        assert engine.access("acme").state is State.StoreIntegration
