"""The event store: append with optimistic concurrency, the projection, and ordered reads.

It speaks strings and dicts, never the machine: what a trigger means is the engine's
business. Statements are SQLAlchemy Core on the SQLModel tables: the hot path builds no ORM
objects.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Generator, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from keytrail.errors import ConcurrencyConflict, CorruptEvent, CorruptProjection, IntegrityViolation
from keytrail.events import EVENT_COLUMNS, GENESIS_HASH, PendingEvent, RecordedEvent, event_hash, iso_utc
from keytrail.persistence.stored import (
    SQLITE_TIME_FORMAT,
    SQLITE_TIME_SHAPE,
    WELL_TYPED_ROWS,
    Flaw,
    column_flaw,
    data_flaw,
    is_sqlite_time,
    read_sqlite_json,
    read_sqlite_time,
    shown,
    sqlite_data,
    time_flaw,
    well_typed,
)
from keytrail.persistence.tables import SCHEMA_VERSION, ConfigRow, EventRow, StreamRow

__all__ = [
    "AuditRow",
    "EventStore",
    "HotPath",
    "SavedConfig",
    "StreamHead",
    "hot_path_for",
    "parse_sqlite_time",
    "sqlite_time",
]

events_table: sa.Table = EventRow.__table__  # type: ignore[attr-defined]
streams_table: sa.Table = StreamRow.__table__  # type: ignore[attr-defined]
config_table: sa.Table = ConfigRow.__table__  # type: ignore[attr-defined]


# (position, stream_id, version, trigger, source, dest, reason, data, actor, occurred_at as ISO UTC text,
#  idempotency_key, schema_version, prev_hash, hash): an event as replay and verify read it. A value
# that is not as keytrail writes it arrives as a Flaw instead: in the data slot for data, in the
# occurred_at slot for the time or a column of the wrong type.
AuditRow = tuple[Any, ...]


@dataclass(frozen=True)
class StreamHead:
    """The projection row of one stream."""

    stream_id: str
    state: str
    reason: str | None
    version: int
    head_hash: str
    account_id: str | None = None
    key_id: str | None = None
    updated_at: datetime | None = None
    # What is wrong with the stored row, when it is not as keytrail writes it (verify reports it,
    # other readers refuse it); None for every row keytrail wrote.
    flaw: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SavedConfig:
    """The saved "Production Api key" of one stream, still sealed."""

    stream_id: str
    ciphertext: str
    fingerprint: str
    hint: str
    saved_at: datetime


_EVENT_COLUMNS = [events_table.c[name] for name in EVENT_COLUMNS]
# The projection's columns, in StreamHead's order.
_HEAD_COLUMNS = [
    streams_table.c[name]
    for name in ("stream_id", "state", "reason", "version", "head_hash", "account_id", "key_id", "updated_at")
]


_LOCK_STREAM = (
    sa.select(sa.literal(1))
    .select_from(streams_table)
    .where(streams_table.c.stream_id == sa.bindparam("stream_id", type_=sa.String()))
    .with_for_update()
)


def _event(row: Any) -> RecordedEvent:
    return RecordedEvent(*row)


def _checked_event(row: Any) -> RecordedEvent:
    """An event read off PostgreSQL for a reader: ``jsonb`` holds any JSON value, keytrail only objects."""
    flaw = data_flaw(row[7])
    if flaw is not None:
        raise CorruptEvent(row[1], row[2], flaw.message, position=row[0])
    return RecordedEvent(*row)


def _strict_sqlite_event(row: Any) -> RecordedEvent:
    """An event read off SQLite for a reader, every column as keytrail writes it, or CorruptEvent naming it."""
    try:
        if not well_typed(row):
            flaw = column_flaw(row)
            raise ValueError(flaw.message if flaw is not None else "a column holds a value keytrail never writes.")
        data = read_sqlite_json(row[7])
        occurred = read_sqlite_time(row[9])
    except ValueError as exc:
        raise CorruptEvent(row[1], row[2], str(exc), position=row[0]) from None
    return RecordedEvent(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        data,
        row[8],
        occurred,
        row[10],
        row[11],
        row[12],
        row[13],
    )


def _sqlite_head(row: Any) -> StreamHead:
    """A projection row read off SQLite; one not as keytrail writes it carries its ``flaw``."""
    stream_id, state, reason, version, head_hash, account_id, key_id, updated = row
    flaw: str | None = None
    if type(version) is not int:
        flaw = f"version is stored as {shown(version)}, not a whole number."
    elif type(state) is not str or type(head_hash) is not str:
        flaw = f"state or head_hash is stored as {shown(state)}, {shown(head_hash)}, not text."
    elif not is_sqlite_time(updated):
        flaw = time_flaw(updated, "updated_at").message
    if flaw is not None:
        return StreamHead(
            stream_id, str(state), None, version if type(version) is int else 0, str(head_hash), flaw=flaw
        )
    return StreamHead(stream_id, state, reason, version, head_hash, account_id, key_id, parse_sqlite_time(updated))


def _pg_audit_row(row: Any) -> AuditRow:
    """An event row read off PostgreSQL as an :data:`AuditRow` (``jsonb`` may hold a non-object: a Flaw)."""
    data = row[7]
    if type(data) is not dict:
        data = data_flaw(data)
    return (row[0], row[1], row[2], row[3], row[4], row[5], row[6], data, row[8], iso_utc(row[9]), *row[10:])


def _streamed(conn: Connection, query: sa.Select[Any], batch: int) -> Generator[Any, None, None]:
    """The rows of a server-side scan; closing this generator (a reader stopped on a damaged row)
    closes the scan's cursor at once, while its connection is still open."""
    result = conn.execute(query, execution_options={"yield_per": batch})
    try:
        yield from result
    finally:
        result.close()


def _close(cursor: Any) -> None:
    """Close a driver cursor. A scan's generator can be finalised late, after an error sent its
    connection back to the pool and closed it; its cursor is closed already then."""
    with suppress(sqlite3.ProgrammingError):
        cursor.close()


_DATA_CACHE_SIZE = 4096


def _hashing_rows(cursor: Any) -> Iterator[AuditRow]:
    """SQLite event rows as :data:`AuditRow` tuples for the hash chain, each value checked to be
    spelled exactly as keytrail writes it (a :class:`Flaw` in its place otherwise).

    ``data`` texts repeat (every page view of a stream records the same verdict), so each
    distinct text is parsed and checked once, in a bounded cache; the parsed objects are
    shared between rows and only read.
    """
    cache: dict[Any, dict[str, Any] | Flaw] = {}
    shape, parse, typed = SQLITE_TIME_SHAPE, datetime.fromisoformat, WELL_TYPED_ROWS
    try:
        for row in cursor:
            text = row[7]
            data = cache.get(text)
            if data is None:
                if len(cache) >= _DATA_CACHE_SIZE:
                    cache.clear()
                data = cache[text] = sqlite_data(text)
            stamp = row[9]
            occurred: Any
            if tuple(map(type, row)) not in typed:
                occurred = column_flaw(row) or time_flaw(stamp)
            elif shape(stamp) is None:
                occurred = time_flaw(stamp)
            else:
                try:
                    parse(stamp)  # the right shape; is it an instant (no month 13)?
                except ValueError:
                    occurred = time_flaw(stamp)
                else:
                    occurred = stamp[:10] + "T" + stamp[11:] + "+00:00"  # the ISO UTC spelling the chain hashes
            yield (row[0], row[1], row[2], row[3], row[4], row[5], row[6], data, row[8], occurred, *row[10:])
    finally:
        _close(cursor)


_HEAD_SQL = "SELECT stream_id, state, reason, version, head_hash, account_id, key_id, updated_at FROM streams WHERE stream_id = ?"
_HEADS_SQL = "SELECT stream_id, state, reason, version, head_hash, account_id, key_id, updated_at FROM streams"
_AUDIT_SCAN = "SELECT " + ", ".join(EVENT_COLUMNS) + " FROM events"  # noqa: S608 (constant column names)


def _sqlite_scan(dbapi: Any, stream_id: str | None, as_of: datetime | None, after_position: int | None) -> Any:
    """A cursor over event rows in (stream, version) order, on an SQLite driver connection."""
    clauses: list[str] = []
    params: list[object] = []
    if stream_id is not None:
        clauses.append("stream_id = ?")
        params.append(stream_id)
    if as_of is not None:
        clauses.append("occurred_at <= ?")
        params.append(sqlite_time(as_of.astimezone(UTC)))
    if after_position is not None:
        clauses.append("position > ?")
        params.append(after_position)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    return dbapi.execute(_AUDIT_SCAN + where + " ORDER BY stream_id, version", params)


class EventStore:
    """Reads and appends events and their projection on a connection the caller holds."""

    def __init__(self) -> None:
        self._query = self._head_and_config_query()
        # SQLite: the times as stored, checked here (SQLAlchemy's parser fails on a damaged one).
        self._sqlite_query = self._head_and_config_query(raw_times=True)

    def _head_and_config_query(self, *, raw_times: bool = False) -> sa.Select[Any]:
        # One row even when the stream has no projection yet: its config may exist already
        # (a store whose key was saved before keytrail tracked it).
        wanted = sa.select(sa.bindparam("stream_id", type_=sa.String()).label("sid")).subquery("wanted")
        head_columns: list[Any] = list(_HEAD_COLUMNS)
        saved_at: Any = config_table.c.saved_at
        if raw_times:
            head_columns[-1] = sa.type_coerce(streams_table.c.updated_at, sa.String()).label("updated_at")
            saved_at = sa.type_coerce(saved_at, sa.String()).label("saved_at")
        return sa.select(
            *head_columns,
            config_table.c.ciphertext,
            config_table.c.fingerprint,
            config_table.c.hint,
            saved_at,
        ).select_from(
            wanted.outerjoin(streams_table, streams_table.c.stream_id == wanted.c.sid).outerjoin(
                config_table, config_table.c.stream_id == wanted.c.sid
            )
        )

    def lock_stream(self, conn: Connection, stream_id: str) -> None:
        """Make a write transaction the stream's only writer until it ends: the first statement of a command.

        On PostgreSQL this locks the stream's projection row (``FOR UPDATE``), so commands on one
        stream queue instead of failing each other at the version check; the transaction is READ
        COMMITTED, so the statements after the lock read what the previous holder committed. A
        stream without a row yet locks nothing: two first commands still race on version 1, and
        the loser, retrying, finds the row and queues. SQLite needs nothing here: a writer's
        ``BEGIN IMMEDIATE`` already holds the database's one write lock.
        """
        if conn.dialect.name == "postgresql":
            conn.execute(_LOCK_STREAM, {"stream_id": stream_id})

    def read_head(self, conn: Connection, stream_id: str) -> tuple[StreamHead | None, SavedConfig | None]:
        """The stream's projection and its saved key, in one statement; CorruptProjection if damaged."""
        if conn.dialect.name != "sqlite":
            row = conn.execute(self._query, {"stream_id": stream_id}).one()
            head = None if row[0] is None else StreamHead(*row[:8])
            config = None if row[8] is None else SavedConfig(stream_id, row[8], row[9], row[10], row[11])
            return head, config
        row = conn.execute(self._sqlite_query, {"stream_id": stream_id}).one()
        head = None if row[0] is None else _sqlite_head(tuple(row[:8]))
        if head is not None and head.flaw is not None:
            raise CorruptProjection(stream_id, head.flaw)
        config = None
        if row[8] is not None:
            if not is_sqlite_time(row[11]):
                raise CorruptProjection(stream_id, "its saved key's " + time_flaw(row[11], "saved_at").message)
            config = SavedConfig(stream_id, row[8], row[9], row[10], parse_sqlite_time(row[11]))
        return head, config

    def sqlite_head(self, dbapi: Any, stream_id: str) -> StreamHead | None:
        """The projection row alone, on an SQLite driver connection (status reads); CorruptProjection if damaged."""
        row = dbapi.execute(_HEAD_SQL, (stream_id,)).fetchone()
        if row is None:
            return None
        head = _sqlite_head(row)
        if head.flaw is not None:
            raise CorruptProjection(stream_id, head.flaw)
        return head

    def heads(self, conn: Connection, stream_id: str | None = None) -> Generator[StreamHead, None, None]:
        """Projection rows by stream id (or the one of ``stream_id``), streamed; on SQLite a damaged
        row comes with its ``flaw`` instead of failing the scan."""
        if conn.dialect.name == "sqlite":
            where, params = ("", ()) if stream_id is None else (" WHERE stream_id = ?", (stream_id,))
            dbapi: Any = conn.connection.driver_connection
            cursor = dbapi.execute(_HEADS_SQL + where + " ORDER BY stream_id", params)
            try:
                for row in cursor:
                    yield _sqlite_head(row)
            finally:
                _close(cursor)
            return
        query = sa.select(*_HEAD_COLUMNS).order_by(streams_table.c.stream_id)
        if stream_id is not None:
            query = query.where(streams_table.c.stream_id == stream_id)
        for row in _streamed(conn, query, 1000):
            yield StreamHead(*row)

    def find_idempotent(
        self, conn: Connection, stream_id: str, idempotency_key: str, *, legacy: str | None = None
    ) -> RecordedEvent | None:
        """The event stored under ``idempotency_key`` (a digest), or under ``legacy``: the raw key as
        versions before digests stored it (the caller never passes one shaped like a digest)."""
        stored = [idempotency_key] if legacy is None else [idempotency_key, legacy]
        if conn.dialect.name == "sqlite":  # read as the readers do: a damaged row is a CorruptEvent
            dbapi: Any = conn.connection.driver_connection
            marks = ", ".join("?" for _ in stored)
            cursor = dbapi.execute(
                _AUDIT_SCAN + f" WHERE stream_id = ? AND idempotency_key IN ({marks})", (stream_id, *stored)
            )
            try:
                found = cursor.fetchone()
            finally:
                _close(cursor)
            return None if found is None else _strict_sqlite_event(found)
        query = sa.select(*_EVENT_COLUMNS).where(
            events_table.c.stream_id == stream_id, events_table.c.idempotency_key.in_(stored)
        )
        row = conn.execute(query).first()
        return None if row is None else _checked_event(row)

    def append(self, conn: Connection, stream_id: str, head: StreamHead | None, event: PendingEvent) -> RecordedEvent:
        """Append the next event of the stream and move its projection, or raise ConcurrencyConflict."""
        version = 1 if head is None else head.version + 1
        prev_hash = GENESIS_HASH if head is None else head.head_hash
        body = event.hashed_fields(stream_id, version, SCHEMA_VERSION)
        digest = event_hash(prev_hash, body)
        # The row as stored: the same values, occurred_at as the datetime the column takes.
        row = {**body, "occurred_at": event.occurred_at, "prev_hash": prev_hash, "hash": digest}
        projection = {
            "state": event.dest,
            "reason": event.reason,
            "version": version,
            "head_hash": digest,
            "account_id": event.account_id if event.account_id is not None else (head.account_id if head else None),
            "key_id": event.key_id if event.key_id is not None else (head.key_id if head else None),
            "updated_at": event.occurred_at,
        }
        try:
            position = conn.execute(sa.insert(events_table).returning(events_table.c.position), row).scalar_one()
            if head is None:
                conn.execute(sa.insert(streams_table), {"stream_id": stream_id, **projection})
            else:
                moved = conn.execute(
                    sa.update(streams_table).where(
                        streams_table.c.stream_id == stream_id, streams_table.c.version == head.version
                    ),
                    projection,
                ).rowcount
                if moved != 1:
                    raise ConcurrencyConflict(
                        f"{stream_id} moved past version {head.version} while this command ran; nothing was written."
                    )
        except IntegrityError as exc:
            raise ConcurrencyConflict(
                f"Another writer appended version {version} of {stream_id} first; nothing was written."
            ) from exc
        return RecordedEvent(position, **row)

    def save_config(
        self, conn: Connection, stream_id: str, ciphertext: str, fingerprint: str, hint: str, at: datetime
    ) -> None:
        values = {"ciphertext": ciphertext, "fingerprint": fingerprint, "hint": hint, "saved_at": at}
        updated = conn.execute(sa.update(config_table).where(config_table.c.stream_id == stream_id), values).rowcount
        if updated == 0:
            conn.execute(sa.insert(config_table), {"stream_id": stream_id, **values})

    def configs(self, conn: Connection) -> Generator[SavedConfig, None, None]:
        query = sa.select(
            config_table.c.stream_id,
            config_table.c.ciphertext,
            config_table.c.fingerprint,
            config_table.c.hint,
            config_table.c.saved_at,
        ).order_by(config_table.c.stream_id)
        for row in conn.execute(query, execution_options={"yield_per": 1000}):
            yield SavedConfig(*row)

    def reseal_config(self, conn: Connection, stream_id: str, ciphertext: str) -> None:
        conn.execute(sa.update(config_table).where(config_table.c.stream_id == stream_id), {"ciphertext": ciphertext})

    def events(
        self,
        conn: Connection,
        stream_id: str | None = None,
        *,
        as_of: datetime | None = None,
        after_position: int | None = None,
    ) -> Generator[RecordedEvent, None, None]:
        """Events of one stream by version, or of all streams by (stream, version); streamed, not loaded.

        A row that is not as keytrail writes it raises CorruptEvent naming it.
        """
        if conn.dialect.name == "sqlite":
            yield from self._sqlite_events(conn, stream_id, as_of, after_position)
            return
        for row in self._rows(conn, stream_id, as_of, after_position):
            yield _checked_event(row)

    def _rows(
        self, conn: Connection, stream_id: str | None, as_of: datetime | None, after_position: int | None
    ) -> Iterator[Any]:
        query = sa.select(*_EVENT_COLUMNS)
        if stream_id is not None:
            query = query.where(events_table.c.stream_id == stream_id).order_by(events_table.c.version)
        else:
            query = query.order_by(events_table.c.stream_id, events_table.c.version)
        if as_of is not None:
            query = query.where(events_table.c.occurred_at <= as_of)
        if after_position is not None:
            query = query.where(events_table.c.position > after_position)
        yield from _streamed(conn, query, 2000)

    def audit_rows(
        self, conn: Connection, stream_id: str | None = None, *, as_of: datetime | None = None
    ) -> Generator[AuditRow, None, None]:
        """Events as :data:`AuditRow` tuples in (stream, version) order, streamed: what replay and verify fold.

        On SQLite the rows come straight off the driver's cursor (no result processing per
        column); ``occurred_at`` is the ISO UTC text that is hashed, ``data`` parsed JSON.
        """
        if conn.dialect.name != "sqlite":
            for row in self._rows(conn, stream_id, as_of, None):
                yield _pg_audit_row(row)
            return
        yield from self.sqlite_audit_rows(conn.connection.driver_connection, stream_id, as_of=as_of)

    def audit_rows_by_position(self, conn: Connection) -> Generator[AuditRow, None, None]:
        """Every event as an :data:`AuditRow` in ``position`` order, streamed: what a digest hashes."""
        if conn.dialect.name != "sqlite":
            query = sa.select(*_EVENT_COLUMNS).order_by(events_table.c.position)
            for row in _streamed(conn, query, 2000):
                yield _pg_audit_row(row)
            return
        dbapi: Any = conn.connection.driver_connection
        yield from _hashing_rows(dbapi.execute(_AUDIT_SCAN + " ORDER BY position"))

    def sqlite_audit_rows(
        self, dbapi: Any, stream_id: str | None = None, *, as_of: datetime | None = None, hashing: bool = True
    ) -> Generator[AuditRow, None, None]:
        """:meth:`audit_rows` on an SQLite driver connection.

        Without ``hashing`` (a replay), rows come exactly as stored: ``data`` still JSON text
        and ``occurred_at`` SQLite's spelling; the fold checks the time's spelling (see
        :func:`~keytrail.persistence.stored.is_sqlite_time`) and parses ``data`` only where it reads it.
        """
        cursor = _sqlite_scan(dbapi, stream_id, as_of, None)
        if not hashing:
            try:
                for row in cursor:  # noqa: UP028 (`yield from` would close the cursor itself, maybe after its connection)
                    yield row
            finally:
                _close(cursor)
            return
        yield from _hashing_rows(cursor)

    def _sqlite_events(
        self, conn: Connection, stream_id: str | None, as_of: datetime | None, after_position: int | None
    ) -> Iterator[RecordedEvent]:
        # The driver's cursor and two strict conversions per row, instead of SQLAlchemy's result processing.
        cursor = _sqlite_scan(conn.connection.driver_connection, stream_id, as_of, after_position)
        try:
            for row in cursor:
                yield _strict_sqlite_event(row)
        finally:
            _close(cursor)

    def stream_exists(self, conn: Connection, stream_id: str) -> bool:
        query = sa.select(sa.literal(1)).where(events_table.c.stream_id == stream_id).limit(1)
        return conn.execute(query).first() is not None


class HotPath:
    """The verifying commands (access, proceed) of a tracked stream, on the driver's own connection.

    The generic path runs four Core statements through SQLAlchemy; this one runs three plain
    statements on the driver connection the caller holds in a write transaction (four on
    PostgreSQL, which first locks the projection row): one read of the projection joined with
    the saved key and the authority's key row, the event insert, and the projection update.
    One adapter per backend says how its driver spells parameters, times and JSON, in the
    formats SQLAlchemy itself writes, so the rows are the same whichever path wrote them.
    """

    _READ = (
        "SELECT s.state, s.version, s.head_hash, c.fingerprint, c.hint, k.key_id, k.expires_at, k.revoked_at, "
        "s.updated_at "
        "FROM streams AS s LEFT JOIN store_config AS c ON c.stream_id = s.stream_id "
        "LEFT JOIN api_keys AS k ON k.fingerprint = c.fingerprint "
        "WHERE s.stream_id = ?"
    )
    _INSERT = (
        "INSERT INTO events (stream_id, version, trigger, source, dest, reason, data, actor, occurred_at, "
        "idempotency_key, schema_version, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)"
    )
    _UPDATE = (
        "UPDATE streams SET state = ?, reason = ?, version = ?, head_hash = ?, updated_at = ? "
        "WHERE stream_id = ? AND version = ?"
    )
    # The statement run first, before the read, to become the stream's only writer (see
    # EventStore.lock_stream); None where the transaction's BEGIN already did.
    _LOCK: str | None = None
    placeholder = "?"

    def __init__(self) -> None:
        self.lock = None if self._LOCK is None else self._LOCK.replace("?", self.placeholder)
        self.read = self._READ.replace("?", self.placeholder)
        self.insert = self._INSERT.replace("?", self.placeholder)
        self.update = self._UPDATE.replace("?", self.placeholder)

    def time_param(self, instant: datetime) -> Any:
        """An aware UTC datetime as the driver takes it for a time column."""
        return instant

    def time_value(self, stored: Any) -> datetime:
        """A time column as the driver returns it, as an aware UTC datetime."""
        value: datetime = stored.astimezone(UTC)
        return value

    def data_param(self, data: dict[str, Any]) -> Any:
        return data

    def previous_time(self, stored: Any) -> datetime:
        """The projection's ``updated_at`` (the stream's last event time), or ValueError saying what is wrong."""
        return self.time_value(stored)


class SqliteHotPath(HotPath):
    """SQLite: times stored as ``YYYY-MM-DD HH:MM:SS.ffffff`` naive UTC, ``data`` as ``json.dumps`` text."""

    def time_param(self, instant: datetime) -> Any:
        return sqlite_time(instant)

    def time_value(self, stored: Any) -> datetime:
        if not is_sqlite_time(stored):  # as UTCDateTime reads it on SQLite: a finding, not a crash
            raise IntegrityViolation(
                f"A stored time is {shown(stored)}, not as keytrail writes a time ({SQLITE_TIME_FORMAT}); "
                "the database was changed outside keytrail."
            )
        return parse_sqlite_time(stored)

    def previous_time(self, stored: Any) -> datetime:
        return read_sqlite_time(stored, "updated_at")

    data_param = staticmethod(json.dumps)  # type: ignore[assignment]


class PostgresHotPath(HotPath):
    """PostgreSQL through psycopg 3: ``timestamptz`` takes aware datetimes, ``data`` is ``jsonb``.

    The projection row is locked by a statement of its own, not by ``FOR UPDATE OF s`` on the
    joined read: a read that waits for the lock gets the stream's new row but, from the same
    statement's older snapshot, the saved key as it was before the holder's ``save_config``.
    Locking first, the read is a new statement with a new snapshot, and sees that key.
    """

    _LOCK = "SELECT 1 FROM streams WHERE stream_id = ? FOR UPDATE"
    placeholder = "%s"

    def __init__(self) -> None:
        super().__init__()
        from psycopg.types.json import Jsonb

        self._jsonb = Jsonb

    def data_param(self, data: dict[str, Any]) -> Any:
        return self._jsonb(data)


def hot_path_for(dialect: str) -> HotPath | None:
    """The hot-path adapter of a backend (None: the backend has none, and the generic path runs)."""
    if dialect == "sqlite":
        return SqliteHotPath()
    if dialect == "postgresql":
        return PostgresHotPath()
    return None


def sqlite_time(instant: datetime) -> str:
    """How SQLAlchemy stores an aware UTC datetime on SQLite (naive, microseconds always written)."""
    return instant.replace(tzinfo=None).isoformat(" ", "microseconds")


def parse_sqlite_time(text: str) -> datetime:
    """The aware UTC datetime of a stored SQLite time."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
