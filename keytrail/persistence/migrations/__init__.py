"""keytrail's schema migrations (alembic), shipped in the package, with their own version table.

A database records its schema twice, and they agree: alembic's revision in
``keytrail_alembic_version`` and ``schema_version`` in ``keytrail_meta`` (revision ``000N`` is
schema version N; each revision sets it). A database made by keytrail 0.1.0 has no version
table: its ``schema_version`` 1 says it is at revision 0001, whose upgrade creates only what
is missing. Opening never migrates: :mod:`~keytrail.persistence.schema` refuses an older
schema naming ``keytrail db upgrade``, which runs :func:`upgrade`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

__all__ = [
    "HEAD",
    "VERSION_TABLE",
    "Revision",
    "current",
    "downgrade",
    "history",
    "stamp_head",
    "target_metadata",
    "upgrade",
]

VERSION_TABLE = "keytrail_alembic_version"
HEAD = "0004"


@dataclass(frozen=True)
class Revision:
    """One migration: its id, the one before it, and what it does."""

    revision: str
    down_revision: str | None
    doc: str

    @property
    def schema_version(self) -> int:
        return int(self.revision)


def target_metadata() -> sa.MetaData:
    from keytrail.persistence import authority_tables  # noqa: F401  (registers the authority's tables)
    from keytrail.persistence.tables import KeytrailTable

    return KeytrailTable.metadata


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "keytrail.persistence:migrations")
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def history() -> list[Revision]:
    """Every revision, oldest first."""
    found = [
        Revision(str(s.revision), None if s.down_revision is None else str(s.down_revision), (s.doc or "").strip())
        for s in _script().walk_revisions()
    ]
    return list(reversed(found))


def current(conn: Connection) -> str | None:
    """The database's revision: alembic's, or 0001 for a 0.1.0 database (no version table); None if empty."""
    revision = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    if revision is not None:
        return revision
    inspector = sa.inspect(conn)
    if "keytrail_meta" not in inspector.get_table_names():
        return None
    meta = sa.table("keytrail_meta", sa.column("name", sa.String), sa.column("value", sa.Text))
    version = conn.execute(sa.select(meta.c.value).where(meta.c.name == "schema_version")).scalar()
    return None if version is None else f"{int(version):04d}"


@contextmanager
def _stamped_baseline(conn: Connection) -> Iterator[None]:
    """Record a 0.1.0 database as revision 0001 before migrating it (it has no version table)."""
    if MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision() is None:
        found = current(conn)
        if found is not None:
            command.stamp(_config(conn), found)
    yield


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Migrate up to ``revision`` in the caller's transaction.

    A 0.1.0 database (no version table) is migrated from the start: revision 0001 creates only
    what it lacks, and adds the metadata rows early builds lacked.
    """
    command.upgrade(_config(conn), revision)


def downgrade(conn: Connection, revision: str) -> None:
    """Migrate down to ``revision`` ("base": nothing left) in the caller's transaction."""
    with _stamped_baseline(conn):
        command.downgrade(_config(conn), revision)


def stamp_head(conn: Connection) -> None:
    """Record a schema just created from the models as the newest revision."""
    MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).stamp(_script(), HEAD)
