"""Broken surroundings: each fault is one clear error, nothing is lost, and the log still verifies afterwards."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from keytrail import Engine, State
from keytrail.crypto import SECRET_KEY_ENV, generate_secret_key
from keytrail.errors import (
    ConcurrencyConflict,
    DatabaseBusy,
    DatabaseUnavailable,
    KeytrailError,
    NotAKeytrailDatabase,
    ReadOnly,
    SchemaMismatch,
    StorageError,
)
from keytrail.persistence import translate_error
from keytrail.persistence.authority_store import api_keys, attempts
from keytrail.persistence.store import config_table, events_table
from keytrail.persistence.tables import DATABASE_SCHEMA, MetaRow
from tests.conftest import MovableClock
from tests.helpers import EMAIL, PASSWORD, drive_to, snapshot

meta_table = MetaRow.__table__  # type: ignore[attr-defined]


def _raw(db_url: str) -> sa.Engine:
    return sa.create_engine(db_url)


def _rows(db_url: str) -> dict[str, list[str]]:
    """Every row of every table, read without keytrail, to prove a refusal left the database untouched."""
    raw = _raw(db_url)
    try:
        with raw.connect() as conn:
            names = sorted(sa.inspect(conn).get_table_names())
            return {
                name: sorted(repr(row) for row in conn.execute(sa.text(f'SELECT * FROM "{name}"'))) for name in names
            }
    finally:
        raw.dispose()


def _busy_log(engine: Engine) -> None:
    for stream in ("store-a", "store-b"):
        drive_to(engine, stream, State.StoreIntegration)
    drive_to(engine, "store-c", State.KeyCopied)
    drive_to(engine, "store-p", State.Prompted)


# -- not a database, or a newer one ---------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"these are my notes, not a database\n" * 50, b"\x00" * 4096, b"SQLite format 2\x00" + b"\xff" * 2000],
    ids=["text", "zeros", "almost-sqlite"],
)
def test_a_file_that_is_not_a_database_is_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "keytrail.db"
    path.write_bytes(content)
    with pytest.raises(NotAKeytrailDatabase, match="not a keytrail database") as caught:
        Engine.open(f"sqlite:///{path}")
    assert caught.value.exit_code == 2
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keytrail.db"]  # no key file, no journal


def test_a_foreign_database_is_left_untouched(db_url: str) -> None:
    """Another application's database (SQLite file or PostgreSQL database) is refused before anything is created."""
    raw = _raw(db_url)
    with raw.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, total NUMERIC)"))
        conn.execute(sa.text("INSERT INTO orders VALUES (1, 9.99)"))
    raw.dispose()
    before = _rows(db_url)
    with pytest.raises(NotAKeytrailDatabase, match=r"other tables \(orders\)"):
        Engine.open(db_url)
    assert _rows(db_url) == before


def test_a_newer_schema_is_refused_and_nothing_is_lost(db_url: str, clock: MovableClock) -> None:
    with Engine.open(db_url, clock=clock) as engine:
        _busy_log(engine)
    raw = _raw(db_url)
    with raw.begin() as conn:
        conn.execute(
            sa.update(meta_table).where(meta_table.c.name == "schema_version").values(value=str(DATABASE_SCHEMA + 1))
        )
    before = _rows(db_url)
    with pytest.raises(
        SchemaMismatch,
        match=f"schema version {DATABASE_SCHEMA + 1}, but this keytrail reads version {DATABASE_SCHEMA}; upgrade keytrail",
    ):
        Engine.open(db_url, clock=clock)
    assert _rows(db_url) == before
    with raw.begin() as conn:  # what the newer keytrail would read is all still there
        conn.execute(
            sa.update(meta_table).where(meta_table.c.name == "schema_version").values(value=str(DATABASE_SCHEMA))
        )
    raw.dispose()
    with Engine.open(db_url, clock=clock) as engine:
        assert engine.state("store-a") is State.StoreIntegration and engine.state("store-c") is State.KeyCopied
        assert engine.verify().ok


# -- read-only and locked ------------------------------------------------------------------------


@contextmanager
def _read_only(engine: Engine, db_url: str) -> Iterator[None]:
    """Make the database refuse writes the way the server or SQLite itself does.

    The suite runs as root, where file permissions do not stop writes. So on SQLite every new
    connection gets ``PRAGMA query_only`` (SQLite then answers SQLITE_READONLY, as for a read-only
    file); on PostgreSQL the database gets ``default_transaction_read_only`` (SQLSTATE 25006).
    """
    db = engine.database
    if db.dialect == "sqlite":

        def query_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only = ON")

        db.dispose()  # pinned connections too: every connection from here on is a new one
        event.listen(db.engine, "connect", query_only)
        try:
            yield
        finally:
            event.remove(db.engine, "connect", query_only)
            db.dispose()  # pinned connections too: every connection from here on is a new one
        return
    name = sa.make_url(db_url).database
    raw = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    with raw.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    db.dispose()
    try:
        yield
    finally:
        with raw.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off'))
        raw.dispose()
        db.dispose()  # pinned connections too: every connection from here on is a new one


def test_a_read_only_database_refuses_writes_clearly_and_still_reads(db_url: str, clock: MovableClock) -> None:
    with Engine.open(db_url, clock=clock) as engine:
        _busy_log(engine)
        before = snapshot(engine)
        with _read_only(engine, db_url):
            assert engine.state("store-a") is State.StoreIntegration
            assert engine.verify().ok
            for command in (
                lambda: engine.access("store-a"),
                lambda: engine.save_config("store-c", key="k" * 20),
                lambda: engine.sign_in("store-p", email=EMAIL, password="a wrong password"),
                lambda: engine.sign_in("store-p", email=EMAIL, password=PASSWORD),
                lambda: engine.portal.create_account("new@acme.test", PASSWORD, company="Acme"),
                lambda: engine.access("brand-new"),
            ):
                with pytest.raises(ReadOnly, match="is read-only; nothing was written") as caught:
                    command()
                assert caught.value.exit_code == 2  # no retry makes it writable: bad input, not unreachable
            assert snapshot(engine) == before
        assert engine.access("store-a").state is State.StoreIntegration
        assert engine.verify().ok


def test_a_database_locked_past_the_busy_timeout(tmp_path: Path, clock: MovableClock) -> None:
    """Another writer holds SQLite's write lock (BEGIN IMMEDIATE) past keytrail's busy timeout."""
    url = f"sqlite:///{tmp_path}/keytrail.db"
    with Engine.open(url, clock=clock, busy_timeout=0.2) as engine:
        _busy_log(engine)
        before = snapshot(engine)
        other = sqlite3.connect(tmp_path / "keytrail.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            for command in (
                lambda: engine.access("store-a"),
                lambda: engine.access("store-c"),
                lambda: engine.save_config("store-b", key="k" * 20),
                lambda: engine.portal.revoke_key(engine.portal.list_keys(EMAIL)[0].key_id),
            ):
                with pytest.raises(DatabaseBusy, match=r"locked by another writer .* past the busy timeout") as caught:
                    command()
                assert caught.value.exit_code == 3
            assert engine.state("store-a") is State.StoreIntegration  # readers are not blocked (WAL)
            assert snapshot(engine) == before
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert engine.access("store-a").state is State.StoreIntegration
        assert engine.verify().ok


@pytest.mark.postgres
def test_a_postgres_table_locked_past_the_lock_timeout(postgres_server: str, clock: MovableClock) -> None:
    """On PostgreSQL the operator sets lock_timeout; a lock held past it is DatabaseBusy, nothing written."""
    from keytrail.pgcluster import scratch_database

    with scratch_database(postgres_server) as url, Engine.open(url, clock=clock) as engine:
        _busy_log(engine)
        before = snapshot(engine)
        name = sa.make_url(url).database
        raw = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        holder_engine = sa.create_engine(url)
        try:
            with raw.connect() as conn:
                conn.execute(sa.text(f"ALTER DATABASE \"{name}\" SET lock_timeout = '200ms'"))
            engine.database.dispose()  # pinned connections too: the next one has the lock_timeout
            with holder_engine.connect() as holder:
                holder.begin()
                holder.execute(sa.text("LOCK TABLE streams IN ACCESS EXCLUSIVE MODE"))
                with pytest.raises(DatabaseBusy, match="did not answer in time"):
                    engine.access("store-a")
                holder.rollback()
        finally:
            holder_engine.dispose()
            raw.dispose()
        assert snapshot(engine) == before
        assert engine.access("store-a").state is State.StoreIntegration
        assert engine.verify().ok


# -- a process killed in the middle of commands ---------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys
    from keytrail import Engine, State
    from keytrail.errors import KeytrailError, UnknownOnboarding

    url, email, password = sys.argv[1], sys.argv[2], sys.argv[3]
    engine = Engine.open(url, max_failed_sign_ins=10**6)
    if engine.portal.find_account(email) is None:
        engine.portal.create_account(email, password, company="Acme")
    copied = {}
    print("ready", flush=True)
    for i in range(10**9):
        stream = f"s{i % 6}"
        try:
            state = engine.state(stream)
        except UnknownOnboarding:
            state = State.Unverified
        if state in (State.Unverified, State.ConfigSaved):
            engine.access(stream)
        elif state is State.Prompted:
            try:
                engine.sign_in(stream, email=email)  # reuse a live session
            except KeytrailError:
                engine.sign_in(stream, email=email, password=password)
        elif state is State.SignedIn:
            engine.generate_key(stream, description=f"key {i}")
        elif state is State.KeyGenerated:
            copied[stream] = engine.copy_key(stream).key
        elif state is State.KeyCopied:
            engine.save_config(stream, key=copied.pop(stream, "k" * 20))
        elif state is State.Validated:
            engine.proceed(stream)
        elif state is State.StoreIntegration:
            key_id = engine.status(stream).key_id
            if key_id is not None:
                engine.portal.revoke_key(key_id)
            engine.access(stream)
        print(i, flush=True)
    """
)


def _consistent(engine: Engine) -> None:
    """Each stream is before or after every command: its side effects and its event were written together."""
    report = engine.verify()
    assert report.ok, [str(p) for p in report.problems]
    with engine.database.read() as conn:
        events = conn.execute(
            sa.select(events_table.c.stream_id, events_table.c.trigger, events_table.c.data).order_by(
                events_table.c.position
            )
        ).all()
        generated = {e.data["key_id"] for e in events if e.trigger == "generate_key"}
        stored_keys = set(conn.execute(sa.select(api_keys.c.key_id)).scalars())
        assert stored_keys == generated, "a key exists without its generate_key event, or the reverse"
        last_saved = {e.stream_id: e.data["fingerprint"] for e in events if e.trigger == "save_config"}
        configs = dict(conn.execute(sa.select(config_table.c.stream_id, config_table.c.fingerprint)).all())
        assert configs == last_saved, "a saved key differs from what the last save_config event recorded"
        sign_ins = Counter(e.stream_id for e in events if e.trigger in ("sign_in", "register"))
        ok_attempts = Counter(
            conn.execute(sa.select(attempts.c.stream_id).where(attempts.c.outcome.like("ok_%"))).scalars()
        )
        assert ok_attempts == sign_ins, "a successful sign-in was recorded without its event, or the reverse"


def test_a_process_killed_in_the_middle_of_commands(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real subprocess runs commands in a loop and is SIGKILLed at random moments, five times."""
    monkeypatch.setenv(SECRET_KEY_ENV, generate_secret_key())
    rng = random.Random(20261126)  # reproducible kill moments
    completed = 0
    for _round in range(5):
        worker = subprocess.Popen(
            [sys.executable, "-c", _WORKER, db_url, EMAIL, PASSWORD],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert line == "ready\n", worker.stderr.read() if worker.stderr else line
        assert worker.stdout.readline().strip().isdigit()  # one command done: the loop is running
        time.sleep(rng.uniform(0.0, 0.8))
        worker.send_signal(signal.SIGKILL)
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == -signal.SIGKILL, err
        completed += 1 + len(out.split())
        with Engine.open(db_url, create=False) as engine:
            _consistent(engine)
    assert completed >= 5


# -- every driver error is translated --------------------------------------------------------------


class _PgError(Exception):
    """Stands in for a psycopg error: what translate_error reads is its sqlstate and first line."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("driver_error", "expected", "words"),
    [
        (sqlite3.DatabaseError("file is not a database"), NotAKeytrailDatabase, "not a keytrail database"),
        (sqlite3.DatabaseError("database disk image is malformed"), NotAKeytrailDatabase, "not a keytrail database"),
        (sqlite3.OperationalError("database is locked"), DatabaseBusy, "locked by another writer"),
        (sqlite3.OperationalError("attempt to write a readonly database"), ReadOnly, "is read-only"),
        (sqlite3.OperationalError("unable to open database file"), DatabaseUnavailable, "cannot be opened"),
        (sqlite3.IntegrityError("UNIQUE constraint failed: events.stream_id"), ConcurrencyConflict, "concurrent"),
        (sqlite3.OperationalError("disk I/O error"), StorageError, "refused the operation"),
        (_PgError("40001", "could not serialize access"), ConcurrencyConflict, "concurrent transaction"),
        (_PgError("40P01", "deadlock detected"), ConcurrencyConflict, "concurrent transaction"),
        (_PgError("23505", "duplicate key value violates unique constraint"), ConcurrencyConflict, "concurrent"),
        (_PgError("08006", "connection failure"), DatabaseUnavailable, "cannot be reached"),
        (_PgError("57P01", "terminating connection due to administrator command"), DatabaseUnavailable, "reached"),
        (_PgError("53300", "too many connections"), DatabaseUnavailable, "cannot be reached"),
        (_PgError("25006", "cannot execute UPDATE in a read-only transaction"), ReadOnly, "is read-only"),
        (_PgError("55P03", "canceling statement due to lock timeout"), DatabaseBusy, "did not answer in time"),
        (_PgError("57014", "canceling statement due to statement timeout"), DatabaseBusy, "did not answer in time"),
        (_PgError("42P01", 'relation "events" does not exist'), StorageError, "SQLSTATE 42P01"),
    ],
    ids=lambda v: getattr(v, "sqlstate", None) or str(v)[:30] if isinstance(v, Exception) else None,
)
def test_every_driver_error_is_translated(driver_error: Exception, expected: type[KeytrailError], words: str) -> None:
    """Raw and SQLAlchemy-wrapped, each driver error becomes exactly the keytrail error named here."""
    wrapped = sa.exc.OperationalError("UPDATE store_config SET ciphertext=?", {"ciphertext": "gAAAA"}, driver_error)
    for raised in (driver_error, wrapped):
        translated = translate_error(raised, "the test database")
        assert type(translated) is expected
        assert words in str(translated)
        assert "gAAAA" not in str(translated) and "UPDATE" not in str(translated)


def test_a_lost_or_refused_connection_is_unavailable() -> None:
    """psycopg raises OperationalError without a SQLSTATE when the server is gone or refuses the connection."""

    class OperationalError(Exception):  # psycopg's name, without a sqlstate
        pass

    refused = sa.exc.OperationalError("SELECT 1", None, OperationalError("connection refused"))
    invalidated = sa.exc.DBAPIError("SELECT 1", None, RuntimeError("reset"), connection_invalidated=True)
    assert type(translate_error(refused, "db")) is DatabaseUnavailable
    assert type(translate_error(invalidated, "db")) is DatabaseUnavailable
