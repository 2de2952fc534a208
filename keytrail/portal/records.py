"""The key authority's records: what storage hands the portal's rules and what they hand back.

Plain frozen dataclasses that import nothing but the event definition's time format, so that
persistence can build them without importing any portal logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keytrail.events import iso_utc

__all__ = ["Account", "AccountRecord", "ApiKey", "AuthorityEvent", "IssuedKey", "KeyRecord", "SignInAttempt"]


@dataclass(frozen=True)
class Account:
    """A company account (never its password hash)."""

    account_id: str
    email: str
    company: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The ``account create --json`` object."""
        return {
            "account_id": self.account_id,
            "email": self.email,
            "company": self.company,
            "created_at": iso_utc(self.created_at),
        }


@dataclass(frozen=True)
class AccountRecord:
    """An account as stored, with what sign-in decides over: its password hash and lockout."""

    account: Account
    password_hash: str = field(repr=False)
    locked_until: datetime | None
    failed_sign_ins: int = 0


@dataclass(frozen=True)
class ApiKey:
    """What the API Portal lists for a key: never the key itself."""

    key_id: str
    account_id: str
    description: str
    fingerprint: str
    hint: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def status(self, at: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if at >= self.expires_at else "active"

    def as_dict(self, at: datetime) -> dict[str, Any]:
        """The key as ``keys list --json`` prints it, its ``status`` as of ``at``."""
        return {
            "key_id": self.key_id,
            "description": self.description,
            "hint": self.hint,
            "fingerprint": self.fingerprint,
            "created_at": iso_utc(self.created_at),
            "expires_at": iso_utc(self.expires_at),
            "revoked_at": None if self.revoked_at is None else iso_utc(self.revoked_at),
            "status": self.status(at),
        }


@dataclass(frozen=True)
class KeyRecord:
    """A key as stored: what the portal lists, and the key sealed at rest (the portal copies it again)."""

    info: ApiKey
    ciphertext: str = field(repr=False)


@dataclass(frozen=True)
class IssuedKey:
    """A key handed to its owner: the one place a plaintext key leaves the authority."""

    key_id: str
    key: str = field(repr=False)
    fingerprint: str
    hint: str
    description: str
    expires_at: datetime


@dataclass(frozen=True)
class SignInAttempt:
    """One sign-in attempt as auditors see it."""

    email: str
    account_id: str | None
    stream_id: str | None
    outcome: str
    actor: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class AuthorityEvent:
    """An action of the authority, to be appended to its entity's stream of the log (see
    :mod:`keytrail.states.authority`). ``data`` holds ids, fingerprints, hints and times: never a secret."""

    kind: str
    entity_id: str | None
    action: str
    data: dict[str, Any]
    actor: str | None
    at: datetime

    @classmethod
    def account_created(cls, account: Account, actor: str | None, onboarding: str | None) -> AuthorityEvent:
        data = {
            "account_id": account.account_id,
            "email": account.email,
            "company": account.company,
            "onboarding": onboarding,
        }
        return cls("account", account.account_id, "account_created", data, actor, account.created_at)

    @classmethod
    def account_moved(
        cls, action: str, account_id: str, actor: str | None, at: datetime, **facts: Any
    ) -> AuthorityEvent:
        """``sign_in_failed`` (outcome, onboarding), ``account_locked`` (locked_until, failed_sign_ins,
        onboarding) or ``account_unlocked`` (locked_until, onboarding)."""
        shown = {name: iso_utc(value) if isinstance(value, datetime) else value for name, value in facts.items()}
        return cls("account", account_id, action, {"account_id": account_id, **shown}, actor, at)

    @classmethod
    def key_generated(cls, key: ApiKey, actor: str | None, onboarding: str | None) -> AuthorityEvent:
        data = {
            "key_id": key.key_id,
            "account_id": key.account_id,
            "description": key.description,
            "fingerprint": key.fingerprint,
            "hint": key.hint,
            "created_at": iso_utc(key.created_at),
            "expires_at": iso_utc(key.expires_at),
            "onboarding": onboarding,
        }
        return cls("key", key.key_id, "key_generated", data, actor, key.created_at)

    @classmethod
    def key_revoked(cls, key: ApiKey, actor: str | None, at: datetime) -> AuthorityEvent:
        data = {"key_id": key.key_id, "account_id": key.account_id, "revoked_at": iso_utc(at)}
        return cls("key", key.key_id, "key_revoked", data, actor, at)
