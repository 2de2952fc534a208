"""The schema of keytrail 0.1.0: the event log, its projection, the saved configs, the key authority.

Revision ID: 0001
Revises:

Databases written by 0.1.0 carry no version table: ``keytrail db upgrade`` runs this revision
on them, and it creates only what such a database lacks (builds of 0.1.0 added the
``onboarding_sessions`` table and the ``idempotency_salt`` row on open), so it is safe on an
empty database and on every 0.1.0 database alike.
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_STREAM: Any = sa.String(length=128).with_variant(sa.String(length=128, collation="C"), "postgresql")
_POSITION: Any = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON: Any = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_meta = sa.table("keytrail_meta", sa.column("name", sa.String), sa.column("value", sa.Text))


def _tables() -> list[tuple[str, list[Any], list[tuple[str, list[str], dict[str, Any]]]]]:
    """(name, columns and constraints, indexes) of every 0.1.0 table, parents before children."""
    return [
        (
            "accounts",
            [
                sa.Column("account_id", sa.String(length=40), nullable=False),
                sa.Column("email", sa.String(length=254), nullable=False),
                sa.Column("company", sa.String(length=255), nullable=False),
                sa.Column("password_hash", sa.String(length=200), nullable=False),
                sa.Column("failed_sign_ins", sa.Integer(), nullable=False),
                sa.Column("locked_until", _TIME, nullable=True),
                sa.Column("created_at", _TIME, nullable=False),
                sa.PrimaryKeyConstraint("account_id"),
                sa.UniqueConstraint("email"),
            ],
            [],
        ),
        (
            "events",
            [
                sa.Column("position", _POSITION, autoincrement=True, nullable=False),
                sa.Column("stream_id", _STREAM, nullable=False),
                sa.Column("version", sa.Integer(), nullable=False),
                sa.Column("trigger", sa.String(length=32), nullable=False),
                sa.Column("source", sa.String(length=32), nullable=False),
                sa.Column("dest", sa.String(length=32), nullable=False),
                sa.Column("reason", sa.String(length=16), nullable=True),
                sa.Column("data", _JSON, nullable=False),
                sa.Column("actor", sa.String(length=128), nullable=True),
                sa.Column("occurred_at", _TIME, nullable=False),
                sa.Column("idempotency_key", sa.String(length=255), nullable=True),
                sa.Column("schema_version", sa.Integer(), nullable=False),
                sa.Column("prev_hash", sa.String(length=64), nullable=False),
                sa.Column("hash", sa.String(length=64), nullable=False),
                sa.PrimaryKeyConstraint("position"),
                sa.UniqueConstraint("stream_id", "version", name="uq_events_stream_version"),
            ],
            [
                (
                    "uq_events_stream_idempotency",
                    ["stream_id", "idempotency_key"],
                    {
                        "unique": True,
                        "sqlite_where": sa.text("idempotency_key IS NOT NULL"),
                        "postgresql_where": sa.text("idempotency_key IS NOT NULL"),
                    },
                )
            ],
        ),
        (
            "keytrail_meta",
            [
                sa.Column("name", sa.String(length=64), nullable=False),
                sa.Column("value", sa.Text(), nullable=False),
                sa.PrimaryKeyConstraint("name"),
            ],
            [],
        ),
        (
            "sign_in_attempts",
            [
                sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
                sa.Column("email", sa.String(length=254), nullable=False),
                sa.Column("account_id", sa.String(length=40), nullable=True),
                sa.Column("stream_id", sa.String(length=128), nullable=True),
                sa.Column("outcome", sa.String(length=32), nullable=False),
                sa.Column("actor", sa.String(length=128), nullable=True),
                sa.Column("occurred_at", _TIME, nullable=False),
                sa.PrimaryKeyConstraint("id"),
            ],
            [("ix_sign_in_attempts_email", ["email"], {"unique": False})],
        ),
        (
            "store_config",
            [
                sa.Column("stream_id", _STREAM, nullable=False),
                sa.Column("ciphertext", sa.Text(), nullable=False),
                sa.Column("fingerprint", sa.String(length=80), nullable=False),
                sa.Column("hint", sa.String(length=8), nullable=False),
                sa.Column("saved_at", _TIME, nullable=False),
                sa.PrimaryKeyConstraint("stream_id"),
            ],
            [],
        ),
        (
            "streams",
            [
                sa.Column("stream_id", _STREAM, nullable=False),
                sa.Column("state", sa.String(length=32), nullable=False),
                sa.Column("reason", sa.String(length=16), nullable=True),
                sa.Column("version", sa.Integer(), nullable=False),
                sa.Column("head_hash", sa.String(length=64), nullable=False),
                sa.Column("account_id", sa.String(length=40), nullable=True),
                sa.Column("key_id", sa.String(length=40), nullable=True),
                sa.Column("updated_at", _TIME, nullable=False),
                sa.PrimaryKeyConstraint("stream_id"),
            ],
            [],
        ),
        (
            "api_keys",
            [
                sa.Column("key_id", sa.String(length=40), nullable=False),
                sa.Column("account_id", sa.String(length=40), nullable=False),
                sa.Column("description", sa.String(length=255), nullable=False),
                sa.Column("fingerprint", sa.String(length=80), nullable=False),
                sa.Column("hint", sa.String(length=8), nullable=False),
                sa.Column("ciphertext", sa.Text(), nullable=False),
                sa.Column("created_at", _TIME, nullable=False),
                sa.Column("expires_at", _TIME, nullable=False),
                sa.Column("revoked_at", _TIME, nullable=True),
                sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"]),
                sa.PrimaryKeyConstraint("key_id"),
                sa.UniqueConstraint("fingerprint"),
            ],
            [("ix_api_keys_account_id", ["account_id"], {"unique": False})],
        ),
        (
            "onboarding_sessions",
            [
                sa.Column("account_id", sa.String(length=40), nullable=False),
                sa.Column("stream_id", sa.String(length=128), nullable=False),
                sa.Column("opened_at", _TIME, nullable=False),
                sa.Column("expires_at", _TIME, nullable=False),
                sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"]),
                sa.PrimaryKeyConstraint("account_id", "stream_id"),
            ],
            [],
        ),
        (
            "portal_sessions",
            [
                sa.Column("account_id", sa.String(length=40), nullable=False),
                sa.Column("opened_at", _TIME, nullable=False),
                sa.Column("expires_at", _TIME, nullable=False),
                sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"]),
                sa.PrimaryKeyConstraint("account_id"),
            ],
            [],
        ),
    ]


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    for name, columns, indexes in _tables():
        if name in present:
            continue
        op.create_table(name, *columns)
        for index, on, options in indexes:
            op.create_index(index, name, on, **options)
    bind = op.get_bind()
    meta = {row[0] for row in bind.execute(sa.select(_meta.c.name))}
    rows = {"application": "keytrail", "schema_version": "1", "idempotency_salt": secrets.token_hex(32)}
    missing = [{"name": name, "value": value} for name, value in rows.items() if name not in meta]
    if missing:
        op.bulk_insert(_meta, missing)


def downgrade() -> None:
    for name, _, indexes in reversed(_tables()):
        for index, _, _ in indexes:
            op.drop_index(index, table_name=name)
        op.drop_table(name)
