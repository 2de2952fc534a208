"""Subscriptions: a named consumer's checkpoint in the feed.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_meta = sa.table("keytrail_meta", sa.column("name", sa.String), sa.column("value", sa.Text))


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value="2"))


def downgrade() -> None:
    op.drop_table("subscriptions")
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value="1"))
