"""Operator and auditor queries over an :class:`~keytrail.engine.Engine`: digests, expiring keys, exports.

The log digest
--------------
``digest`` folds every event's chain hash, in ``position`` order, into one running hash::

    d_0 = sha256("keytrail-digest-v1")
    h_n = sha256(prev_hash_n + canonical JSON of row n)   (recomputed from the row, never the stored hash)
    d_n = sha256(d_(n-1) + h_n)                            (hex strings, ASCII)

and is written ``N:HEX`` (the number of events and d_N). Each h_n covers its row's contents
and, through ``prev_hash``, its stream's earlier events, so d_N fixes the whole log as it
stood; recomputing h_n means an edited row changes the digest even when its stored ``hash``
column was left alone (``verify`` reports that one too).
An auditor keeps the token; later, :func:`check_digest` recomputes d over the first N events
by position: equal means the log still extends what was seen (it may only have grown);
anything edited, deleted, inserted or reordered among those N events changes it. The check
streams the log once, in constant memory.

Two more things fail a check. A row not stored exactly as keytrail writes it (another
spelling of a time or of ``data``, a value that cannot be read): both the digest and the
check refuse it, naming its stream and version, since its hash would not say what plain SQL
reads there. And an event added after the digest but dated before the newest event it
covers: it would change what ``replay --as-of`` says about an instant the digest vouched for.

Both read only the settled prefix of the global order (see :mod:`keytrail.persistence.feed`):
on PostgreSQL a transaction that drew a position and commits after a later one is waited out
(the digest stops below it), so a digest taken while writers run never has an event land
inside its prefix afterwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keytrail import inputs
from keytrail.engine.core import Engine
from keytrail.errors import CorruptEvent, InvalidInput
from keytrail.events import EVENT_COLUMNS, event_hash, hashed_fields, iso_utc
from keytrail.persistence.store import AuditRow
from keytrail.persistence.stored import Flaw, data_flaw, shown
from keytrail.states import State, initial_state

__all__ = [
    "DIGEST_SEED",
    "EXPORT_COLUMNS",
    "Digest",
    "DigestCheck",
    "ExpiringKey",
    "check_digest",
    "digest",
    "expiring",
    "export_rows",
    "parse_digest",
]

DIGEST_SEED = hashlib.sha256(b"keytrail-digest-v1").hexdigest()


@dataclass(frozen=True)
class Digest:
    """One hash over the first ``events`` events of the log, by position."""

    events: int
    digest: str
    last_position: int

    @property
    def token(self) -> str:
        """What the auditor keeps: ``N:HEX``."""
        return f"{self.events}:{self.digest}"

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "digest": self.digest, "last_position": self.last_position, "token": self.token}


@dataclass(frozen=True)
class DigestCheck:
    """Whether the log still extends a kept digest, and by how many events it grew since."""

    ok: bool
    expected: Digest
    found: Digest
    total_events: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "expected": self.expected.token,
            "found": self.found.token,
            "total_events": self.total_events,
            "new_events": max(0, self.total_events - self.expected.events) if self.ok else None,
            "message": self.message,
        }


def _step(running: str, hashed: str) -> str:
    return hashlib.sha256((running + hashed).encode("ascii")).hexdigest()


def _hash_row(row: AuditRow) -> str:
    """The chain hash recomputed from a row; CorruptEvent when the row is not as keytrail writes it."""
    position, stream_id, version, data, occurred, prev = row[0], row[1], row[2], row[7], row[9], row[-2]
    flaw: Flaw | None = None
    if type(version) is not int or type(position) is not int:
        flaw = Flaw("malformed", f"its version or position is stored as {shown(version)}, {shown(position)}.")
    elif type(occurred) is Flaw:
        flaw = occurred
    elif type(data) is not dict:
        flaw = data if type(data) is Flaw else data_flaw(data)
    if flaw is not None:
        raise CorruptEvent(stream_id, version, flaw.message, position=position)
    try:
        return event_hash(prev, hashed_fields(row))
    except (TypeError, ValueError):
        raise CorruptEvent(
            stream_id, version, "a column holds a value keytrail never writes (it cannot be hashed).", position=position
        ) from None


def _hashes(engine: Engine) -> Iterator[tuple[int, str, AuditRow]]:
    """(position, hash recomputed from the row, the row) of every event by position, streamed."""
    # closing(): a damaged row raises mid-scan, and the scan must end while its connection is open.
    with closing(engine.admin.log_rows()) as rows:
        for row in rows:
            yield row[0], _hash_row(row), row


def digest(engine: Engine) -> Digest:
    """The digest of the whole log as it stands."""
    running, count, last = DIGEST_SEED, 0, 0
    for position, hashed, _ in _hashes(engine):
        running, count, last = _step(running, hashed), count + 1, position
    return Digest(count, running, last)


def parse_digest(token: str) -> tuple[int | None, str]:
    """``N:HEX`` (as printed by ``digest``) or a bare ``HEX``."""
    if not isinstance(token, str):
        raise InvalidInput(f"A digest is text (N:HEX as printed by `keytrail digest`), not a {type(token).__name__}.")
    count_text, _, hex_text = token.strip().rpartition(":")
    hex_text = hex_text.lower()
    if len(hex_text) != 64 or any(c not in "0123456789abcdef" for c in hex_text):
        raise InvalidInput(f"{token[:80]!r} is not a digest: expected N:HEX as printed by `keytrail digest`.")
    if not count_text:
        return None, hex_text
    if not (count_text.isascii() and count_text.isdigit()) or len(count_text) > 19:  # "²" is a digit too
        raise InvalidInput(
            f"{count_text[:20]!r} is not an event count: expected N:HEX as printed by `keytrail digest`."
        )
    return int(count_text), hex_text


def check_digest(engine: Engine, token: str) -> DigestCheck:
    """Whether a prefix of the log still produces the kept digest (with a bare HEX, any prefix may).

    The events added since must also be dated no earlier than the newest event the digest
    covers, and every row must be as keytrail writes it.
    """
    count, wanted = parse_digest(token)
    running, seen, last = DIGEST_SEED, 0, 0
    matched: Digest | None = Digest(0, DIGEST_SEED, 0) if wanted == DIGEST_SEED and count in (None, 0) else None
    at_count: Digest | None = matched if count == 0 else None
    newest = ""  # the newest occurred_at so far (ISO UTC: text order is time order)
    covered: str | None = "" if matched is not None else None  # the newest one the digest covers, once passed
    backdated: str | None = None
    try:
        for position, hashed, row in _hashes(engine):
            occurred = row[9]
            if covered is not None and backdated is None and occurred < covered:
                backdated = (
                    f"Event version {row[2]} of {row[1]} (position {position}) was added after the digest but is "
                    f"dated {occurred}, before {covered}, the newest event the digest covers: it changes what the "
                    "log says about an instant the digest vouched for."
                )
            running, seen, last = _step(running, hashed), seen + 1, position
            newest = max(newest, occurred)
            if count is None and matched is None and running == wanted:
                matched = Digest(seen, running, last)
                covered = newest
            if count is not None and seen == count:
                at_count = Digest(seen, running, last)
                covered = newest
    except CorruptEvent as exc:
        return DigestCheck(False, Digest(count or 0, wanted, 0), Digest(seen, running, last), seen, str(exc))
    if count is None:
        expected = Digest(matched.events if matched else 0, wanted, matched.last_position if matched else 0)
        if matched is not None:
            if backdated is not None:
                return DigestCheck(False, expected, matched, seen, backdated)
            return DigestCheck(
                True,
                expected,
                matched,
                seen,
                f"The log still extends the digest: its first {matched.events} events produce it, "
                f"and {seen - matched.events} events were added since.",
            )
        return DigestCheck(
            False,
            expected,
            Digest(seen, running, last),
            seen,
            f"No prefix of the log's {seen} events produces the digest {wanted}: the log was changed.",
        )
    expected = Digest(count, wanted, 0)
    if at_count is None:
        return DigestCheck(
            False,
            expected,
            Digest(seen, running, last),
            seen,
            f"The digest covers {count} events but the log now holds only {seen}: events were deleted.",
        )
    if at_count.digest != wanted:
        return DigestCheck(
            False,
            expected,
            at_count,
            seen,
            f"The first {count} events of the log now produce {at_count.digest}, not {wanted}: "
            "events among them were edited, deleted, inserted or reordered.",
        )
    if backdated is not None:
        return DigestCheck(False, Digest(count, wanted, at_count.last_position), at_count, seen, backdated)
    return DigestCheck(
        True,
        Digest(count, wanted, at_count.last_position),
        at_count,
        seen,
        f"The log still extends the digest: its first {count} events produce it, and {seen - count} events "
        "were added since.",
    )


@dataclass(frozen=True)
class ExpiringKey:
    """An onboarding whose saved key expires (or expired) by the end of the window."""

    stream: str
    state: State
    key_id: str | None
    hint: str
    expires_at: datetime
    expired: bool
    remaining: timedelta

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "state": self.state.value,
            "key_id": self.key_id,
            "hint": self.hint,
            "expires_at": iso_utc(self.expires_at),
            "expired": self.expired,
            "days_left": round(self.remaining.total_seconds() / 86400, 2),
        }


def expiring(engine: Engine, within: timedelta) -> list[ExpiringKey]:
    """Onboardings whose saved key, according to the key authority, expires before now + ``within``.

    Keys already expired are listed too (``expired``); missing, unknown and revoked keys have
    no expiry and are left to ``status``. Soonest first.
    """
    if not isinstance(within, timedelta):
        raise InvalidInput(f"The window must be a datetime.timedelta, not a {type(within).__name__}.")
    if within < timedelta(0):
        raise InvalidInput(f"The window must not be negative, not {within}.")
    if within > inputs.MAX_SPAN:  # now + the window must still be a date
        raise InvalidInput(
            f"The window must be at most 100 years ({inputs.MAX_SPAN.days} days), not {within.days} days."
        )
    at = engine.now()
    checked = engine.admin.saved_key_verdicts(at)
    states = {status.stream: status.state for status in engine.streams()}
    found: list[ExpiringKey] = []
    for saved, verdict in checked:
        if verdict.expires_at is None or verdict.expires_at > at + within:
            continue
        found.append(
            ExpiringKey(
                saved.stream,
                states.get(saved.stream, initial_state()),
                verdict.key_id,
                saved.hint,
                verdict.expires_at,
                verdict.expires_at <= at,
                verdict.expires_at - at,
            )
        )
    return sorted(found, key=lambda k: (k.expires_at, k.stream))


def export_rows(engine: Engine, stream: str | None = None) -> Iterator[dict[str, Any]]:
    """Every event as a flat dict of its columns (data as JSON), by stream then version, streamed."""
    for event in engine.events(stream):
        yield event.as_dict()


EXPORT_COLUMNS: tuple[str, ...] = EVENT_COLUMNS
