"""What the engine holds instead of a connection: a storage facade and one transaction's unit of work.

The engine decides; a :class:`Unit` reads the records a command needs and writes what the
engine decided, each statement built (and, on the command path, spelled per backend) here.
The engine never sees a ``Connection``, a driver cursor or SQL text.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keytrail.errors import IntegrityViolation
from keytrail.events import PendingEvent, RecordedEvent, iso_utc
from keytrail.persistence.authority_store import AuthorityStore, StoredAuthorityRecords
from keytrail.persistence.commands import CommandSql, Loaded, SavedConfig, StreamHead, command_sql
from keytrail.persistence.database import Database
from keytrail.persistence.feed import FeedReader
from keytrail.persistence.group import GroupCommit
from keytrail.persistence.store import AuditRow, EventStore, config_table, sqlite_time
from keytrail.persistence.stored import SQLITE_TIME_SHAPE
from keytrail.persistence.tables import MetaRow
from keytrail.portal.records import ApiKey, KeyRecord

__all__ = ["CommandUnit", "ReplayScan", "SqliteReads", "Storage", "Unit", "sqlite_file_of"]

_T = TypeVar("_T")
_meta: sa.Table = MetaRow.__table__  # type: ignore[attr-defined]


def sqlite_file_of(url: str) -> Path | None:
    """The file a SQLite URL names (None: not a SQLite file URL), parsed even where keytrail refuses the URL."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return Path(parsed.database)
    return None


class CommandUnit(Protocol):
    """What a command needs of storage inside its transaction: the engine's only view of it."""

    @property
    def authority(self) -> StoredAuthorityRecords: ...
    def load(self, stream: str, lookup: tuple[str, str] | None = None) -> Loaded:
        """Everything the command decides over, in one read; in a write transaction the stream is
        locked first, so that commands on one stream queue. ``lookup``: the stored spellings of
        the idempotency key (its digest, and the raw key of older versions or the digest again)."""
        ...

    def append(self, stream: str, head: StreamHead | None, event: PendingEvent) -> RecordedEvent:
        """Append the event after ``head`` and move the projection; ConcurrencyConflict if another writer did first."""
        ...

    def save_config(self, stream: str, ciphertext: str, fingerprint: str, hint: str, at: datetime) -> None: ...


class _PreloadedRecords(StoredAuthorityRecords):
    """The authority's records, answering for the saved key from the command's joined read instead of a query."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._fingerprint: str | None = None
        self._key: ApiKey | None = None
        self._flaw: IntegrityViolation | None = None

    def preload(self, fingerprint: str | None, key: ApiKey | None, flaw: IntegrityViolation | None = None) -> None:
        self._fingerprint, self._key, self._flaw = fingerprint, key, flaw

    def key_by_fingerprint(self, fingerprint: str) -> ApiKey | None:
        if fingerprint == self._fingerprint:
            if self._flaw is not None:
                raise self._flaw
            return self._key
        return super().key_by_fingerprint(fingerprint)

    # Writes to keys make the preloaded record stale: forget it.
    def add_key(self, record: KeyRecord) -> None:
        self._fingerprint = None
        super().add_key(record)

    def revoke_key(self, key_id: str, at: datetime) -> bool:
        self._fingerprint = None
        return super().revoke_key(key_id, at)


class Unit:
    """One transaction: the event log, the saved configs and the authority's records, on the connection it holds.

    The command path's statements run on the driver connection under the transaction, spelled
    by the backend's :class:`~keytrail.persistence.commands.CommandSql`; the other reads go
    through SQLAlchemy Core.
    """

    def __init__(self, conn: Connection, store: EventStore, sql: CommandSql, *, writing: bool) -> None:
        self._conn = conn
        self._store = store
        self._sql = sql
        self._writing = writing
        self._dbapi: Any = conn.connection.driver_connection
        self._records: _PreloadedRecords | None = None

    @property
    def authority(self) -> _PreloadedRecords:
        if self._records is None:
            self._records = _PreloadedRecords(self._conn)
        return self._records

    def load(self, stream: str, lookup: tuple[str, str] | None = None) -> Loaded:
        loaded = self._sql.load(self._dbapi, stream, lookup, lock=self._writing)
        config = loaded.config
        self.authority.preload(None if config is None else config.fingerprint, loaded.saved_key, loaded.saved_key_flaw)
        return loaded

    # Several commands in one transaction (group commit) are kept apart by a savepoint each.
    def savepoint(self) -> None:
        self._dbapi.execute("SAVEPOINT keytrail_command")

    def release_savepoint(self) -> None:
        self._dbapi.execute("RELEASE SAVEPOINT keytrail_command")

    def rollback_to_savepoint(self) -> None:
        self._dbapi.execute("ROLLBACK TO SAVEPOINT keytrail_command")
        self._dbapi.execute("RELEASE SAVEPOINT keytrail_command")

    def append(self, stream: str, head: StreamHead | None, event: PendingEvent) -> RecordedEvent:
        return self._sql.append(self._dbapi, stream, head, event)

    def save_config(self, stream: str, ciphertext: str, fingerprint: str, hint: str, at: datetime) -> None:
        self._sql.save_config(self._dbapi, stream, ciphertext, fingerprint, hint, at)

    def configs(self) -> Generator[SavedConfig, None, None]:
        return self._store.configs(self._conn)

    def heads(self, stream: str | None = None) -> Generator[StreamHead, None, None]:
        return self._store.heads(self._conn, stream)

    def stream_exists(self, stream: str) -> bool:
        return self._store.stream_exists(self._conn, stream)

    def events(self, stream: str | None = None) -> Generator[RecordedEvent, None, None]:
        return self._store.events(self._conn, stream)

    def audit_rows(self, stream: str | None = None) -> Generator[AuditRow, None, None]:
        return self._store.audit_rows(self._conn, stream)

    def audit_rows_by_position(self, upto: int | None = None) -> Generator[AuditRow, None, None]:
        return self._store.audit_rows_by_position(self._conn, upto)

    def lock_secrets(self) -> None:
        """Keep every save and key creation out until this transaction ends (PostgreSQL; SQLite's writer is alone)."""
        if self._conn.dialect.name == "postgresql":
            self._conn.exec_driver_sql("LOCK TABLE store_config, api_keys IN SHARE ROW EXCLUSIVE MODE")

    def sealed_configs(self) -> list[tuple[str, str]]:
        """Every saved key's stream and ciphertext, read in full (a re-seal updates each as it goes)."""
        rows = self._conn.execute(sa.select(config_table.c.stream_id, config_table.c.ciphertext)).all()
        return [(stream, ciphertext) for stream, ciphertext in rows]

    def reseal_config(self, stream: str, ciphertext: str) -> None:
        self._store.reseal_config(self._conn, stream, ciphertext)

    def set_secret_check(self, token: str) -> None:
        self._conn.execute(sa.update(_meta).where(_meta.c.name == "secret_check").values(value=token))


@dataclass(frozen=True)
class ReplayScan:
    """A replay's rows (:data:`~keytrail.persistence.store.AuditRow`), the cut spelled as they spell
    ``occurred_at``, and the check a time stored as keytrail writes it passes (None: rows come parsed)."""

    rows: Iterator[AuditRow]
    as_of: str | None
    time_check: Callable[[Any], Any] | None


class SqliteReads:
    """SQLite reads in autocommit on the driver's connection: one statement, one snapshot, no transaction."""

    def __init__(self, dbapi: Any, store: EventStore) -> None:
        self._dbapi = dbapi
        self._store = store

    def head(self, stream: str) -> StreamHead | None:
        return self._store.sqlite_head(self._dbapi, stream)

    def audit_rows(self, stream: str, *, hashing: bool) -> Generator[AuditRow, None, None]:
        return self._store.sqlite_audit_rows(self._dbapi, stream, hashing=hashing)


class Storage:
    """keytrail's database as the engine sees it: units of work and the authority's store."""

    def __init__(self, db: Database, *, group_commit: bool = False, max_batch: int = 64) -> None:
        self.database = db
        self._store = EventStore()
        self._sql = command_sql(db.dialect)
        self.authority = AuthorityStore(db)
        self.feed = FeedReader(db)
        self.group: GroupCommit[Unit] | None = (
            GroupCommit(self.write, max_batch=max_batch, where=db.shown, translate=db.translated)
            if group_commit
            else None
        )

    def commit(self, work: Callable[[Unit], _T]) -> _T:
        """``work(unit)`` in a write transaction, committed before this returns; with group commit,
        maybe in one transaction with other callers' work (see :mod:`keytrail.persistence.group`)."""
        if self.group is None:
            with self.write() as unit:
                return work(unit)
        return self.group.run(work)

    @contextmanager
    def read(self) -> Iterator[Unit]:
        with self.database.read() as conn:
            yield Unit(conn, self._store, self._sql, writing=False)

    @contextmanager
    def write(self) -> Iterator[Unit]:
        with self.database.write() as conn:
            yield Unit(conn, self._store, self._sql, writing=True)

    def head(self, stream: str) -> StreamHead | None:
        """The stream's projection row alone (status reads): on SQLite one autocommit statement."""
        if self.database.dialect == "sqlite":
            with self.sqlite_read() as reads:
                return reads.head(stream)
        with self.read() as unit:
            return unit.load(stream).head

    @contextmanager
    def replay_scan(self, stream: str, as_of: datetime | None) -> Iterator[ReplayScan]:
        """One stream's events for a replay, in version order, with ``as_of`` spelled as the rows spell times.

        On SQLite the rows come as stored, in one autocommit statement (one snapshot, no
        transaction to open and close): the fold checks each time's shape and compares the
        times as text (verify also checks each is a real instant).
        """
        if self.database.dialect == "sqlite":
            cut = None if as_of is None else sqlite_time(as_of.astimezone(UTC))
            with self.sqlite_read() as reads, closing(reads.audit_rows(stream, hashing=False)) as rows:
                yield ReplayScan(rows, cut, SQLITE_TIME_SHAPE)
            return
        with self.read() as unit, closing(unit.audit_rows(stream)) as rows:
            yield ReplayScan(rows, None if as_of is None else iso_utc(as_of), None)

    @contextmanager
    def sqlite_read(self) -> Iterator[SqliteReads]:
        with self.database.sqlite_read() as dbapi:
            yield SqliteReads(dbapi, self._store)
