"""Connections and transactions, for SQLite and PostgreSQL.

The schema's checks are :mod:`~keytrail.persistence.schema`'s, the translation of driver
errors :mod:`~keytrail.persistence.faults`'.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from keytrail.errors import (
    DatabaseUnavailable,
    InvalidInput,
    KeytrailError,
    ReadOnly,
    StorageError,
)
from keytrail.inputs import clipped, is_text, quoted
from keytrail.persistence.faults import SHOWN_LIMIT, normalize_url, redact_url, translate_error
from keytrail.persistence.schema import APPLICATION, Schema, SchemaStatus

__all__ = ["APPLICATION", "Database", "Durability", "SchemaStatus", "normalize_url", "redact_url", "translate_error"]

Durability = Literal["full", "normal"]


def _read_only_session(dbapi_connection: Any, _record: Any) -> None:
    """Every transaction of a read-only engine's PostgreSQL sessions is READ ONLY (committed, or SET would roll back)."""
    dbapi_connection.execute("SET default_transaction_read_only = on")
    dbapi_connection.commit()


class _Pin:
    """A connection kept checked out across transactions, and the lock of whoever uses it."""

    __slots__ = ("lock", "pooled")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pooled: Any = None


class Database(Schema):
    """One keytrail database: an SQLAlchemy engine, transactions, and the schema checks."""

    def __init__(
        self, url: str, *, busy_timeout: float = 5.0, durability: Durability = "full", read_only: bool = False
    ) -> None:
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
        self.shown = clipped(redact_url(self.url), SHOWN_LIMIT)
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
        # Writes refused here, before any statement, and by the database too (mode=ro, a read-only transaction).
        self.read_only = read_only
        try:
            self.engine = self._make_engine(busy_timeout)
        except ImportError as exc:  # postgresql+asyncpg://, say: a driver keytrail does not ship with
            raise InvalidInput(
                f"{self.shown} names a database driver that is not installed ({exc.name or exc}); "
                "use sqlite:///path/to/keytrail.db or postgresql+psycopg://..."
            ) from None
        # Connections checked out of the pool once: the writers' and SQLite's autocommit reads' (see _connected).
        self._write_pin, self._read_pin = _Pin(), _Pin()
        # An in-memory database is one shared connection (StaticPool): its users take turns.
        self._serial: threading.RLock | None = threading.RLock() if self.in_memory else None
        self.closed = False

    def __repr__(self) -> str:
        return f"Database({self.shown!r})"

    def _make_engine(self, busy_timeout: float) -> Engine:
        if self.dialect == "postgresql":
            engine = sa.create_engine(
                self.url, pool_pre_ping=False, connect_args={"connect_timeout": max(1, round(busy_timeout))}
            )
            if self.read_only:
                event.listen(engine, "connect", _read_only_session)
            return engine
        extra: dict[str, Any] = {"poolclass": StaticPool} if self.in_memory else {}
        path = self.sqlite_path
        if self.read_only and path is not None:
            extra["creator"] = lambda: sqlite3.connect(
                self.sqlite_uri(path), uri=True, timeout=busy_timeout, check_same_thread=False
            )
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
            if self.read_only:
                cursor.execute("PRAGMA query_only = ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Writers take the lock up front: no deadlocked read-to-write upgrade, and the
            # busy timeout applies to the whole command. A write transaction began on the
            # driver already (see _on_driver): SQLAlchemy joins it.
            # Only a writer's own connection joins; any other use of an open transaction (a read nested
            # in a write on an in-memory database's one connection) fails at BEGIN, as it should.
            driver: Any = conn.connection.driver_connection
            writing = conn.get_execution_options().get("keytrail_write", False)
            if not (writing and driver.in_transaction):
                driver.execute("BEGIN IMMEDIATE" if writing else "BEGIN")

        return engine

    def sqlite_uri(self, path: Path) -> str:
        """The URI SQLite opens ``path`` by: read-write, or read-only creating no file.

        Read-only, a WAL database whose -wal and -shm exist (a writer has it open) is read through
        them (``mode=ro``); one without them (closed cleanly, or a copy) is read ``immutable``: no
        lock and no -shm, at the price that a writer starting meanwhile is not seen, and a page it
        checkpoints into the file mid-read could be. A -wal holding transactions but no -shm cannot
        be read without creating a -shm, and immutable mode would ignore the -wal: refused.
        """
        uri = path.resolve().as_uri()
        if not self.read_only:
            return f"{uri}?mode=rw"
        wal, shm, journal = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))
        if wal.exists() and shm.exists():
            return f"{uri}?mode=ro"
        if wal.exists() and wal.stat().st_size > 0:
            raise DatabaseUnavailable(
                f"{self.shown} cannot be opened read-only: its -wal file holds transactions but there is no -shm file, "
                "which SQLite would have to create. Open a copy with write access once, or have its owner run "
                "`sqlite3 FILE 'PRAGMA wal_checkpoint(TRUNCATE)'`; nothing was created."
            )
        return f"{uri}?mode=ro" if journal.exists() else f"{uri}?mode=ro&immutable=1"

    def check_writable(self) -> None:
        """ReadOnly when the database was opened read-only: for writers with work to refuse before their transaction."""
        if self.read_only:
            raise ReadOnly(
                f"{self.shown} was opened read-only (read_only=True, or keytrail --read-only): it takes no writes, "
                "and nothing was written."
            )

    def _turn(self) -> threading.RLock | nullcontext[None]:
        if self.closed:
            raise StorageError(f"The engine on {self.shown} was closed; open it again.")
        return self._serial if self._serial is not None else nullcontext()

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Connection]:
        """A transaction that commits on success, rolls back on any error, and speaks keytrail errors.

        On PostgreSQL a reading transaction is REPEATABLE READ, so that a read of several
        statements (verify's projection and events) sees one snapshot, as SQLite's BEGIN does.
        Statements run on the driver connection under it (the command path's) are inside it too.
        """
        if write:
            self.check_writable()
        try:
            with self._turn(), self._connected(write) as conn:
                if write:
                    yield from self._on_driver(conn)
                else:
                    with conn.begin():
                        yield conn
        except KeytrailError:
            raise
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.shown) from exc
        except self._driver_errors() as exc:
            raise translate_error(exc, self.shown) from exc

    def _on_driver(self, conn: Connection) -> Iterator[Connection]:
        """A write transaction begun and ended on the driver, which SQLAlchemy joins only if a
        statement of its own runs in it (the command path's statements are the driver's).

        SQLAlchemy's transaction bookkeeping and events cost a fast command a fifth of its time.
        """
        driver: Any = conn.connection.driver_connection
        if self.dialect == "sqlite":
            driver.execute("BEGIN IMMEDIATE")  # psycopg begins with the first statement
        try:
            yield conn
        except BaseException:
            if conn.in_transaction():
                conn.rollback()
            else:
                driver.rollback()
            raise
        if conn.in_transaction():
            conn.commit()
        else:
            driver.commit()

    @contextmanager
    def _connected(self, write: bool) -> Iterator[Connection]:
        """A connection for one transaction; a writer's is the pinned one when it is free.

        The pinned connection stays checked out across commands, saving a pool checkout and
        check-in and a reset each (a third of a fast command's cost). An error other than
        keytrail's own (which leave the transaction cleanly rolled back) sends it back to the
        pool, so a broken connection is never reused.
        """
        pin = self._write_pin
        if not write or not pin.lock.acquire(blocking=False):
            with self.engine.connect() as plain:
                yield self._prepared(plain, write)
            return
        try:
            if pin.pooled is None:
                pin.pooled = self._prepared(self.engine.connect(), write=True)
            conn: Connection = pin.pooled
            try:
                yield conn
            except KeytrailError:
                raise
            except BaseException:
                pin.pooled = None
                conn.close()
                raise
        finally:
            pin.lock.release()

    def _prepared(self, conn: Connection, write: bool) -> Connection:
        if write:
            return conn.execution_options(keytrail_write=True)
        if self.dialect == "postgresql":
            return conn.execution_options(isolation_level="REPEATABLE READ")
        return conn

    def _pooled(self) -> Any:
        try:
            return self.engine.raw_connection()
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.shown) from exc

    def translated(self, exc: BaseException) -> BaseException:
        """A driver's or SQLAlchemy's error as keytrail's; any other exception as it was raised."""
        if isinstance(exc, (SQLAlchemyError, *self._driver_errors())):
            return translate_error(exc, self.shown)
        return exc

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        if self.dialect == "sqlite":
            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

    @contextmanager
    def sqlite_read(self) -> Iterator[sqlite3.Connection]:
        """An SQLite driver connection in autocommit: each statement reads one consistent snapshot.

        A pinned connection when free (see :meth:`_connected`), else one from the pool; errors
        come out as keytrail errors.
        """
        assert self.dialect == "sqlite"
        pin = self._read_pin
        with self._turn():
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
                except sqlite3.Error as exc:
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

    def write(self) -> Any:
        return self.transaction(write=True)

    def read(self) -> Any:
        return self.transaction(write=False)

    def close(self) -> None:
        """Release every connection for good: later use is a clear error, not a silent reopening."""
        self.closed = True  # first: no transaction starts while the connections are being closed
        self.dispose()

    def dispose(self) -> None:
        for pin in (self._write_pin, self._read_pin):
            with pin.lock:
                if pin.pooled is not None:
                    pin.pooled.close()
                    pin.pooled = None
        self.engine.dispose()
