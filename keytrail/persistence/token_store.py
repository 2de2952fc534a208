"""The HTTP service's API tokens in keytrail's database: all of their SQL, none of their rules.

Rows hold a token's name, scope and hash; the rules (what a scope allows, how a token is
hashed) live in ``keytrail.engine.tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from keytrail.events import iso_utc
from keytrail.persistence.authority_store import StoredAuthorityRecords
from keytrail.persistence.database import Database
from keytrail.persistence.tables import ApiTokenRow
from keytrail.portal.records import AuthorityEvent

__all__ = ["StoredToken", "TokenStore"]

_tokens: sa.Table = ApiTokenRow.__table__  # type: ignore[attr-defined]
_LISTED = (_tokens.c.name, _tokens.c.scope, _tokens.c.created_at, _tokens.c.revoked_at)


@dataclass(frozen=True)
class StoredToken:
    """A token as listed: never its hash, never the token."""

    name: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None


class TokenStore:
    """Reads and writes ``api_tokens`` in transactions of its own."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, name: str, scope: str, token_hash: str, at: datetime, actor: str | None = None) -> bool:
        """Insert a token and its ``token_created`` event; False, writing nothing, when the name is taken
        (by a live or a revoked token)."""
        with self._db.write() as conn:
            if conn.execute(sa.select(_tokens.c.name).where(_tokens.c.name == name)).first() is not None:
                return False
            conn.execute(sa.insert(_tokens).values(name=name, scope=scope, token_hash=token_hash, created_at=at))
            # The hash (of 256 random bits: it reveals nothing) lets verify notice a token swapped in the table.
            created = {"name": name, "scope": scope, "token_hash": token_hash, "created_at": iso_utc(at)}
            StoredAuthorityRecords(conn).record(AuthorityEvent("token", name, "token_created", created, actor, at))
        return True

    def by_hash(self, token_hash: str) -> StoredToken | None:
        with self._db.read() as conn:
            row = conn.execute(sa.select(*_LISTED).where(_tokens.c.token_hash == token_hash)).first()
        return None if row is None else StoredToken(row[0], row[1], row[2], row[3])

    def listed(self) -> list[StoredToken]:
        with self._db.read() as conn:
            rows = conn.execute(sa.select(*_LISTED).order_by(_tokens.c.name)).all()
        return [StoredToken(row[0], row[1], row[2], row[3]) for row in rows]

    def revoke(self, name: str, at: datetime, actor: str | None = None) -> StoredToken | None:
        """Mark the token revoked (the first time is kept); None when there is no token of that name."""
        with self._db.write() as conn:
            revoked = conn.execute(
                sa.update(_tokens).where(_tokens.c.name == name, _tokens.c.revoked_at.is_(None)).values(revoked_at=at)
            ).rowcount
            if revoked == 1:
                event = AuthorityEvent(
                    "token", name, "token_revoked", {"name": name, "revoked_at": iso_utc(at)}, actor, at
                )
                StoredAuthorityRecords(conn).record(event)
            row = conn.execute(sa.select(*_LISTED).where(_tokens.c.name == name)).first()
        return None if row is None else StoredToken(row[0], row[1], row[2], row[3])
