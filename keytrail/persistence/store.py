"""The event log's reads: projections, events and audit rows, streamed in order.

It speaks strings and dicts, never the machine: what a trigger means is the engine's
business. Statements are SQLAlchemy Core on the SQLModel tables, or on SQLite the driver's
cursor where SQLAlchemy's result processing would cost more than the read; writes are the
command path's (see :mod:`keytrail.persistence.commands`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keytrail.errors import CorruptProjection
from keytrail.events import EVENT_COLUMNS, RecordedEvent, iso_utc
from keytrail.persistence.commands import SavedConfig, StreamHead
from keytrail.persistence.stored import (
    SQLITE_TIME_SHAPE,
    WELL_TYPED_ROWS,
    Flaw,
    checked_event,
    column_flaw,
    data_flaw,
    is_sqlite_time,
    shown,
    sqlite_data,
    strict_sqlite_event,
    time_flaw,
)
from keytrail.persistence.tables import ConfigRow, EventRow, StreamRow

__all__ = [
    "AuditRow",
    "EventStore",
    "SavedConfig",
    "StreamHead",
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


_EVENT_COLUMNS = [events_table.c[name] for name in EVENT_COLUMNS]
# The projection's columns, in StreamHead's order.
_HEAD_COLUMNS = [
    streams_table.c[name]
    for name in ("stream_id", "state", "reason", "version", "head_hash", "account_id", "key_id", "updated_at")
]


def _event(row: Any) -> RecordedEvent:
    return RecordedEvent(*row)


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
            yield checked_event(row)

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

    def audit_rows_by_position(self, conn: Connection, upto: int | None = None) -> Generator[AuditRow, None, None]:
        """Every event (up to position ``upto``) as an :data:`AuditRow` in ``position`` order, streamed:
        what a digest hashes."""
        if conn.dialect.name != "sqlite":
            query = sa.select(*_EVENT_COLUMNS).order_by(events_table.c.position)
            if upto is not None:
                query = query.where(events_table.c.position <= upto)
            for row in _streamed(conn, query, 2000):
                yield _pg_audit_row(row)
            return
        dbapi: Any = conn.connection.driver_connection
        if upto is None:
            yield from _hashing_rows(dbapi.execute(_AUDIT_SCAN + " ORDER BY position"))
        else:
            yield from _hashing_rows(dbapi.execute(_AUDIT_SCAN + " WHERE position <= ? ORDER BY position", (upto,)))

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
                yield strict_sqlite_event(row)
        finally:
            _close(cursor)

    def stream_exists(self, conn: Connection, stream_id: str) -> bool:
        query = sa.select(sa.literal(1)).where(events_table.c.stream_id == stream_id).limit(1)
        return conn.execute(query).first() is not None


def sqlite_time(instant: datetime) -> str:
    """How SQLAlchemy stores an aware UTC datetime on SQLite (naive, microseconds always written)."""
    return instant.replace(tzinfo=None).isoformat(" ", "microseconds")


def parse_sqlite_time(text: str) -> datetime:
    """The aware UTC datetime of a stored SQLite time."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
