"""alembic's environment for keytrail's own migrations: run on the connection keytrail hands it.

The version table is keytrail's own (``keytrail_alembic_version``), so a host application's
alembic, and its ``alembic_version`` table, is never disturbed. Batch mode lets a migration
alter a table on SQLite (which rebuilds it).
"""

from __future__ import annotations

from alembic import context

from keytrail.persistence.migrations import VERSION_TABLE, target_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata(),
    version_table=VERSION_TABLE,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
