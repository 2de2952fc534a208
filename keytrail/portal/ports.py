"""The ports of the portal: how the engine verifies a saved key, and what the authority needs of storage.

No database type appears here: a plug-in verifier sees records, never a connection.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from keytrail.events import iso_utc
from keytrail.portal.records import Account, AccountRecord, ApiKey, AuthorityEvent, KeyRecord, SignInAttempt
from keytrail.states import Reason

__all__ = [
    "AuthorityRecords",
    "AuthorityStorage",
    "KeyVerifier",
    "SavedKey",
    "TransactionalKeyVerifier",
    "Verdict",
]


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


class AuthorityRecords(Protocol):
    """The authority's records inside one transaction: reads return records, writes take what the rules decided.

    Storage implements it (``keytrail.persistence.authority_store``); the portal's rules only
    ever see these records, so they neither know nor care which database holds them.
    """

    def account(self, account_id: str) -> Account | None: ...
    def account_by_email(self, email: str) -> AccountRecord | None: ...
    def sign_in_view(self, email: str, stream_id: str | None) -> tuple[AccountRecord, datetime | None] | None:
        """The account of ``email`` and the end of its session on ``stream_id`` (None without one), in one read."""
        ...

    def add_account(self, record: AccountRecord) -> bool:
        """Insert the account; False, inserting nothing, when its email is taken."""
        ...

    def add_attempt(self, attempt: SignInAttempt) -> None: ...
    def count_failure(self, account_id: str) -> int:
        """One more failed sign-in in a row; the count afterwards."""
        ...

    def lock_account(self, account_id: str, until: datetime) -> None: ...
    def set_password_hash(self, account_id: str, password_hash: str, *, replacing: str) -> None:
        """Store a new hash for the account, only if it still holds ``replacing`` (a re-hash at sign-in)."""
        ...

    def clear_failures(self, account_id: str) -> None: ...
    def session_expiry(self, account_id: str, stream_id: str) -> datetime | None: ...
    def open_session(self, account_id: str, stream_id: str, opened_at: datetime, expires_at: datetime) -> None: ...
    def end_sessions(self, email: str) -> None: ...
    def attempts(self, email: str | None) -> list[SignInAttempt]: ...
    def add_key(self, record: KeyRecord) -> None: ...
    def key(self, key_id: str) -> KeyRecord | None: ...
    def key_by_fingerprint(self, fingerprint: str) -> ApiKey | None: ...
    def keys_of(self, email: str) -> list[ApiKey]: ...
    def revoke_key(self, key_id: str, at: datetime) -> None: ...
    def sealed_keys(self) -> list[tuple[str, str]]: ...
    def reseal_key(self, key_id: str, ciphertext: str) -> None: ...
    def record(self, event: AuthorityEvent) -> None:
        """Append ``event`` to its entity's stream of the log, in this transaction."""
        ...


class AuthorityStorage(Protocol):
    """Where the authority's records live: a read or a write transaction over them."""

    @property
    def shown(self) -> str: ...
    def read(self) -> AbstractContextManager[AuthorityRecords]: ...
    def write(self) -> AbstractContextManager[AuthorityRecords]: ...


@runtime_checkable
class KeyVerifier(Protocol):
    """Answers whether a saved key verifies at ``at``; may be remote, so it runs outside any transaction."""

    def verify(self, saved: SavedKey | None, at: datetime) -> Verdict: ...


@runtime_checkable
class TransactionalKeyVerifier(KeyVerifier, Protocol):
    """A verifier over keytrail's own records: the engine asks it inside the command's transaction."""

    def verify_in(self, records: AuthorityRecords, saved: SavedKey | None, at: datetime) -> Verdict: ...
