"""The key authority's actions in the log: each account, key and token the tables hold gets its stream.

From this revision on, every authority action is an event of the hash-chained log (see
``keytrail.states.authority``). The accounts, keys and tokens made before it are recorded
now, dated at the upgrade and by the actor ``keytrail db upgrade``, each carrying its
original times (``created_at``, ``expires_at``, ``revoked_at``) and ``recorded_by_upgrade``:
appended, never back-dated, so a digest or checkpoint kept before the upgrade still checks.
No table changes.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from keytrail.persistence.authority_store import StoredAuthorityRecords, accounts, api_keys, tokens
from keytrail.portal.records import Account, ApiKey, AuthorityEvent

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_meta = sa.table("keytrail_meta", sa.column("name", sa.String), sa.column("value", sa.Text))
_streams = sa.table("streams", sa.column("stream_id", sa.String))
_ACTOR = "keytrail db upgrade"


def _recorded(event: AuthorityEvent, now: datetime) -> AuthorityEvent:
    return replace(event, at=now, actor=_ACTOR, data={**event.data, "recorded_by_upgrade": True})


def upgrade() -> None:
    conn = op.get_bind()
    records = StoredAuthorityRecords(conn)
    now = datetime.now(UTC)
    logged = {row[0] for row in conn.execute(sa.select(_streams.c.stream_id))}
    for row in conn.execute(
        sa.select(accounts.c.account_id, accounts.c.email, accounts.c.company, accounts.c.created_at)
    ).all():
        if f"@account:{row[0]}" not in logged:
            account = Account(row[0], row[1], row[2], row[3])
            records.record(_recorded(AuthorityEvent.account_created(account, None, None), now))
    keys = sa.select(
        api_keys.c.key_id,
        api_keys.c.account_id,
        api_keys.c.description,
        api_keys.c.fingerprint,
        api_keys.c.hint,
        api_keys.c.created_at,
        api_keys.c.expires_at,
        api_keys.c.revoked_at,
    )
    for found in conn.execute(keys).all():
        key = ApiKey(*found)
        if f"@key:{key.key_id}" in logged:
            continue
        records.record(_recorded(AuthorityEvent.key_generated(key, None, None), now))
        if key.revoked_at is not None:
            records.record(_recorded(AuthorityEvent.key_revoked(key, None, key.revoked_at), now))
    for name, scope, created_at, revoked_at in conn.execute(
        sa.select(tokens.c.name, tokens.c.scope, tokens.c.created_at, tokens.c.revoked_at)
    ).all():
        if f"@token:{name}" in logged:
            continue
        created = {
            "name": name,
            "scope": scope,
            "created_at": created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        }
        records.record(_recorded(AuthorityEvent("token", name, "token_created", created, None, now), now))
        if revoked_at is not None:
            revoked = {"name": name, "revoked_at": revoked_at.astimezone(UTC).isoformat(timespec="microseconds")}
            records.record(_recorded(AuthorityEvent("token", name, "token_revoked", revoked, None, now), now))
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value="4"))


def downgrade() -> None:
    # The events stay: the log is append-only, and revision 0003 reads them as streams it does not list.
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value="3"))
