"""Connections, transactions and schema checks, for SQLite and PostgreSQL.

Driver errors are translated into keytrail's errors here and nowhere else.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from keytrail.errors import (
    ConcurrencyConflict,
    DatabaseBusy,
    DatabaseUnavailable,
    InvalidInput,
    KeytrailError,
    NotAKeytrailDatabase,
    SchemaMismatch,
    StorageError,
    UnknownDatabase,
)
from keytrail.inputs import clipped, is_text, quoted
from keytrail.persistence.tables import SCHEMA_VERSION, KeytrailTable, MetaRow

__all__ = ["APPLICATION", "Database", "Durability", "translate_error"]

APPLICATION = "keytrail"
Durability = Literal["full", "normal"]
_SQLITE_HEADER = b"SQLite format 3\x00"
_SHOWN_LIMIT = 160  # a path or URL in a message: whole as people write them, never a 100,000-character one
_meta = MetaRow.__table__  # type: ignore[attr-defined]


def normalize_url(url: str) -> str:
    """Accept the common spellings of a PostgreSQL URL and route them to psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"


def translate_error(exc: BaseException, where: str) -> KeytrailError:
    """Map a driver or SQLAlchemy error to keytrail's tree; ``where`` names the database for messages."""
    if isinstance(exc, KeytrailError):
        return exc
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else orig.__class__.__name__
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(orig, sqlite3.DatabaseError):
        lowered = text.lower()
        if "file is not a database" in lowered or "malformed" in lowered:
            return NotAKeytrailDatabase(
                f"{where} is not a keytrail database: SQLite says {text!r}. Nothing was written."
            )
        if "locked" in lowered or "busy" in lowered:
            return DatabaseBusy(
                f"{where} is locked by another writer and stayed locked past the busy timeout; nothing was written."
            )
        if "readonly" in lowered or "read-only" in lowered:
            return StorageError(f"{where} is read-only; nothing was written.")
        if "unable to open" in lowered:
            return DatabaseUnavailable(f"{where} cannot be opened: SQLite says {text!r}.")
        if isinstance(orig, sqlite3.IntegrityError):
            return ConcurrencyConflict(f"A concurrent writer changed {where} first ({text}); nothing was written.")
        return StorageError(f"{where} refused the operation: SQLite says {text!r}.")
    if sqlstate is not None:
        if sqlstate in ("40001", "40P01"):
            return ConcurrencyConflict(
                f"A concurrent transaction on {where} won (SQLSTATE {sqlstate}); nothing was written."
            )
        if sqlstate.startswith("23"):
            return ConcurrencyConflict(
                f"A concurrent writer changed {where} first (SQLSTATE {sqlstate}); nothing was written."
            )
        if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03", "53300"):
            return DatabaseUnavailable(f"{where} cannot be reached: {text}.")
        if sqlstate == "25006":
            return StorageError(f"{where} is read-only; nothing was written.")
        if sqlstate in ("55P03", "57014"):
            return DatabaseBusy(f"{where} did not answer in time (SQLSTATE {sqlstate}); nothing was written.")
        return StorageError(f"{where} refused the operation (SQLSTATE {sqlstate}): {text}.")
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable(f"The connection to {where} was lost: {text}.")
    if isinstance(exc, DBAPIError) and orig.__class__.__name__ == "OperationalError":
        return DatabaseUnavailable(f"{where} cannot be reached: {text}.")
    return StorageError(f"{where} failed: {exc.__class__.__name__}: {text}.")


class _Pin:
    """A driver connection kept checked out for one hot path, and the lock of whoever uses it."""

    __slots__ = ("lock", "pooled")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pooled: Any = None


@dataclass(frozen=True)
class SchemaStatus:
    """What :meth:`Database.inspect_schema` found."""

    exists: bool
    meta: dict[str, str]
    tables: frozenset[str] = frozenset()


class Database:
    """One keytrail database: an SQLAlchemy engine, transactions, and the schema checks."""

    def __init__(self, url: str, *, busy_timeout: float = 5.0, durability: Durability = "full") -> None:
        if not isinstance(url, str):
            raise InvalidInput(
                f"A database URL must be a string such as sqlite:///path/to/keytrail.db, not a {type(url).__name__}."
            )
        if "\x00" in url:
            raise InvalidInput("A database URL may not contain a NUL character.")
        if not is_text(url):
            raise InvalidInput("A database URL must be text: it holds bytes that are not UTF-8.")
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except (ArgumentError, ValueError):  # ValueError: a port that is no number ("[::1/x")
            raise InvalidInput(
                f"{quoted(redact_url(url))} is not a database URL; use sqlite:///path/to/keytrail.db or "
                "postgresql+psycopg://..."
            ) from None
        self.dialect = parsed.get_backend_name()
        self.shown = clipped(redact_url(self.url), _SHOWN_LIMIT)
        if self.dialect not in ("sqlite", "postgresql"):
            raise InvalidInput(
                f"keytrail supports SQLite and PostgreSQL URLs, not {quoted(self.dialect)} ({self.shown})."
            )
        for host in (parsed.host or "").split(","):
            try:
                if not host.startswith("/"):  # a socket folder is not looked up
                    host.encode("idna")
            except UnicodeError:
                raise InvalidInput(f"{quoted(host)} is not a valid host name ({self.shown}).") from None
        if self.dialect == "sqlite" and parsed.query:
            # SQLite would take the query as part of the file name (or as URI options that
            # bypass keytrail's own checks): refuse it rather than open or create another file.
            raise InvalidInput(
                f"A SQLite URL takes no query parameters ({quoted(', '.join(sorted(parsed.query)))} in {self.shown}); "
                "use sqlite:///path/to/keytrail.db."
            )
        if durability not in ("full", "normal"):
            raise InvalidInput(f"Durability must be 'full' or 'normal', not {quoted(str(durability))}.")
        self.durability = durability
        database = parsed.database or ""
        self.sqlite_path: Path | None = None
        self.in_memory = self.dialect == "sqlite" and database in ("", ":memory:")
        if self.dialect == "sqlite" and not self.in_memory:
            self.sqlite_path = Path(database)
        self._busy_timeout = busy_timeout
        try:
            self.engine = self._make_engine(busy_timeout)
        except ImportError as exc:  # postgresql+asyncpg://, say: a driver keytrail does not ship with
            raise InvalidInput(
                f"{self.shown} names a database driver that is not installed ({exc.name or exc}); "
                "use sqlite:///path/to/keytrail.db or postgresql+psycopg://..."
            ) from None
        # The hot paths' connections, each checked out of the pool once (see _borrow).
        self._write_pin, self._read_pin = _Pin(), _Pin()
        # An in-memory database is one shared connection (StaticPool): its users take turns.
        self._serial: threading.RLock | None = threading.RLock() if self.in_memory else None
        self.closed = False

    def __repr__(self) -> str:
        return f"Database({self.shown!r})"

    def _make_engine(self, busy_timeout: float) -> Engine:
        if self.dialect == "postgresql":
            return sa.create_engine(
                self.url, pool_pre_ping=False, connect_args={"connect_timeout": max(1, round(busy_timeout))}
            )
        extra: dict[str, Any] = {"poolclass": StaticPool} if self.in_memory else {}
        engine = sa.create_engine(self.url, connect_args={"timeout": busy_timeout, "check_same_thread": False}, **extra)
        synchronous = "FULL" if self.durability == "full" else "NORMAL"
        timeout_ms = int(busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            # Take transactions into our own hands so a writer can BEGIN IMMEDIATE.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Writers take the lock up front: no deadlocked read-to-write upgrade, and the
            # busy timeout applies to the whole command.
            writing = conn.get_execution_options().get("keytrail_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

        return engine

    def _turn(self) -> threading.RLock | nullcontext[None]:
        if self.closed:
            raise StorageError(f"The engine on {self.shown} was closed; open it again.")
        return self._serial if self._serial is not None else nullcontext()

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Connection]:
        """A transaction that commits on success, rolls back on any error, and speaks keytrail errors.

        On PostgreSQL a reading transaction is REPEATABLE READ, so that a read of several
        statements (verify's projection and events) sees one snapshot, as SQLite's BEGIN does.
        """
        try:
            with self._turn(), self.engine.connect() as plain:
                if write:
                    conn = plain.execution_options(keytrail_write=True)
                elif self.dialect == "postgresql":
                    conn = plain.execution_options(isolation_level="REPEATABLE READ")
                else:
                    conn = plain
                with conn.begin():
                    yield conn
        except KeytrailError:
            raise
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.shown) from exc
        except sqlite3.Error as exc:
            raise translate_error(exc, self.shown) from exc

    def _pooled(self) -> Any:
        try:
            return self.engine.raw_connection()
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.shown) from exc

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        if self.dialect == "sqlite":
            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

    @contextmanager
    def _borrow(self, pin: _Pin) -> Iterator[Any]:
        """A pooled driver connection: the pinned one when free, else one from the pool as usual.

        A pinned connection stays checked out across commands, saving a pool checkout and
        check-in each; any error other than keytrail's own sends it back to the pool, to be
        replaced, so a broken connection is never reused. Errors come out as keytrail errors.
        """
        with self._turn():
            yield from self._borrow_pinned(pin)

    def _borrow_pinned(self, pin: _Pin) -> Iterator[Any]:
        pinned = pin.lock.acquire(blocking=False)
        try:
            if pinned:
                if pin.pooled is None:
                    pin.pooled = self._pooled()
                pooled = pin.pooled
            else:
                pooled = self._pooled()
            release = not pinned
            try:
                yield pooled.driver_connection
            except KeytrailError:
                raise
            except self._driver_errors() as exc:
                release = True
                raise translate_error(exc, self.shown) from exc
            except BaseException:
                release = True
                raise
            finally:
                if release:
                    if pinned:
                        pin.pooled = None
                    pooled.close()  # back to the pool, which rolls back anything left open
        finally:
            if pinned:
                pin.lock.release()

    @contextmanager
    def driver_write(self) -> Iterator[Any]:
        """A write transaction on a driver connection itself (the hot path): commits, or rolls back on any error.

        SQLite takes the write lock up front (``BEGIN IMMEDIATE``); psycopg opens its transaction
        with the first statement.
        """
        with self._borrow(self._write_pin) as dbapi:
            if self.dialect == "sqlite":
                dbapi.execute("BEGIN IMMEDIATE")
            try:
                yield dbapi
            except self._driver_errors() as exc:
                # Rolled back cleanly (a lost race, say): the connection is fine and stays pinned.
                # Should the rollback itself fail, that error reaches _borrow, which drops the pin.
                dbapi.rollback()
                raise translate_error(exc, self.shown) from exc
            except BaseException:
                dbapi.rollback()
                raise
            dbapi.commit()

    @contextmanager
    def sqlite_read(self) -> Iterator[sqlite3.Connection]:
        """An SQLite driver connection in autocommit: each statement reads one consistent snapshot."""
        assert self.dialect == "sqlite"
        with self._borrow(self._read_pin) as dbapi:
            yield dbapi

    def write(self) -> Any:
        return self.transaction(write=True)

    def read(self) -> Any:
        return self.transaction(write=False)

    def close(self) -> None:
        """Release every connection for good: later use is a clear error, not a silent reopening."""
        self.dispose()
        self.closed = True

    def dispose(self) -> None:
        for pin in (self._write_pin, self._read_pin):
            with pin.lock:
                if pin.pooled is not None:
                    pin.pooled.close()
                    pin.pooled = None
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------------

    def _check_sqlite_file(self, create: bool) -> None:
        if self.sqlite_path is None:
            return
        try:
            self._check_sqlite_path(self.sqlite_path, create)
        except OSError as exc:  # a name too long for the filesystem, say
            raise InvalidInput(f"{self.shown} cannot be opened: {exc.strerror or exc.__class__.__name__}.") from None

    def _check_sqlite_path(self, path: Path, create: bool) -> None:
        shown = clipped(str(path), _SHOWN_LIMIT)
        if not path.exists():
            if not create:
                raise UnknownDatabase(f"There is no keytrail database at {shown}: the file does not exist.")
            if not path.parent.is_dir():
                raise InvalidInput(
                    f"Cannot create {shown}: the folder {clipped(str(path.parent), _SHOWN_LIMIT)} does not exist."
                )
            # Owner-only from the start (SQLite would make it 0644), and its -wal, -shm and
            # -journal files, which SQLite creates with the database file's mode, with it.
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
            except FileExistsError:
                pass  # another process created it first
            except OSError as exc:
                raise DatabaseUnavailable(f"{shown} cannot be created: {exc.strerror}.") from None
            return
        if path.is_dir():
            raise NotAKeytrailDatabase(f"{shown} is a folder, not a keytrail database.")
        try:
            with path.open("rb") as handle:
                header = handle.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise DatabaseUnavailable(f"{shown} cannot be read: {exc.strerror}.") from None
        if header and header != _SQLITE_HEADER:
            raise NotAKeytrailDatabase(
                f"{shown} is not a keytrail database (not even an SQLite file); it was left untouched."
            )

    def inspect_schema(self, *, create: bool) -> SchemaStatus:
        """Whether the keytrail schema is there, refusing foreign or mismatched databases untouched."""
        self._check_sqlite_file(create)
        with self.read() as conn:
            names = set(sa.inspect(conn).get_table_names())
            if not names:
                if not create:
                    raise UnknownDatabase(f"{self.shown} holds no keytrail database yet; nothing was created.")
                return SchemaStatus(exists=False, meta={})
            if _meta.name not in names:
                listed = ", ".join(sorted(names)[:5])
                raise NotAKeytrailDatabase(
                    f"{self.shown} is not a keytrail database: it has other tables ({listed}) and no keytrail_meta; "
                    "it was left untouched."
                )
            meta = {row.name: row.value for row in conn.execute(sa.select(_meta.c.name, _meta.c.value))}
        self._check_meta(meta)
        return SchemaStatus(exists=True, meta=meta, tables=frozenset(names))

    def ping(self) -> str:
        """The schema version the database records, read in one short transaction (a readiness probe).

        Unlike :meth:`inspect_schema`, it never opens the SQLite file by another descriptor: closing
        one would drop the POSIX locks this process's connections hold on it (SQLite's known pitfall).
        """
        with self.read() as conn:
            found = conn.execute(sa.select(_meta.c.value).where(_meta.c.name == "schema_version")).scalar()
        if found is None:
            raise NotAKeytrailDatabase(f"{self.shown} holds no keytrail schema version.")
        return str(found)

    def schema_complete(self, status: SchemaStatus, *meta_names: str) -> bool:
        """Whether every table of this version, and every named metadata row, is there."""
        tables = {table.name for table in KeytrailTable.metadata.sorted_tables}
        return tables <= status.tables and all(name in status.meta for name in meta_names)

    def upgrade_schema(self, defaults: dict[str, str]) -> dict[str, str]:
        """Bring a database of an earlier release of this schema version up to date, in one transaction.

        Upgrades only add: the tables this release has and the database lacks, and the metadata
        rows of ``defaults`` it lacks; nothing existing is altered, so older keytrails still open
        it. Idempotent, and a racing opener's upgrade wins. Returns the metadata afterwards.
        """
        try:
            with self.write() as conn:
                names = set(sa.inspect(conn).get_table_names())
                missing = [table for table in KeytrailTable.metadata.sorted_tables if table.name not in names]
                if missing:
                    KeytrailTable.metadata.create_all(conn, tables=missing)
                meta = {row.name: row.value for row in conn.execute(sa.select(_meta.c.name, _meta.c.value))}
                added = {name: value for name, value in defaults.items() if name not in meta}
                if added:
                    conn.execute(sa.insert(_meta), [{"name": k, "value": v} for k, v in added.items()])
                return {**meta, **added}
        except ConcurrencyConflict:
            return self.inspect_schema(create=False).meta  # another opener upgraded it first

    def _check_meta(self, meta: dict[str, str]) -> None:
        if meta.get("application") != APPLICATION:
            raise NotAKeytrailDatabase(
                f"{self.shown} has a keytrail_meta table that keytrail did not write; it was left untouched."
            )
        found = meta.get("schema_version", "?")
        if found != str(SCHEMA_VERSION):
            newer = found.isdigit() and int(found) > SCHEMA_VERSION
            raise SchemaMismatch(
                f"{self.shown} has keytrail schema version {found}, but this keytrail reads version {SCHEMA_VERSION}"
                + ("; upgrade keytrail to open it." if newer else "; it was left untouched.")
            )

    def _use_wal(self, raw: Any) -> None:
        """Switch a new SQLite file to WAL, waiting out processes that create the same database at once.

        SQLite answers "database is locked" to this pragma at once, without its busy handler,
        while another connection holds the file: so wait here, up to the busy timeout.
        """
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.005
        while True:
            try:
                raw.cursor().execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def create_schema(self, meta: dict[str, str]) -> dict[str, str]:
        """Create every table and the metadata rows in one transaction; a racing creator's schema wins."""
        if self.dialect == "sqlite" and not self.in_memory:
            raw = self.engine.raw_connection()  # persistent, and must be set outside a transaction
            try:
                self._use_wal(raw)
            except sqlite3.Error as exc:
                raise translate_error(exc, self.shown) from exc
            finally:
                raw.close()
        try:
            with self.write() as conn:
                if _meta.name in sa.inspect(conn).get_table_names():
                    existing = {row.name: row.value for row in conn.execute(sa.select(_meta.c.name, _meta.c.value))}
                    self._check_meta(existing)
                    return existing
                KeytrailTable.metadata.create_all(conn)
                full = {"application": APPLICATION, "schema_version": str(SCHEMA_VERSION), **meta}
                conn.execute(sa.insert(_meta), [{"name": k, "value": v} for k, v in full.items()])
                return full
        except (ConcurrencyConflict, StorageError):
            # Another process created the schema between our check and our write.
            status = self.inspect_schema(create=False)
            return status.meta
