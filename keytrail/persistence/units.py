"""What the engine holds instead of a connection: a storage facade and one transaction's unit of work.

The engine decides; a :class:`Unit` reads the records a command needs and writes what the
engine decided, each statement built (and, on the hot path, spelled per backend) here. The
engine never sees a ``Connection``, a driver cursor or SQL text.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keytrail.events import PendingEvent, RecordedEvent
from keytrail.persistence.authority_store import AuthorityStore, StoredAuthorityRecords
from keytrail.persistence.database import Database
from keytrail.persistence.store import (
    AuditRow,
    EventStore,
    HotPath,
    SavedConfig,
    StreamHead,
    config_table,
    hot_path_for,
)
from keytrail.persistence.tables import MetaRow

__all__ = ["CommandUnit", "HotUnit", "SqliteReads", "Storage", "Unit", "sqlite_file_of"]

_meta: sa.Table = MetaRow.__table__  # type: ignore[attr-defined]


def sqlite_file_of(url: str) -> Path | None:
    """The file a SQLite URL names (None: not a SQLite file URL), parsed even where keytrail refuses the URL."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return Path(parsed.database)
    return None


class CommandUnit(Protocol):
    """What a command needs of storage inside its write transaction: the engine's only view of it."""

    @property
    def authority(self) -> StoredAuthorityRecords: ...
    def lock_stream(self, stream: str) -> None:
        """Become the stream's only writer until the transaction ends (commands on one stream queue here)."""
        ...

    def read_head(self, stream: str) -> tuple[StreamHead | None, SavedConfig | None]: ...
    def find_idempotent(self, stream: str, digest: str, *, legacy: str | None) -> RecordedEvent | None: ...
    def append(self, stream: str, head: StreamHead | None, event: PendingEvent) -> RecordedEvent:
        """Append the event after ``head`` and move the projection; ConcurrencyConflict if another writer did first."""
        ...

    def save_config(self, stream: str, ciphertext: str, fingerprint: str, hint: str, at: datetime) -> None: ...


class Unit:
    """One transaction: the event log, the saved configs and the authority's records, on the connection it holds."""

    def __init__(self, conn: Connection, store: EventStore) -> None:
        self._conn = conn
        self._store = store

    @cached_property
    def authority(self) -> StoredAuthorityRecords:
        return StoredAuthorityRecords(self._conn)

    def lock_stream(self, stream: str) -> None:
        self._store.lock_stream(self._conn, stream)

    def read_head(self, stream: str) -> tuple[StreamHead | None, SavedConfig | None]:
        return self._store.read_head(self._conn, stream)

    def find_idempotent(self, stream: str, digest: str, *, legacy: str | None) -> RecordedEvent | None:
        return self._store.find_idempotent(self._conn, stream, digest, legacy=legacy)

    def append(self, stream: str, head: StreamHead | None, event: PendingEvent) -> RecordedEvent:
        return self._store.append(self._conn, stream, head, event)

    def save_config(self, stream: str, ciphertext: str, fingerprint: str, hint: str, at: datetime) -> None:
        self._store.save_config(self._conn, stream, ciphertext, fingerprint, hint, at)

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

    def audit_rows_by_position(self) -> Generator[AuditRow, None, None]:
        return self._store.audit_rows_by_position(self._conn)

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


class HotUnit:
    """The hot path's write transaction on the driver's own connection: three statements (four on PostgreSQL)."""

    def __init__(self, dbapi: Any, hot: HotPath) -> None:
        self._dbapi = dbapi
        self.spelling = hot

    def head_with_key(self, stream: str) -> tuple[Any, ...] | None:
        """Lock the stream (PostgreSQL), then its projection joined with the saved key and the authority's row for it.

        The row: state, version, head hash, saved fingerprint and hint, key id, its expiry and
        revocation as stored, and the projection's update time as stored. None: no projection.
        """
        hot = self.spelling
        if hot.lock is not None:  # first: commands on one stream queue here
            self._dbapi.execute(hot.lock, (stream,))
        row: tuple[Any, ...] | None = self._dbapi.execute(hot.read, (stream,)).fetchone()
        return row

    def insert_event(self, values: tuple[Any, ...]) -> None:
        self._dbapi.execute(self.spelling.insert, values)

    def move(self, values: tuple[Any, ...]) -> int:
        """Move the projection; how many rows moved (0: another writer moved it first)."""
        moved: int = self._dbapi.execute(self.spelling.update, values).rowcount
        return moved


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
    """keytrail's database as the engine sees it: units of work, the hot path and the authority's store."""

    def __init__(self, db: Database) -> None:
        self.database = db
        self._store = EventStore()
        self._hot = hot_path_for(db.dialect)
        self.authority = AuthorityStore(db)

    @property
    def has_hot_path(self) -> bool:
        return self._hot is not None

    @contextmanager
    def read(self) -> Iterator[Unit]:
        with self.database.read() as conn:
            yield Unit(conn, self._store)

    @contextmanager
    def write(self) -> Iterator[Unit]:
        with self.database.write() as conn:
            yield Unit(conn, self._store)

    @contextmanager
    def hot_write(self) -> Iterator[HotUnit]:
        assert self._hot is not None
        with self.database.driver_write() as dbapi:
            yield HotUnit(dbapi, self._hot)

    @contextmanager
    def sqlite_read(self) -> Iterator[SqliteReads]:
        with self.database.sqlite_read() as dbapi:
            yield SqliteReads(dbapi, self._store)
