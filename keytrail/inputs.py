"""The limits on what callers hand keytrail, checked before anything is written.

Messages describe the value (its length, the offending character's position) but never
repeat a key or a password.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from keytrail.errors import InvalidInput
from keytrail.states.authority import lifecycle_of

__all__ = [
    "MASKED_KEY",
    "MAX_SPAN",
    "check_actor",
    "check_company",
    "check_count",
    "check_description",
    "check_email",
    "check_idempotency_key",
    "check_instant",
    "check_key",
    "check_key_id",
    "check_password",
    "check_seconds",
    "check_span",
    "check_stream_id",
    "clipped",
    "is_masked",
    "is_text",
    "parse_instant",
    "quoted",
]

_STREAM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-:@]{0,127}")
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")
_KEY_ID = re.compile(r"key_[0-9a-f]{16}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MASKED_KEY = "******"
# The longest span keytrail takes (a key lifetime, a lockout, a window): far beyond any real use,
# and short enough that adding it to any time keytrail meets stays within datetime's years 1-9999.
MAX_SPAN = timedelta(days=36525)
_MAX_SECONDS = 86400.0


def _describe(value: object) -> str:
    return f"a {type(value).__name__}"


def clipped(text: str, limit: int = 80) -> str:
    """A user's text (a path, a URL) as a message may show it: whole when short, else its first ``limit``
    characters and how long it was, so that a 100,000-character value makes a one-line error."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def quoted(value: str, limit: int = 80) -> str:
    """A refused value as a message may show it: quoted, control characters escaped, at most ``limit`` of them."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def _shown(value: str, limit: int = 64) -> str:
    """A refused value as messages may show it: quoted, and never overlong or with control characters."""
    if len(value) <= limit and value.isprintable():
        return repr(value)
    return f"the value of {len(value)} characters"


def check_stream_id(stream_id: object) -> str:
    """An onboarding id: 1-128 letters, digits and ``. _ - : @``, starting with a letter or digit."""
    if not isinstance(stream_id, str):
        raise InvalidInput(f"An onboarding id must be a string, not {_describe(stream_id)}.")
    if not _STREAM_ID.fullmatch(stream_id):
        raise InvalidInput(
            f"{_shown(stream_id)} is not a valid onboarding id: use 1 to 128 letters, digits and . _ - : @, "
            "beginning with a letter or digit."
        )
    return stream_id


def check_log_stream_id(stream_id: object) -> str:
    """A stream of the log: an onboarding id, or an authority entity's stream (``@key:key_0123...``)."""
    if isinstance(stream_id, str) and stream_id.startswith("@"):
        if len(stream_id) <= 128 and stream_id.isprintable() and lifecycle_of(stream_id) is not None:
            return stream_id
        raise InvalidInput(
            f"{_shown(stream_id)} is not a stream of the log: an authority stream is @account:ID, @key:KEY_ID, "
            "@token:NAME or @encryption."
        )
    return check_stream_id(stream_id)


def is_masked(value: str) -> bool:
    """Whether ``value`` is the asterisks that the config page shows for a saved key."""
    return bool(value) and set(value) == {"*"}


def check_key(key: object) -> str:
    """An API key: 16-256 printable ASCII characters without spaces.

    Surrounding whitespace (a pasted newline, say) is trimmed; whitespace inside is refused.
    """
    if not isinstance(key, str):
        raise InvalidInput(f"An API key must be a string, not {_describe(key)}.")
    trimmed = key.strip()
    if not 16 <= len(trimmed) <= 256:
        raise InvalidInput(f"An API key must be 16 to 256 characters long; this one has {len(trimmed)}.")
    if not _KEY_CHARS.fullmatch(trimmed):
        bad = next(i for i, ch in enumerate(trimmed) if not "\x21" <= ch <= "\x7e")
        raise InvalidInput(
            "An API key may hold only printable ASCII characters without spaces; "
            f"character {bad + 1} of {len(trimmed)} is not one."
        )
    return trimmed


def check_description(description: object) -> str:
    """A key description: 1-255 printable characters."""
    if not isinstance(description, str):
        raise InvalidInput(f"A key description must be a string, not {_describe(description)}.")
    if not 1 <= len(description) <= 255:
        raise InvalidInput(f"A key description must be 1 to 255 characters long; this one has {len(description)}.")
    if not description.isprintable():
        raise InvalidInput("A key description may hold only printable characters (no control characters).")
    return description


def check_company(company: object) -> str:
    """A company name: 1-255 printable characters."""
    if not isinstance(company, str) or not 1 <= len(company.strip()) <= 255 or not company.isprintable():
        raise InvalidInput("A company name must be 1 to 255 printable characters.")
    return company.strip()


def check_email(email: object) -> str:
    """An account email, compared without regard to case."""
    if not isinstance(email, str) or len(email) > 254 or not email.isprintable() or not _EMAIL.fullmatch(email):
        shown = repr(email) if isinstance(email, str) and len(email) <= 254 and email.isprintable() else "that value"
        raise InvalidInput(f"{shown} is not a valid email address.")
    return email.lower()


def check_password(password: object) -> str:
    """A password: 8 to 1024 characters, no NUL. Never echoed back."""
    if not isinstance(password, str):
        raise InvalidInput(f"A password must be a string, not {_describe(password)}.")
    if not 8 <= len(password) <= 1024:
        raise InvalidInput(f"A password must be 8 to 1024 characters long; this one has {len(password)}.")
    if "\x00" in password:
        raise InvalidInput("A password may not contain a NUL character.")
    if not is_text(password):
        raise InvalidInput("A password must be text: it holds bytes that are not UTF-8.")
    return password


def is_text(value: str) -> bool:
    """Whether ``value`` can be written as UTF-8: bytes that are not UTF-8 (in an argument, on
    stdin) reach Python as lone surrogates, which hashing, drivers and URLs cannot encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_key_id(key_id: object) -> str:
    """An API key id as the key authority issues them (``key_`` and 16 hex digits)."""
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        shown = repr(key_id) if isinstance(key_id, str) and len(key_id) <= 64 and key_id.isprintable() else "that value"
        raise InvalidInput(f"{shown} is not a key id: key ids are 'key_' followed by 16 hex digits.")
    return key_id


def check_actor(actor: object) -> str | None:
    """Who drives the command, for the audit trail: 1-128 printable characters, or None."""
    if actor is None:
        return None
    if not isinstance(actor, str) or not 1 <= len(actor) <= 128 or not actor.isprintable():
        raise InvalidInput("An actor must be 1 to 128 printable characters.")
    return actor


def check_idempotency_key(idempotency_key: object) -> str | None:
    """An idempotency key: 1-255 printable ASCII characters without spaces, or None."""
    if idempotency_key is None:
        return None
    if (
        not isinstance(idempotency_key, str)
        or not 1 <= len(idempotency_key) <= 255
        or not _KEY_CHARS.fullmatch(idempotency_key)
    ):
        raise InvalidInput("An idempotency key must be 1 to 255 printable ASCII characters without spaces.")
    return idempotency_key


def check_span(name: str, value: object) -> timedelta:
    """A positive ``timedelta`` of at most 100 years (:data:`MAX_SPAN`)."""
    if not isinstance(value, timedelta):
        raise InvalidInput(f"{name} must be a datetime.timedelta, not {_describe(value)}.")
    if value <= timedelta(0):
        raise InvalidInput(f"{name} must be positive, not {value}.")
    if value > MAX_SPAN:
        raise InvalidInput(f"{name} must be at most 100 years ({MAX_SPAN.days} days), not {value.days} days.")
    return value


def check_count(name: str, value: object, *, least: int, most: int) -> int:
    """A whole number from ``least`` to ``most`` (a bool is not one)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{name} must be a whole number, not {_describe(value)}.")
    if not least <= value <= most:
        raise InvalidInput(f"{name} must be from {least} to {most}, not {value}.")
    return value


def check_seconds(name: str, value: object) -> float:
    """A finite number of seconds, from 0 to a day."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidInput(f"{name} must be a number of seconds, not {_describe(value)}.")
    if not (math.isfinite(value) and 0 <= value <= _MAX_SECONDS):
        raise InvalidInput(f"{name} must be a number of seconds from 0 to {_MAX_SECONDS:.0f}, not {value}.")
    return float(value)


def check_instant(name: str, value: object) -> datetime:
    """A timezone-aware datetime that UTC can represent, in UTC."""
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name} must be a timezone-aware datetime, not {_describe(value)}.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be a timezone-aware datetime, not a naive one.")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"{name} {value.isoformat()} is outside the times keytrail can represent (years 1 to 9999 in UTC)."
        ) from None


def parse_instant(text: str, name: str = "The instant") -> datetime:
    """An ISO 8601 instant typed by a person (``--at``, ``?at=``); without a zone it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} {quoted(text)} is not an ISO 8601 instant such as 2026-03-01T12:00:00Z.") from None
    return check_instant(name, value.replace(tzinfo=UTC) if value.tzinfo is None else value)
