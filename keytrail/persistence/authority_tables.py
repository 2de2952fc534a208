"""The key authority's tables, in the same database and registry as the event log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Integer, String, Text
from sqlmodel import Field

from keytrail.persistence.tables import KeytrailTable, UTCDateTime

__all__ = ["AccountRow", "ApiKeyRow", "OnboardingSessionRow", "PortalSessionRow", "SignInAttemptRow"]


class AccountRow(KeytrailTable, table=True):
    """A company's Commerce account; the password only as a salted scrypt hash."""

    __tablename__ = "accounts"

    account_id: str = Field(sa_column=Column(String(40), primary_key=True))
    email: str = Field(sa_column=Column(String(254), nullable=False, unique=True))
    company: str = Field(sa_column=Column(String(255), nullable=False))
    password_hash: str = Field(sa_column=Column(String(200), nullable=False))
    failed_sign_ins: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    locked_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class ApiKeyRow(KeytrailTable, table=True):
    """An API key: sealed plaintext (the portal lets its owner copy it again), fingerprint for lookups."""

    __tablename__ = "api_keys"

    key_id: str = Field(sa_column=Column(String(40), primary_key=True))
    account_id: str = Field(sa_column=Column(String(40), ForeignKey("accounts.account_id"), nullable=False, index=True))
    description: str = Field(sa_column=Column(String(255), nullable=False))
    fingerprint: str = Field(sa_column=Column(String(80), nullable=False, unique=True))
    hint: str = Field(sa_column=Column(String(8), nullable=False))
    ciphertext: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class PortalSessionRow(KeytrailTable, table=True):
    """The sessions of keytrail 0.x, one per account and bound to no onboarding: kept so old databases
    keep their shape, never read (a session must belong to the onboarding that signed in)."""

    __tablename__ = "portal_sessions"

    account_id: str = Field(sa_column=Column(String(40), ForeignKey("accounts.account_id"), primary_key=True))
    opened_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class OnboardingSessionRow(KeytrailTable, table=True):
    """A live sign-in to the Commerce account site, opened by one onboarding's password sign-in.

    Only that onboarding may sign in again without the password, or generate and copy keys, while
    it lasts. A table of its own (not a column on ``portal_sessions``) so that a database of the
    previous version is upgraded by adding it: nothing existing is altered.
    """

    __tablename__ = "onboarding_sessions"

    account_id: str = Field(sa_column=Column(String(40), ForeignKey("accounts.account_id"), primary_key=True))
    stream_id: str = Field(sa_column=Column(String(128), primary_key=True))
    opened_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class SignInAttemptRow(KeytrailTable, table=True):
    """Every sign-in attempt, failed ones included, for auditors. Never the password."""

    __tablename__ = "sign_in_attempts"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    email: str = Field(sa_column=Column(String(254), nullable=False, index=True))
    account_id: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    stream_id: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    outcome: str = Field(sa_column=Column(String(32), nullable=False))
    actor: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
