"""Upgrading a database's schema: what ``keytrail db upgrade``, ``db current`` and ``db history`` do.

Opening a database never migrates it (an older schema is refused, naming ``keytrail db
upgrade``); these run the migrations shipped in the package, and need no encryption key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keytrail.persistence import Database
from keytrail.persistence.tables import DATABASE_SCHEMA

__all__ = ["SchemaState", "current", "history", "upgrade"]


@dataclass(frozen=True)
class SchemaState:
    """A database's schema revision against the newest this keytrail knows."""

    database: str
    revision: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.revision == self.head

    def as_dict(self) -> dict[str, Any]:
        return {"database": self.database, "revision": self.revision, "head": self.head, "up_to_date": self.up_to_date}


def _head() -> str:
    return f"{DATABASE_SCHEMA:04d}"


def current(url: str) -> SchemaState:
    """The revision ``url``'s database is at (None: it holds no keytrail schema yet)."""
    db = Database(url)
    try:
        return SchemaState(db.shown, db.revision(), _head())
    finally:
        db.dispose()


def upgrade(url: str, target: str = "head") -> tuple[SchemaState, SchemaState]:
    """Migrate ``url``'s database to ``target`` (default: the newest revision), in one transaction; before and after."""
    db = Database(url)
    try:
        before, after = db.migrate(target)
        return SchemaState(db.shown, before, _head()), SchemaState(db.shown, after, _head())
    finally:
        db.dispose()


def history() -> list[tuple[str, str | None, str]]:
    """Every revision as (revision, the one before it, what it does), oldest first."""
    from keytrail.persistence import migrations

    return [(r.revision, r.down_revision, r.doc) for r in migrations.history()]
