"""The command path's statements, one adapter per backend, each statement written once and prepared by its driver.

Every command of the engine runs the same few statements on the driver connection under its
transaction: one joined read of everything it decides over (the stream's projection, its
saved key, the authority's record of that key and, with an idempotency key, the event of an
earlier use), then the event insert and the projection's insert or move, and for
``save_config`` the saved key's upsert. SQLite's ``sqlite3`` and psycopg both keep a prepared
statement per SQL text (psycopg once a text has run a few times), so a statement spelled
once here is parsed once per connection.

The adapters differ in how their driver spells parameters, times and JSON, in the formats
SQLAlchemy writes for the same columns (the storage contract test holds them to it), and in
PostgreSQL's row lock (SQLite's writer holds the database's one write lock from its BEGIN).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar

from keytrail.errors import ConcurrencyConflict, CorruptProjection, IntegrityViolation
from keytrail.events import GENESIS_HASH, PendingEvent, RecordedEvent, event_hash
from keytrail.persistence.stored import (
    SQLITE_TIME_FORMAT,
    checked_event,
    is_sqlite_time,
    read_sqlite_time,
    shown,
    strict_sqlite_event,
    time_flaw,
)
from keytrail.persistence.tables import SCHEMA_VERSION
from keytrail.portal.records import ApiKey

__all__ = ["CommandSql", "Loaded", "PostgresCommandSql", "SavedConfig", "SqliteCommandSql", "StreamHead", "command_sql"]


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


@dataclass(frozen=True)
class Loaded:
    """What a command decides over, read in one statement at its start."""

    head: StreamHead | None
    config: SavedConfig | None
    # The authority's record of the saved key (joined by fingerprint): None when nothing is
    # saved or the authority has no key with that fingerprint.
    saved_key: ApiKey | None
    # The event of an earlier use of the command's idempotency key, if any.
    prior: RecordedEvent | None
    # Why the authority's record of the saved key could not be read (a damaged row): raised only
    # where a verdict needs the record, so that every other command (the fix included) still runs.
    saved_key_flaw: IntegrityViolation | None = None


# The joined read's columns: the projection (0-6), the saved key (7-10), the authority's record
# of it (11-18) and, when an idempotency key is looked up, the event of its earlier use (19-32).
_LOAD = (
    "SELECT s.state, s.reason, s.version, s.head_hash, s.account_id, s.key_id, s.updated_at, "
    "c.ciphertext, c.fingerprint, c.hint, c.saved_at, "
    "k.key_id, k.account_id, k.description, k.fingerprint, k.hint, k.created_at, k.expires_at, k.revoked_at{extra} "
    "FROM (SELECT {sid} AS sid) AS q "
    "LEFT JOIN streams AS s ON s.stream_id = q.sid "
    "LEFT JOIN store_config AS c ON c.stream_id = q.sid "
    "LEFT JOIN api_keys AS k ON k.fingerprint = c.fingerprint{join}"
)
_PRIOR_COLUMNS = (
    ", e.position, e.stream_id, e.version, e.trigger, e.source, e.dest, e.reason, e.data, e.actor, "
    "e.occurred_at, e.idempotency_key, e.schema_version, e.prev_hash, e.hash"
)
# Looked up under the digest and, for keys from before digests, the raw key (the same value twice otherwise).
_PRIOR_JOIN = " LEFT JOIN events AS e ON e.stream_id = q.sid AND e.idempotency_key IN (?, ?)"
_INSERT_EVENT = (
    "INSERT INTO events (stream_id, version, trigger, source, dest, reason, data, actor, occurred_at, "
    "idempotency_key, schema_version, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "RETURNING position"
)
_INSERT_HEAD = (
    "INSERT INTO streams (state, reason, version, head_hash, account_id, key_id, updated_at, stream_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_MOVE_HEAD = (
    "UPDATE streams SET state = ?, reason = ?, version = ?, head_hash = ?, account_id = ?, key_id = ?, "
    "updated_at = ? WHERE stream_id = ? AND version = ?"
)
_SAVE_CONFIG = (
    "INSERT INTO store_config (stream_id, ciphertext, fingerprint, hint, saved_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (stream_id) DO UPDATE SET ciphertext = excluded.ciphertext, "
    "fingerprint = excluded.fingerprint, hint = excluded.hint, saved_at = excluded.saved_at"
)


class CommandSql:
    """A backend's statements for the command path, and how its driver spells what they carry."""

    placeholder: ClassVar[str] = "?"
    stream_param: ClassVar[str] = "?"
    # Run first in a write transaction to become the stream's only writer; None where BEGIN already did.
    lock_sql: ClassVar[str | None] = None
    integrity_errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        def spelled(sql: str) -> str:
            return sql.replace("?", self.placeholder)

        plain = _LOAD.format(extra="", sid=self.stream_param, join="")
        prior = _LOAD.format(extra=_PRIOR_COLUMNS, sid=self.stream_param, join=_PRIOR_JOIN)
        self.load_sql = spelled(plain)
        self.load_prior_sql = spelled(prior)
        self.lock = None if self.lock_sql is None else spelled(self.lock_sql)
        self.insert_event = spelled(_INSERT_EVENT)
        self.insert_head = spelled(_INSERT_HEAD)
        self.move_head = spelled(_MOVE_HEAD)
        self.save_config_sql = spelled(_SAVE_CONFIG)

    # -- what each driver takes and returns ----------------------------------------------------

    def time_param(self, instant: datetime) -> Any:
        """An aware UTC datetime as the driver takes it for a time column."""
        return instant

    def data_param(self, data: dict[str, Any]) -> Any:
        return data

    def head(self, stream: str, row: Any) -> StreamHead:
        """The projection columns of the joined read (0-6); CorruptProjection when damaged."""
        return StreamHead(stream, row[0], row[1], row[2], row[3], row[4], row[5], row[6])

    def config(self, stream: str, row: Any) -> SavedConfig:
        return SavedConfig(stream, row[7], row[8], row[9], row[10])

    def key_record(self, row: Any) -> ApiKey:
        return ApiKey(row[11], row[12], row[13], row[14], row[15], row[16], row[17], row[18])

    def prior(self, row: Any) -> RecordedEvent:
        return checked_event(row[19:33])  # jsonb holds any JSON value; keytrail writes only objects

    # -- the statements ----------------------------------------------------------------------------

    def load(self, dbapi: Any, stream: str, lookup: tuple[str, str] | None, *, lock: bool) -> Loaded:
        """Everything a command decides over, in one statement (after the stream's lock when ``lock``)."""
        if lock and self.lock is not None:  # first: commands on one stream queue here
            dbapi.execute(self.lock, (stream,))
        if lookup is None:
            row = dbapi.execute(self.load_sql, (stream,)).fetchone()
        else:
            row = dbapi.execute(self.load_prior_sql, (stream, *lookup)).fetchone()
        head = None if row[2] is None and row[0] is None else self.head(stream, row)
        config = None if row[7] is None else self.config(stream, row)
        saved_key, flaw = None, None
        if row[11] is not None:
            try:
                saved_key = self.key_record(row)
            except IntegrityViolation as exc:
                flaw = exc
        prior = None if lookup is None or row[19] is None else self.prior(row)
        return Loaded(head, config, saved_key, prior, flaw)

    def append(self, dbapi: Any, stream: str, head: StreamHead | None, event: PendingEvent) -> RecordedEvent:
        """Append the next event of the stream and move its projection, or raise ConcurrencyConflict."""
        version = 1 if head is None else head.version + 1
        prev_hash = GENESIS_HASH if head is None else head.head_hash
        body = event.hashed_fields(stream, version, SCHEMA_VERSION)
        digest = event_hash(prev_hash, body)
        at = self.time_param(event.occurred_at)
        account_id = event.account_id if event.account_id is not None else (head.account_id if head else None)
        key_id = event.key_id if event.key_id is not None else (head.key_id if head else None)
        projection = (event.dest, event.reason, version, digest, account_id, key_id, at, stream)
        try:
            position = self._insert(
                dbapi,
                (
                    stream,
                    version,
                    event.trigger,
                    event.source,
                    event.dest,
                    event.reason,
                    self.data_param(event.data),
                    event.actor,
                    at,
                    event.idempotency_key,
                    SCHEMA_VERSION,
                    prev_hash,
                    digest,
                ),
            )
            if head is None:
                dbapi.execute(self.insert_head, projection)
            elif dbapi.execute(self.move_head, (*projection, head.version)).rowcount != 1:
                raise ConcurrencyConflict(
                    f"{stream} moved past version {head.version} while this command ran; nothing was written."
                )
        except self.integrity_errors as exc:
            raise ConcurrencyConflict(
                f"Another writer appended version {version} of {stream} first; nothing was written."
            ) from exc
        return RecordedEvent(position, **{**body, "occurred_at": event.occurred_at}, prev_hash=prev_hash, hash=digest)

    def _insert(self, dbapi: Any, values: tuple[Any, ...]) -> int:
        """Insert an event row; its position."""
        position: int = dbapi.execute(self.insert_event, values).fetchone()[0]
        return position

    def save_config(self, dbapi: Any, stream: str, ciphertext: str, fingerprint: str, hint: str, at: datetime) -> None:
        dbapi.execute(self.save_config_sql, (stream, ciphertext, fingerprint, hint, self.time_param(at)))


def _key_time(stored: Any) -> datetime:
    """A time of the authority's key row as SQLite stores it, checked as SQLAlchemy's reads check it."""
    if not is_sqlite_time(stored):
        raise IntegrityViolation(
            f"A stored time is {shown(stored)}, not as keytrail writes a time ({SQLITE_TIME_FORMAT}); "
            "the database was changed outside keytrail."
        )
    return datetime.fromisoformat(stored).replace(tzinfo=UTC)


class SqliteCommandSql(CommandSql):
    """SQLite: times stored as ``YYYY-MM-DD HH:MM:SS.ffffff`` naive UTC, ``data`` as ``json.dumps`` text."""

    integrity_errors = (sqlite3.IntegrityError,)

    def _insert(self, dbapi: Any, values: tuple[Any, ...]) -> int:
        # position is the rowid: no RETURNING to fetch.
        position: int = dbapi.execute(self._insert_no_returning, values).lastrowid
        return position

    def __init__(self) -> None:
        super().__init__()
        self._insert_no_returning = self.insert_event.removesuffix(" RETURNING position")

    def time_param(self, instant: datetime) -> Any:
        return instant.replace(tzinfo=None).isoformat(" ", "microseconds")

    data_param = staticmethod(json.dumps)  # type: ignore[assignment]

    def head(self, stream: str, row: Any) -> StreamHead:
        state, reason, version, head_hash, account_id, key_id, updated = row[:7]
        if type(version) is not int:
            raise CorruptProjection(stream, f"version is stored as {shown(version)}, not a whole number.")
        if type(state) is not str or type(head_hash) is not str:
            raise CorruptProjection(
                stream, f"state or head_hash is stored as {shown(state)}, {shown(head_hash)}, not text."
            )
        try:
            previous = read_sqlite_time(updated, "updated_at")
        except ValueError as exc:
            raise CorruptProjection(stream, str(exc)) from None
        return StreamHead(stream, state, reason, version, head_hash, account_id, key_id, previous)

    def config(self, stream: str, row: Any) -> SavedConfig:
        if not is_sqlite_time(row[10]):
            raise CorruptProjection(stream, "its saved key's " + time_flaw(row[10], "saved_at").message)
        return SavedConfig(stream, row[7], row[8], row[9], datetime.fromisoformat(row[10]).replace(tzinfo=UTC))

    def key_record(self, row: Any) -> ApiKey:
        revoked = None if row[18] is None else _key_time(row[18])
        return ApiKey(row[11], row[12], row[13], row[14], row[15], _key_time(row[16]), _key_time(row[17]), revoked)

    def prior(self, row: Any) -> RecordedEvent:
        return strict_sqlite_event(row[19:33])


class PostgresCommandSql(CommandSql):
    """PostgreSQL through psycopg 3: ``timestamptz`` takes aware datetimes, ``data`` is ``jsonb``.

    The projection row is locked by a statement of its own, not by ``FOR UPDATE OF s`` on the
    joined read: a read that waits for the lock gets the stream's new row but, from the same
    statement's older snapshot, the saved key as it was before the holder's ``save_config``.
    Locking first, the read is a new statement with a new snapshot, and sees that key.
    """

    placeholder = "%s"
    stream_param = "CAST(? AS TEXT)"
    lock_sql = "SELECT 1 FROM streams WHERE stream_id = ? FOR UPDATE"

    def __init__(self) -> None:
        import psycopg
        from psycopg.types.json import Jsonb

        super().__init__()
        self._jsonb = Jsonb
        self.integrity_errors = (psycopg.errors.IntegrityError,)

    def data_param(self, data: dict[str, Any]) -> Any:
        return self._jsonb(data)


@cache
def command_sql(dialect: str) -> CommandSql:
    """The command path's adapter for a backend (one per backend and process: it holds only statements)."""
    return SqliteCommandSql() if dialect == "sqlite" else PostgresCommandSql()
