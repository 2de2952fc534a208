"""The audit of one onboarding at an instant: "was the key valid at T, and who says so?"

Answered from the log alone, so that it can be run on a handed-over database read-only, or on
an export: the onboarding's events up to T give its state, the event that put it there and the
key saved in its store configuration (the last ``save_config``); the authority's stream of that
key (``@key:<key_id>``, see :mod:`keytrail.states.authority`) gives when it was issued, when it
expires and whether, when and by whom it was revoked. Both streams are re-checked (hashes,
chain, steps) on the way, and what is wrong is reported with the answer, never hidden by it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keytrail.engine.audit import AuthorityFold, StreamFold
from keytrail.engine.results import Event, Problem
from keytrail.errors import InvalidInput, UnknownOnboarding
from keytrail.events import EVENT_COLUMNS, RecordedEvent, iso_utc
from keytrail.states import Reason, State, Trigger
from keytrail.states.authority import AuthorityAction, authority_stream

__all__ = ["Audit", "AuditedKey", "KeyVerdictAt", "audit_events", "audit_log", "read_export", "saved_key_at"]

_SAVE = Trigger.save_config.value
# The events that record what the store configuration holds: what was saved, or what a page view found.
_RECORDS_CONFIG = frozenset({_SAVE, Trigger.access.value, Trigger.proceed.value})


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso_utc(value)


def _time(text: Any) -> datetime | None:
    """A time as keytrail writes one in ``data`` (ISO 8601 with its zone); None for anything else."""
    try:
        value = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return None if value is None or value.tzinfo is None else value


@dataclass(frozen=True)
class AuditedKey:
    """The key in the store configuration at the instant: never the key, its fingerprint and hint.

    ``saved_at`` is when keytrail saved it, or when a page view first found it there (a key saved
    outside keytrail, whose ``saved_by`` the log cannot know).
    """

    key_id: str | None
    fingerprint: str
    hint: str
    saved_at: datetime
    saved_by: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "fingerprint": self.fingerprint,
            "hint": self.hint,
            "saved_at": iso_utc(self.saved_at),
            "saved_by": self.saved_by,
        }


@dataclass(frozen=True)
class KeyVerdictAt:
    """What the log says of the saved key at the instant: ``valid``, ``revoked``, ``expired``, ``missing``
    (nothing saved) or ``unknown`` (a key the authority had not issued by then)."""

    status: str
    message: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True)
class Audit:
    """One onboarding at one instant, from the log alone: what ``keytrail audit STREAM --at T`` prints."""

    stream: str
    at: datetime
    state: State
    reason: Reason | None
    version: int
    event: Event | None
    key: AuditedKey | None
    verdict: KeyVerdictAt
    authority_events: list[Event] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the streams the answer rests on verified."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        event = self.event
        return {
            "stream": self.stream,
            "at": iso_utc(self.at),
            "state": self.state.value,
            "reason": None if self.reason is None else self.reason.value,
            "version": self.version,
            "event": None
            if event is None
            else {
                "version": event.version,
                "trigger": event.trigger.value,
                "source": event.source.value,
                "dest": event.dest.value,
                "reason": None if event.reason is None else event.reason.value,
                "actor": event.actor,
                "occurred_at": iso_utc(event.occurred_at),
                "hash": event.hash,
            },
            "key": None if self.key is None else self.key.as_dict(),
            "verdict": self.verdict.as_dict(),
            "authority_events": [e.as_dict() | {"stream": e.stream} for e in self.authority_events],
            "ok": self.ok,
            "problems": [p.as_dict() for p in self.problems],
        }


def _saved_key(events: list[RecordedEvent]) -> tuple[str, str, RecordedEvent] | None:
    """The (fingerprint, hint, event that saved or first saw it) of the key in the store configuration
    after ``events``.

    ``save_config`` records what it saved; every page view (``access``, ``proceed``) records what it
    found saved ({} for nothing). A key put there outside keytrail is first known from the page
    view that found it, so that view is where the audit picks it up.
    """
    saved: tuple[str, str, RecordedEvent] | None = None
    for event in events:
        data = event.data
        if event.trigger not in _RECORDS_CONFIG or not isinstance(data, dict):
            continue
        fingerprint, hint = data.get("fingerprint"), data.get("hint")
        if event.trigger != _SAVE and fingerprint is None:
            saved = None  # the page view found nothing saved
            continue
        if not isinstance(fingerprint, str) or not isinstance(hint, str):
            continue
        # The same key again (asterisks kept, or a page view finding it): its saving event stays the first.
        if saved is not None and saved[0] == fingerprint and (event.trigger != _SAVE or data.get("kept") is True):
            continue
        saved = (fingerprint, hint, event)
    return saved


def saved_key_at(events: list[RecordedEvent], at: datetime) -> str | None:
    """The fingerprint of the key saved in the stream at ``at`` (events in version order), or None."""
    fold = StreamFold("", check_hashes=False, as_of=iso_utc(at))
    cut = 0
    for event in events:
        fold.feed_row(event.audit_row())
        cut = fold.version
    saved = _saved_key(events[:cut])
    return None if saved is None else saved[0]


def _verdict(
    stream: str, at: datetime, saved: tuple[str, str, RecordedEvent] | None, key_events: list[RecordedEvent]
) -> tuple[AuditedKey | None, KeyVerdictAt]:
    when = iso_utc(at)
    if saved is None:
        return None, KeyVerdictAt("missing", f"No key was saved in the store configuration of {stream} at {when}.")
    fingerprint, hint, event = saved
    issued = next(
        (
            e
            for e in key_events
            if e.trigger == AuthorityAction.key_generated.value
            and isinstance(e.data, dict)
            and e.data.get("fingerprint") == fingerprint
        ),
        None,
    )
    key_id = None if issued is None else issued.data.get("key_id")
    # A key first seen by a page view was put there outside keytrail: who saved it is not in the log.
    saved_by = event.actor if event.trigger == _SAVE else None
    key = AuditedKey(key_id if isinstance(key_id, str) else None, fingerprint, hint, event.occurred_at, saved_by)
    # A key recorded by an upgrade (keytrail db upgrade) is dated then; its data keeps when it was issued.
    issued_at = None if issued is None else _time(issued.data.get("created_at")) or issued.occurred_at
    if issued is None or issued_at is None or issued_at > at:
        return key, KeyVerdictAt(
            "unknown",
            f"The key ending in {hint} saved in {stream} had not been issued by the authority at {when}: "
            "it did not verify.",
        )
    expires_at = _time(issued.data.get("expires_at"))
    revoked = next((e for e in key_events if e.trigger == AuthorityAction.key_revoked.value), None)
    revoked_at = None if revoked is None else _time(revoked.data.get("revoked_at")) or revoked.occurred_at
    if revoked is not None and revoked_at is not None and revoked_at <= at:
        by = f" by {revoked.actor}" if revoked.actor else ""
        if revoked.data.get("recorded_by_upgrade") is True:
            by = " (recorded by the upgrade to the authority's log: who revoked it is not known)"
        return key, KeyVerdictAt(
            "revoked",
            f"Key {key.key_id} (ending in {hint}) was revoked at {iso_utc(revoked_at)}{by}: at {when} it did not verify.",
            expires_at,
            revoked_at,
            revoked.actor,
        )
    if expires_at is None or at >= expires_at:
        expiry = "an unreadable time" if expires_at is None else iso_utc(expires_at)
        return key, KeyVerdictAt(
            "expired",
            f"Key {key.key_id} (ending in {hint}) expired at {expiry}: at {when} it did not verify.",
            expires_at,
        )
    return key, KeyVerdictAt(
        "valid",
        f"Key {key.key_id} (ending in {hint}) was valid at {when}: issued at {iso_utc(issued_at)}, "
        f"expiring at {iso_utc(expires_at)}, not revoked by then.",
        expires_at,
    )


def audit_log(
    stream: str,
    at: datetime,
    onboarding: Iterable[RecordedEvent],
    key_events: Iterable[RecordedEvent],
    found: Iterable[Problem] = (),
) -> Audit:
    """The audit of ``stream`` at ``at`` from its events and those of the key saved in it (any order of keys'
    streams is fine: only the one whose ``key_generated`` carries the saved fingerprint is read); ``found``
    are problems the caller met reading them."""
    fold = StreamFold(stream, check_hashes=True, as_of=iso_utc(at))
    events = []
    for record in onboarding:
        fold.feed_row(record.audit_row())
        events.append(record)
    if not events:
        raise UnknownOnboarding(f"There is no onboarding {stream!r}.")
    before = events[: fold.version]
    saved = _saved_key(before)
    keyed = list(key_events)
    key, verdict = _verdict(stream, at, saved, keyed)
    problems = [*fold.problems, *found]
    touching: list[Event] = []
    if key is not None and key.key_id is not None:
        own = [e for e in keyed if e.stream_id == authority_stream("key", key.key_id)]
        key_fold = AuthorityFold(authority_stream("key", key.key_id), check_hashes=True)
        for record in own:
            key_fold.feed_row(record.audit_row())
        problems.extend(key_fold.problems)
        touching = [Event.from_record(e) for e in own if e.occurred_at <= at]
    last = Event.from_record(before[-1]) if before else None
    return Audit(stream, at, fold.state, fold.reason, fold.version, last, key, verdict, touching, problems)


def audit_events(stream: str, at: datetime, log: Iterable[RecordedEvent]) -> Audit:
    """:func:`audit_log` over a whole log in any stream order (an export): one pass, keeping two streams."""
    onboarding: list[RecordedEvent] = []
    keys: dict[str, list[RecordedEvent]] = {}
    authority = False  # any authority stream at all: an export of one onboarding (--stream) has none
    for event in log:
        if event.stream_id == stream:
            onboarding.append(event)
        elif event.stream_id.startswith("@"):
            authority = True
            if event.stream_id.startswith("@key:"):
                keys.setdefault(event.stream_id, []).append(event)
    onboarding.sort(key=lambda e: e.version)
    saved = saved_key_at(onboarding, at)
    chosen: list[RecordedEvent] = []
    found: list[Problem] = []
    if saved is not None:
        matching = []
        for events in keys.values():
            events.sort(key=lambda e: e.version)
            if any(isinstance(e.data, dict) and e.data.get("fingerprint") == saved for e in events[:1]):
                matching.append(events)
        if len(matching) > 1:
            names = ", ".join(sorted(events[0].stream_id for events in matching))
            found.append(Problem(stream, 0, "authority", f"several keys carry the saved key's fingerprint: {names}."))
        chosen = matching[0] if matching else []
        if not authority:
            found.append(
                Problem(
                    stream,
                    0,
                    "incomplete",
                    "the export holds none of the key authority's streams (@key:...): export the whole log "
                    "to judge the saved key.",
                )
            )
    return audit_log(stream, at, onboarding, chosen, found)


def read_export(lines: Iterable[str], source: str) -> Iterator[RecordedEvent]:
    """The events of a ``keytrail export`` file (JSON Lines), each checked to be an event row."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or set(row) != set(EVENT_COLUMNS):
                raise ValueError("not an event row")
            occurred = datetime.fromisoformat(row["occurred_at"])
            if occurred.tzinfo is None or not isinstance(row["data"], dict):
                raise ValueError("not an event row")
            yield RecordedEvent(**{**row, "occurred_at": occurred})
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"Line {number} of {source} is not an event as `keytrail export --format jsonl` writes one ({exc})."
            ) from None
