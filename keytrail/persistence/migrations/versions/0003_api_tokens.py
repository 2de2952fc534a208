"""API tokens of the HTTP service (``keytrail token create``): a name, a scope and a hash, never the token.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_meta = sa.table("keytrail_meta", sa.column("name", sa.String), sa.column("value", sa.Text))


def upgrade() -> None:
    # Builds between 0.1.0 and this revision added the table on open: create it only where it is missing.
    if "api_tokens" in sa.inspect(op.get_bind()).get_table_names():
        op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value="3"))
        return
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("token_hash"),
    )
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value="3"))


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value="2"))
