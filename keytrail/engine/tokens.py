"""API tokens of the HTTP service: who may drive, audit or administer keytrail over the network.

A token is 32 random bytes (``ktt_`` and 43 URL-safe characters), printed once when created
and stored only as its SHA-256. A fast hash is enough here, unlike for passwords: with 256
bits of randomness there is no dictionary to try and no brute force to slow down, and a
fast, unsalted hash lets every request find its token with one indexed lookup. A scope is
``drive`` (the commands and status), ``audit`` (the reads of the log) or ``admin`` (both, and
the key authority's administration). A token's name is the actor of the commands it drives.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from keytrail import inputs
from keytrail.errors import InvalidInput
from keytrail.events import iso_utc
from keytrail.persistence.token_store import StoredToken, TokenStore
from keytrail.states.authority import MAX_TOKEN_NAME

if TYPE_CHECKING:
    from keytrail.engine.core import Engine

__all__ = ["SCOPES", "ApiToken", "NewToken", "Scope", "Tokens", "hash_token"]

Scope = Literal["drive", "audit", "admin"]
SCOPES: tuple[Scope, ...] = ("drive", "audit", "admin")
_SCOPE_OF: dict[str, Scope] = {scope: scope for scope in SCOPES}
_PREFIX = "ktt_"
_TOKEN_LENGTH = len(_PREFIX) + 43


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256, hex (see the module's docstring for why not a slow hash)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ApiToken:
    """A token as listed and as a request carries it: its name, scope and state, never the secret."""

    name: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, needed: Scope) -> bool:
        """``admin`` allows everything; ``drive`` and ``audit`` allow themselves."""
        return self.revoked_at is None and self.scope in ("admin", needed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scope": self.scope,
            "created_at": iso_utc(self.created_at),
            "revoked_at": None if self.revoked_at is None else iso_utc(self.revoked_at),
        }

    @classmethod
    def of(cls, stored: StoredToken) -> ApiToken:
        scope = _SCOPE_OF.get(stored.scope)
        if scope is None:  # a row keytrail did not write: allow nothing rather than guess
            return cls(stored.name, "drive", stored.created_at, stored.revoked_at or stored.created_at)
        return cls(stored.name, scope, stored.created_at, stored.revoked_at)


@dataclass(frozen=True)
class NewToken:
    """A token just created: the one place the secret exists outside the caller's hands."""

    name: str
    scope: Scope
    token: str

    def __repr__(self) -> str:
        return f"NewToken(name={self.name!r}, scope={self.scope!r})"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "scope": self.scope, "token": self.token}


class Tokens:
    """Create, list, revoke and check the HTTP service's tokens of one engine's database."""

    def __init__(self, engine: Engine) -> None:
        self._store = TokenStore(engine.database)
        self._now = engine.now

    def create(self, name: str, scope: str, *, actor: str | None = None) -> NewToken:
        """A new token named ``name`` (the actor it drives as) with ``scope``; the secret is shown only here."""
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_TOKEN_NAME or not name.isprintable():
            raise InvalidInput(
                f"A token needs a name of 1 to {MAX_TOKEN_NAME} printable characters: it is the actor of the commands "
                "it drives, and names its stream in the log."
            )
        checked = name
        chosen = _SCOPE_OF.get(scope)
        if chosen is None:
            raise InvalidInput(f"A token's scope is drive, audit or admin, not {inputs.clipped(str(scope), 40)!r}.")
        actor = inputs.check_actor(actor)
        token = _PREFIX + secrets.token_urlsafe(32)
        if not self._store.add(checked, chosen, hash_token(token), self._now(), actor):
            raise InvalidInput(
                f"A token named {checked!r} already exists (names are never reused, even once revoked); choose another."
            )
        return NewToken(checked, chosen, token)

    def listed(self) -> list[ApiToken]:
        """Every token, revoked ones included, by name: never a secret, never a hash."""
        return [ApiToken.of(stored) for stored in self._store.listed()]

    def revoke(self, name: str, *, actor: str | None = None) -> ApiToken:
        """Revoke the token: from now on every request with it is refused. Revoking twice keeps the first time."""
        checked = inputs.check_actor(name)
        actor = inputs.check_actor(actor)
        found = None if checked is None else self._store.revoke(checked, self._now(), actor)
        if found is None:
            raise InvalidInput(f"There is no token named {inputs.clipped(str(name), 80)!r} to revoke.")
        return ApiToken.of(found)

    def check(self, token: str) -> ApiToken | None:
        """The live token a request presents, or None (unknown, revoked, or not shaped like a token)."""
        if len(token) != _TOKEN_LENGTH or not token.startswith(_PREFIX) or not token.isascii():
            return None
        stored = self._store.by_hash(hash_token(token))
        if stored is None or stored.revoked_at is not None:
            return None
        found = ApiToken.of(stored)
        return found if found.revoked_at is None else None  # an unknown scope came back revoked
