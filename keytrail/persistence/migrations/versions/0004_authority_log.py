"""The key authority's actions in the log: each account, key and token the tables hold gets its stream.

From this revision on, every authority action is an event of the hash-chained log (see
``keytrail.states.authority``). The accounts, keys and tokens made before it are recorded
now, dated at the upgrade and by no actor (who acted then is not known), each carrying its
original times (``created_at``, ``expires_at``, ``revoked_at``, ``locked_until``) and
``recorded_by_upgrade``: appended, never back-dated, so a digest or checkpoint kept before the
upgrade still checks. A key whose stream exists but whose row says revoked gets its revocation.
No table changes.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from keytrail.events import iso_utc
from keytrail.persistence.authority_store import StoredAuthorityRecords, accounts, tokens
from keytrail.portal.records import Account, AuthorityEvent
from keytrail.states.authority import MAX_TOKEN_NAME

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_meta = sa.table("keytrail_meta", sa.column("name", sa.String), sa.column("value", sa.Text))
_streams = sa.table("streams", sa.column("stream_id", sa.String), sa.column("state", sa.String))


def _recorded(event: AuthorityEvent, now: datetime, **original: datetime) -> AuthorityEvent:
    """Dated at the upgrade, by no actor (who did it then is not known), its original times in its data."""
    times = {name: iso_utc(value) for name, value in original.items()}
    return replace(event, at=now, actor=None, data={**event.data, **times, "recorded_by_upgrade": True})


def upgrade() -> None:
    conn = op.get_bind()
    records = StoredAuthorityRecords(conn)
    now = datetime.now(UTC)
    logged = dict(conn.execute(sa.select(_streams.c.stream_id, _streams.c.state)).all())
    account_rows = sa.select(
        accounts.c.account_id, accounts.c.email, accounts.c.company, accounts.c.created_at, accounts.c.locked_until
    )
    for account_id, email, company, created_at, locked_until in conn.execute(account_rows).all():
        if f"@account:{account_id}" in logged:
            continue
        account = Account(account_id, email, company, created_at)
        records.record(_recorded(AuthorityEvent.account_created(account, None, None), now, created_at=created_at))
        if locked_until is not None:  # a lockout, lapsed or not: the table and the log must agree on it
            locked = AuthorityEvent.account_moved("account_locked", account_id, None, now, locked_until=locked_until)
            records.record(_recorded(locked, now))
    for key in records.all_keys():
        state = logged.get(f"@key:{key.key_id}")
        if state is None:
            records.record(_recorded(AuthorityEvent.key_generated(key, None, None), now))
        if key.revoked_at is not None and state in (None, "Active"):
            records.record(_recorded(AuthorityEvent.key_revoked(key, None, key.revoked_at), now))
    token_rows = sa.select(tokens.c.name, tokens.c.scope, tokens.c.token_hash, tokens.c.created_at, tokens.c.revoked_at)
    for name, scope, token_hash, created_at, revoked_at in conn.execute(token_rows).all():
        if f"@token:{name}" in logged or len(name) > MAX_TOKEN_NAME:
            continue  # a name too long for a stream id stays unrecorded: verify names it; revoke and replace it
        created = {"name": name, "scope": scope, "token_hash": token_hash, "created_at": iso_utc(created_at)}
        records.record(_recorded(AuthorityEvent("token", name, "token_created", created, None, now), now))
        if revoked_at is not None:
            revoked = {"name": name, "revoked_at": iso_utc(revoked_at)}
            records.record(_recorded(AuthorityEvent("token", name, "token_revoked", revoked, None, now), now))
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value="4"))


def downgrade() -> None:
    # The events stay: the log is append-only, and revision 0003 reads them as streams it does not list.
    op.execute(_meta.update().where(_meta.c.name == "schema_version").values(value="3"))
