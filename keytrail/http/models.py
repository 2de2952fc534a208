"""The bodies of the HTTP service, as the OpenAPI document describes them.

Requests name only their fields (unknown members are refused, so a misspelt ``pasword`` is
an error, not a silent sign-in without one) and leave the rules (lengths, characters) to the
engine, whose refusals come back as ``invalid-input`` problems. Responses are written by
the routes from the engine's ``as_dict`` shapes; these models document them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AccountBody",
    "AccountOut",
    "ActorBody",
    "CopyKeyBody",
    "DigestOut",
    "EventOut",
    "EventsOut",
    "ExpiringOut",
    "GatewayOut",
    "GenerateKeyBody",
    "HealthOut",
    "KeyInfoOut",
    "KeyOutcomeOut",
    "OnboardingListOut",
    "OutcomeOut",
    "ProblemOut",
    "ReadyOut",
    "RegisterBody",
    "ReplayOut",
    "SaveConfigBody",
    "SignInBody",
    "StatusOut",
    "VerifyOut",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActorBody(_Body):
    """``access`` and ``proceed``: only who drives the command (default: the token's name)."""

    actor: str | None = Field(default=None, description="Recorded in the event; defaults to the token's name.")


class SignInBody(ActorBody):
    email: str
    password: str | None = Field(default=None, description="Without it, the onboarding's live session is reused.")


class RegisterBody(ActorBody):
    email: str
    password: str
    company: str


class GenerateKeyBody(ActorBody):
    description: str = Field(examples=["Amazon Sales Channel"])


class CopyKeyBody(ActorBody):
    key_id: str | None = Field(default=None, description="Another key of the account; default: the one just generated.")


class SaveConfigBody(ActorBody):
    key: str = Field(description="The API key; asterisks only keep the saved key.")


class AccountBody(_Body):
    email: str
    password: str
    company: str


class OutcomeOut(BaseModel):
    stream: str
    trigger: str
    state: str
    reason: str | None
    version: int
    occurred_at: str
    replayed: bool


class KeyOutcomeOut(OutcomeOut):
    key: str = Field(description="The plaintext key: shown only in generate_key and copy_key responses.")
    key_id: str
    hint: str
    expires_at: str | None


class StatusOut(BaseModel):
    stream: str
    state: str
    reason: str | None
    version: int
    account_id: str | None
    key_id: str | None
    updated_at: str | None
    head_hash: str


class OnboardingListOut(BaseModel):
    onboardings: list[StatusOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


class EventOut(BaseModel):
    position: int
    version: int
    occurred_at: str
    trigger: str
    source: str
    dest: str
    reason: str | None
    actor: str | None
    idempotency_key: str | None
    hash: str


class AuditEventOut(BaseModel):
    version: int
    trigger: str
    source: str
    dest: str
    reason: str | None
    actor: str | None
    occurred_at: str
    hash: str


class AuditedKeyOut(BaseModel):
    key_id: str | None = Field(description="None: a key the authority never issued.")
    fingerprint: str
    hint: str
    saved_at: str
    saved_by: str | None


class VerdictOut(BaseModel):
    status: Literal["valid", "revoked", "expired", "missing", "unknown"]
    message: str
    expires_at: str | None
    revoked_at: str | None
    revoked_by: str | None


class AuthorityEventOut(EventOut):
    stream: str


class AuditOut(BaseModel):
    stream: str
    at: str
    state: str
    reason: str | None
    version: int
    event: AuditEventOut | None = Field(description="The event that put the onboarding in its state by then.")
    key: AuditedKeyOut | None = Field(description="The key saved in the store configuration then; never the key.")
    verdict: VerdictOut
    authority_events: list[AuthorityEventOut]
    ok: bool
    problems: list[ProblemItem]


class EventsOut(BaseModel):
    stream: str
    events: list[EventOut]


class FeedEventOut(EventOut):
    stream: str


class FeedOut(BaseModel):
    events: list[FeedEventOut]
    next: int = Field(description="Pass as `after` for the next page.")


class ProblemItem(BaseModel):
    stream: str
    version: int
    kind: str
    message: str


class ReplayOut(BaseModel):
    stream: str
    state: str
    reason: str | None
    version: int
    as_of: str | None
    path: list[str]
    ok: bool
    problems: list[ProblemItem]


class VerifyOut(BaseModel):
    ok: bool
    streams: int = Field(description="Onboardings verified.")
    authority_streams: int = Field(description="The key authority's entity streams verified (@account:, @key:, ...).")
    events: int
    problems: list[ProblemItem]


class DigestOut(BaseModel):
    count: int = Field(description="How many events the digest covers.")
    digest: str = Field(description="The hex digest.")
    token: str = Field(description="What an auditor keeps: COUNT:DIGEST, as `keytrail digest` prints it.")
    last_position: int


class ExpiringItem(BaseModel):
    stream: str
    state: str
    key_id: str | None
    hint: str
    expires_at: str
    expired: bool
    days_left: float


class ExpiringOut(BaseModel):
    within_days: float
    expiring: list[ExpiringItem]


class AccountOut(BaseModel):
    account_id: str
    email: str
    company: str
    created_at: str


class KeyInfoOut(BaseModel):
    key_id: str
    description: str
    hint: str
    fingerprint: str
    created_at: str
    expires_at: str
    revoked_at: str | None
    status: str


class GatewayOut(BaseModel):
    valid: bool
    key_id: str | None
    expires_at: str | None


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    schema_version: int | str


class ProblemOut(BaseModel):
    """RFC 9457: ``type`` tells the class of problem; other members carry its facts."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None
