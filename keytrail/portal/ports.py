"""The port the engine calls to verify a saved key, so another key authority can be plugged in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from sqlalchemy.engine import Connection

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


@runtime_checkable
class KeyVerifier(Protocol):
    """Answers whether a saved key verifies at ``at``; may be remote, so it runs outside any transaction."""

    def verify(self, saved: SavedKey | None, at: datetime) -> Verdict: ...


@runtime_checkable
class TransactionalKeyVerifier(KeyVerifier, Protocol):
    """A verifier in keytrail's own database: the engine asks it inside the command's transaction."""

    def verify_in(self, conn: Connection, saved: SavedKey | None, at: datetime) -> Verdict: ...
