"""The port the engine calls to verify a saved key, so another key authority can be plugged in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.engine import Connection

from keytrail.events import iso_utc
from keytrail.states import Reason

__all__ = ["KeyVerifier", "SavedKey", "TransactionalKeyVerifier", "Verdict"]


@dataclass(frozen=True)
class SavedKey:
    """The key saved in the store configuration: its fingerprint and hint, and a way to unseal it."""

    fingerprint: str
    hint: str
    reveal: Callable[[], str] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Verdict:
    """What the authority says of a key at one instant."""

    valid: bool
    reason: Reason | None
    key_id: str | None = None
    expires_at: datetime | None = None

    @classmethod
    def missing(cls) -> Verdict:
        return cls(False, Reason.missing)

    @classmethod
    def of_issued_key(cls, key_id: str | None, expires_at: datetime | None, revoked: bool, at: datetime) -> Verdict:
        """The embedded authority's rule for a saved key: unknown or revoked is invalid, at or past expiry expired."""
        if key_id is None or revoked or expires_at is None:
            return cls(False, Reason.invalid, key_id)
        if at >= expires_at:
            return cls(False, Reason.expired, key_id, expires_at)
        return cls(True, None, key_id, expires_at)

    def event_data(self, saved_fingerprint: str | None, saved_hint: str | None) -> dict[str, Any]:
        """What a verifying event records: the saved key's fingerprint and hint, its id and expiry if known."""
        if saved_fingerprint is None:
            return {}
        data: dict[str, Any] = {"fingerprint": saved_fingerprint, "hint": saved_hint}
        if self.key_id is not None:
            data["key_id"] = self.key_id
        if self.expires_at is not None:
            data["expires_at"] = iso_utc(self.expires_at)
        return data


@runtime_checkable
class KeyVerifier(Protocol):
    """Answers whether a saved key verifies at ``at``; may be remote, so it runs outside any transaction."""

    def verify(self, saved: SavedKey | None, at: datetime) -> Verdict: ...


@runtime_checkable
class TransactionalKeyVerifier(KeyVerifier, Protocol):
    """A verifier in keytrail's own database: the engine asks it inside the command's transaction."""

    def verify_in(self, conn: Connection, saved: SavedKey | None, at: datetime) -> Verdict: ...
