"""The schema: SQLModel classes on keytrail's own registry, so a host application's
``SQLModel.metadata`` never picks up keytrail's tables or the other way round.

Column names are part of the public contract: auditors query ``events`` with plain SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from keytrail.errors import IntegrityViolation
from keytrail.persistence.stored import SQLITE_TIME_FORMAT, is_sqlite_time, shown

__all__ = [
    "DATABASE_SCHEMA",
    "SCHEMA_VERSION",
    "ApiTokenRow",
    "ConfigRow",
    "EventRow",
    "KeytrailTable",
    "MetaRow",
    "StreamRow",
    "SubscriptionRow",
    "UTCDateTime",
]

# The format of an event row (its ``schema_version`` column, which the hash chain covers).
SCHEMA_VERSION = 1
# The database's schema: ``keytrail_meta.schema_version``, and alembic's revision 000N (see persistence.migrations).
DATABASE_SCHEMA = 4


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (which stores no zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("keytrail stores only timezone-aware datetimes.")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        """On SQLite, the stored text is checked to be a time as keytrail writes it: SQLAlchemy's own
        parser raises a bare ValueError on anything else, a crash instead of a finding."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            if not is_sqlite_time(value):
                raise IntegrityViolation(
                    f"A stored time is {shown(value)}, not as keytrail writes a time ({SQLITE_TIME_FORMAT}); "
                    "the database was changed outside keytrail."
                )
            return datetime.fromisoformat(value).replace(tzinfo=UTC)

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_JSON: Any = JSON().with_variant(JSONB(), "postgresql")
_POSITION: Any = BigInteger().with_variant(Integer(), "sqlite")
# Byte order on PostgreSQL too, so that (stream_id, version) scans match SQLite and Python order.
_STREAM_ID: Any = String(128).with_variant(String(128, collation="C"), "postgresql")


class KeytrailTable(SQLModel, registry=registry()):
    """Base of keytrail's tables; its ``metadata`` holds only them."""


class EventRow(KeytrailTable, table=True):
    """One accepted command. Append-only; chained per stream by ``prev_hash`` and ``hash``."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("stream_id", "version", name="uq_events_stream_version"),
        # Partial: most events carry no idempotency key, and a row outside the index costs no index page
        # write in the commit (one 4 KiB WAL frame fewer per page view).
        Index(
            "uq_events_stream_idempotency",
            "stream_id",
            "idempotency_key",
            unique=True,
            sqlite_where=text("idempotency_key IS NOT NULL"),
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    position: int | None = Field(default=None, sa_column=Column(_POSITION, primary_key=True, autoincrement=True))
    stream_id: str = Field(sa_column=Column(_STREAM_ID, nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    trigger: str = Field(sa_column=Column(String(32), nullable=False))
    source: str = Field(sa_column=Column(String(32), nullable=False))
    dest: str = Field(sa_column=Column(String(32), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    data: dict[str, Any] = Field(sa_column=Column(_JSON, nullable=False))
    actor: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    schema_version: int = Field(sa_column=Column(Integer, nullable=False))
    prev_hash: str = Field(sa_column=Column(String(64), nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class StreamRow(KeytrailTable, table=True):
    """The projection: each onboarding's current state, written in the same transaction as its event."""

    __tablename__ = "streams"

    stream_id: str = Field(sa_column=Column(_STREAM_ID, primary_key=True))
    state: str = Field(sa_column=Column(String(32), nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    head_hash: str = Field(sa_column=Column(String(64), nullable=False))
    account_id: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    key_id: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class ConfigRow(KeytrailTable, table=True):
    """The store configuration's "Production Api key" per onboarding, sealed at rest."""

    __tablename__ = "store_config"

    stream_id: str = Field(sa_column=Column(_STREAM_ID, primary_key=True))
    ciphertext: str = Field(sa_column=Column(Text, nullable=False))
    fingerprint: str = Field(sa_column=Column(String(80), nullable=False))
    hint: str = Field(sa_column=Column(String(8), nullable=False))
    saved_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class MetaRow(KeytrailTable, table=True):
    """What the database is: the application, its schema version and the encryption key check."""

    __tablename__ = "keytrail_meta"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    value: str = Field(sa_column=Column(Text, nullable=False))


class ApiTokenRow(KeytrailTable, table=True):
    """A token of the HTTP service (``keytrail token create``): its name, scope and a hash, never the token.

    A table of its own, so that a database of an earlier release is upgraded by adding it.
    Names are never reused (a revoked token keeps its row), so an actor in the log names one token.
    """

    __tablename__ = "api_tokens"

    name: str = Field(sa_column=Column(String(128), primary_key=True))
    scope: str = Field(sa_column=Column(String(16), nullable=False))
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class SubscriptionRow(KeytrailTable, table=True):
    """A named subscription's checkpoint: the position up to which its handler has returned."""

    __tablename__ = "subscriptions"

    name: str = Field(sa_column=Column(String(128), primary_key=True))
    position: int = Field(sa_column=Column(_POSITION, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
