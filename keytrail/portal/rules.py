"""The authority's rules over time that need no records: is a session live, may a key be handed over."""

from __future__ import annotations

from datetime import datetime

from keytrail.events import iso_utc
from keytrail.portal.records import ApiKey

__all__ = ["key_unusable", "session_problem"]


def session_problem(expires: datetime | None, stream_id: str, at: datetime) -> str | None:
    """Why a session ending at ``expires`` (None: none) is not live on ``stream_id`` at ``at`` (a sentence's middle), or None."""
    if expires is None:
        return f"{stream_id} holds no session on the account site"
    if at >= expires:
        return f"the session of {stream_id} on the account site ended at {iso_utc(expires)}"
    return None


def key_unusable(key: ApiKey, at: datetime) -> str | None:
    """Why ``key`` cannot be handed over at ``at`` (revoked, or expired), as a sentence's start, or None."""
    if key.revoked_at is not None:
        return f"key {key.key_id} was revoked at {iso_utc(key.revoked_at)}"
    if at >= key.expires_at:
        return f"key {key.key_id} expired at {iso_utc(key.expires_at)}"
    return None
