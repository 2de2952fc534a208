"""What the engine hands back: outcomes of commands, events, replays and audit reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from keytrail.errors import CorruptEvent, CorruptProjection
from keytrail.events import RecordedEvent, iso_utc
from keytrail.persistence import StreamHead
from keytrail.states import Reason, State, Trigger
from keytrail.states.authority import AuthorityAction, AuthorityState

__all__ = ["Event", "KeyOutcome", "OnboardingStatus", "Outcome", "Problem", "Replay", "VerifyReport"]


_STATES = {state.value: state for state in State}
_REASONS = {reason.value: reason for reason in Reason}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso_utc(value)


def _value(member: Reason | None) -> str | None:
    return None if member is None else member.value


@dataclass(frozen=True)
class Outcome:
    """Where a command left the onboarding. ``replayed`` is True when an idempotency key returned an earlier outcome."""

    stream: str
    trigger: Trigger
    state: State
    reason: Reason | None
    version: int
    occurred_at: datetime
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "trigger": self.trigger.value,
            "state": self.state.value,
            "reason": None if self.reason is None else self.reason.value,
            "version": self.version,
            "occurred_at": iso_utc(self.occurred_at),
            "replayed": self.replayed,
        }


@dataclass(frozen=True)
class KeyOutcome(Outcome):
    """The outcome of ``generate_key`` or ``copy_key``: the one response that carries a plaintext key."""

    key: str = field(default="", repr=False)
    key_id: str = ""
    hint: str = ""
    expires_at: datetime | None = None

    def as_dict(self, *, include_key: bool = True) -> dict[str, Any]:
        out = super().as_dict()
        out.update(
            key_id=self.key_id,
            hint=self.hint,
            expires_at=None if self.expires_at is None else iso_utc(self.expires_at),
        )
        if include_key:
            out["key"] = self.key
        return out


# Every name an event may carry: an onboarding's, or an authority entity's.
_TRIGGERS: dict[str, Trigger | AuthorityAction] = {trigger.value: trigger for trigger in Trigger}
_TRIGGERS.update({action.value: action for action in AuthorityAction})
_EVENT_STATES: dict[str, State | AuthorityState] = {state.value: state for state in State}
_EVENT_STATES.update({state.value: state for state in AuthorityState})


@dataclass(frozen=True)
class Event:
    """One event of an onboarding's history."""

    position: int
    stream: str
    version: int
    # An onboarding's trigger and states, or (in the feed and exports) an authority entity's
    # action and states (see keytrail.states.authority).
    trigger: Trigger | AuthorityAction
    source: State | AuthorityState
    dest: State | AuthorityState
    reason: Reason | None
    data: dict[str, Any] = field(repr=False)
    actor: str | None
    occurred_at: datetime
    idempotency_key: str | None
    hash: str

    @classmethod
    def from_record(cls, record: RecordedEvent) -> Event:
        try:
            return cls(
                record.position,
                record.stream_id,
                record.version,
                _TRIGGERS[record.trigger],
                _EVENT_STATES[record.source],
                _EVENT_STATES[record.dest],
                None if record.reason is None else _REASONS[record.reason],
                record.data,
                record.actor,
                record.occurred_at,
                record.idempotency_key,
                record.hash,
            )
        except (KeyError, TypeError):
            raise CorruptEvent(
                record.stream_id,
                record.version,
                f"it holds a trigger, state or reason keytrail does not know "
                f"({record.trigger!r:.40}, {record.source!r:.40}, {record.dest!r:.40}, {record.reason!r:.40}).",
                position=record.position,
            ) from None

    @classmethod
    def from_row(cls, row: Any, data: dict[str, Any], occurred_at: datetime) -> Event:
        """An event from a checked row of :class:`RecordedEvent`'s fields (a feed page's), ``data`` and
        ``occurred_at`` read: as :meth:`from_record`, with the names looked up in tables instead of
        through the enums (a catch-up builds hundreds of thousands a second)."""
        try:
            reason = row[6]
            return cls(
                row[0],
                row[1],
                row[2],
                _TRIGGERS[row[3]],
                _EVENT_STATES[row[4]],
                _EVENT_STATES[row[5]],
                None if reason is None else _REASONS[reason],
                data,
                row[8],
                occurred_at,
                row[10],
                row[13],
            )
        except KeyError:
            fields = (*row[:7], data, row[8], occurred_at, *row[10:14])
            return cls.from_record(RecordedEvent(*fields))

    def onboarding_step(self) -> tuple[Trigger, State, State]:
        """(trigger, source, dest) of an onboarding's event; CorruptEvent for an authority entity's."""
        trigger, source, dest = self.trigger, self.source, self.dest
        if isinstance(trigger, Trigger) and isinstance(source, State) and isinstance(dest, State):
            return trigger, source, dest
        raise CorruptEvent(
            self.stream, self.version, f"{trigger.value} is an authority action, not an onboarding step."
        )

    def as_dict(self) -> dict[str, Any]:
        """The event as ``history --json`` prints it; ``data`` is left to exports (``export_rows``)."""
        return {
            "position": self.position,
            "version": self.version,
            "occurred_at": iso_utc(self.occurred_at),
            "trigger": self.trigger.value,
            "source": self.source.value,
            "dest": self.dest.value,
            "reason": _value(self.reason),
            "actor": self.actor,
            "idempotency_key": self.idempotency_key,
            "hash": self.hash,
        }


class OnboardingStatus(NamedTuple):
    """Where an onboarding stands, from its projection row (no replay): what ``Engine.status`` returns.

    The id is ``stream`` and the state a :class:`State`, as in :class:`Outcome`; ``head_hash`` is
    the hash of its newest event, ``account_id`` and ``key_id`` what the flow carries so far.
    (A named tuple, not a dataclass: status reads are hot, and a tuple is built in a third of the time.)
    """

    stream: str
    state: State
    reason: Reason | None
    version: int
    head_hash: str
    account_id: str | None = None
    key_id: str | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_head(cls, head: StreamHead) -> OnboardingStatus:
        """The status of a projection row; CorruptProjection when the row is damaged or names an unknown state."""
        if head.flaw is not None:
            raise CorruptProjection(head.stream_id, head.flaw)
        try:
            state = _STATES[head.state]
            reason = None if head.reason is None else _REASONS[head.reason]
        except KeyError:
            raise CorruptProjection(
                head.stream_id,
                f"its state and reason ({head.state!r:.40}, {head.reason!r:.40}) are not ones keytrail knows.",
            ) from None
        return cls(
            head.stream_id, state, reason, head.version, head.head_hash, head.account_id, head.key_id, head.updated_at
        )

    def as_dict(self) -> dict[str, Any]:
        """The ``status --json`` object."""
        return {
            "stream": self.stream,
            "state": self.state.value,
            "reason": _value(self.reason),
            "version": self.version,
            "account_id": self.account_id,
            "key_id": self.key_id,
            "updated_at": _iso(self.updated_at),
            "head_hash": self.head_hash,
        }


@dataclass(frozen=True)
class Problem:
    """One thing an audit found wrong, naming the stream and the version where it starts."""

    stream: str
    version: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.stream} v{self.version}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "version": self.version, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class Replay:
    """An onboarding rebuilt from its events alone."""

    stream: str
    state: State
    reason: Reason | None
    version: int
    path: list[State]
    problems: list[Problem]
    as_of: datetime | None = None
    account_id: str | None = None
    key_id: str | None = None
    head_hash: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The ``replay --json`` object."""
        return {
            "stream": self.stream,
            "state": self.state.value,
            "reason": _value(self.reason),
            "version": self.version,
            "as_of": _iso(self.as_of),
            "path": [s.value for s in self.path],
            "ok": self.ok,
            "problems": [p.as_dict() for p in self.problems],
        }


@dataclass(frozen=True)
class VerifyReport:
    """The result of re-checking hash chains, versions, legality and projections."""

    streams: int  # onboardings
    events: int  # of every stream
    problems: list[Problem]
    authority_streams: int = 0  # the authority's entities: accounts, keys, tokens, the encryption key

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The ``verify --json`` object."""
        return {
            "ok": self.ok,
            "streams": self.streams,
            "authority_streams": self.authority_streams,
            "events": self.events,
            "problems": [p.as_dict() for p in self.problems],
        }
