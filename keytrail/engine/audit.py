"""Replay and verification: rebuilding state from events alone, and re-checking every chain.

Both fold a stream's events through :class:`StreamFold`, which checks each step against the
current machine table; the engine uses :func:`carried_ids` when it writes the projection, so
replay and the live projection are derived the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from keytrail.engine.results import Problem, Replay, VerifyReport
from keytrail.errors import CorruptEvent
from keytrail.events import GENESIS_HASH, event_hash, hashed_fields, iso_utc
from keytrail.persistence import StreamHead
from keytrail.persistence.store import AuditRow
from keytrail.persistence.stored import Flaw, data_flaw, read_sqlite_json, shown, time_flaw
from keytrail.states import Reason, State, Trigger, initial_state
from keytrail.states.authority import (
    AuthorityAction,
    AuthorityState,
    is_authority_stream,
    lifecycle_of,
)
from keytrail.states.machine import compiled

__all__ = ["AuthorityFold", "StreamFold", "carried_ids", "fold_for", "verify_streams"]

_ACCOUNT_TRIGGERS = (Trigger.sign_in.value, Trigger.register.value)
_KEY_TRIGGERS = (Trigger.generate_key.value, Trigger.copy_key.value)
_CARRYING = frozenset(_ACCOUNT_TRIGGERS + _KEY_TRIGGERS)
_STATES = {state.value: state for state in State}
_REASONS = {reason.value: reason for reason in Reason}
# Every (trigger, source, dest, reason) spelling the machine knows, and whether the compiled machine
# takes that step: one dict lookup per event instead of four enum conversions.
_LEGAL_STEPS = compiled().legal_steps
_LEGAL: dict[tuple[str, str, str, str | None], bool] = {
    (trigger.value, source.value, dest.value, None if reason is None else reason.value): (
        (trigger, source, dest, reason) in _LEGAL_STEPS
    )
    for trigger in Trigger
    for source in State
    for dest in State
    for reason in (None, *Reason)
}


def carried_ids(trigger: str, data: dict[str, Any]) -> tuple[str | None, str | None]:
    """The (account_id, key_id) an event sets on its stream's projection; None keeps the previous one."""
    account_id = data.get("account_id") if trigger in _ACCOUNT_TRIGGERS else None
    key_id = data.get("key_id") if trigger in _KEY_TRIGGERS else None
    return account_id, key_id


class StreamFold:
    """Folds one stream's events in version order, collecting every problem it meets.

    ``check_hashes`` is verify: every problem is recorded, a row that cannot be read included.
    Without it (a replay), such a row raises :class:`~keytrail.errors.CorruptEvent` instead:
    replay has no state to report past it. ``as_of`` (spelled like the rows' ``occurred_at``)
    stops the fold at the first event dated later, in version order; the rows after it are
    still checked for time running backwards. ``time_check`` is truthy for a row's time spelled
    as keytrail writes it, for rows that come as stored (SQLite replays).
    """

    def __init__(
        self,
        stream_id: str,
        *,
        check_hashes: bool,
        as_of: str | None = None,
        time_check: Callable[[str], object] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.check_hashes = check_hashes
        self.state = initial_state()
        self.reason: Reason | None = None
        self.version = 0
        self.head_hash = GENESIS_HASH
        self.account_id: str | None = None
        self.key_id: str | None = None
        self.path: list[State] = [self.state]
        self.problems: list[Problem] = []
        self._last_position = 0
        self._as_of = as_of
        self._time_check = time_check
        self._cut = False
        # The newest time so far: times never decrease, so without a problem it is the last event's.
        self._latest = ""

    def _problem(self, version: int, kind: str, message: str) -> None:
        self.problems.append(Problem(self.stream_id, version, kind, message))

    def feed_row(self, row: AuditRow) -> None:
        """Fold the next event of the stream (an :data:`AuditRow`), recording what is wrong with it."""
        # One unpacking of the whole row: the fastest way to read it (verify runs this on every event).
        position, _, version, trigger, source, dest, reason, data, _, occurred, _, _, prev_hash, digest = row
        if (
            type(version) is not int
            or type(position) is not int
            or type(occurred) is not str
            or (self._time_check is not None and not self._time_check(occurred))
        ):
            self._unreadable(row)
            return
        if occurred < self._latest:  # one spelling per instant: text order is time order
            self._problem(
                version,
                "time",
                f"occurred_at {occurred} is before {self._latest}, the time of an earlier version: time ran backwards.",
            )
        else:
            self._latest = occurred
        if self._as_of is not None and (self._cut or occurred > self._as_of):
            self._cut = True
            return
        expected = self.version + 1
        if version != expected:
            if version > expected:
                self._problem(expected, "missing", f"version {expected} is missing: the next row is version {version}.")
            else:
                self._problem(version, "duplicate", f"version {version} comes again after version {self.version}.")
        if position <= self._last_position:
            self._problem(
                version,
                "reordered",
                f"position {position} is not after position {self._last_position} of the previous version.",
            )
        self._last_position = position
        if self.check_hashes:
            if type(data) is not dict:
                flaw = data if type(data) is Flaw else data_flaw(data)
                assert flaw is not None
                self._problem(version, flaw.kind, flaw.message)
            elif prev_hash != self.head_hash:
                self._problem(
                    version,
                    "chain",
                    "prev_hash does not match the hash of the previous version (a row was deleted, inserted or reordered).",
                )
            else:
                try:
                    computed = event_hash(prev_hash, hashed_fields(row))
                except (TypeError, ValueError):  # a column holds what JSON or UTF-8 cannot carry
                    self._problem(
                        version, "malformed", "a column holds a value keytrail never writes (it cannot be hashed)."
                    )
                else:
                    if computed != digest:
                        self._problem(
                            version, "hash", "the stored hash does not match the row's contents (the row was edited)."
                        )
        self._step(version, trigger, source, dest, reason, data)
        self.version = version
        self.head_hash = digest

    def _unreadable(self, row: AuditRow) -> None:
        """A row whose version, position or time cannot be read: a problem (verify) or CorruptEvent (replay)."""
        position, version, occurred = row[0], row[2], row[9]
        if type(version) is not int:
            flaw = Flaw("malformed", f"version is stored as {shown(version)}, not a whole number.")
        elif type(position) is not int:
            flaw = Flaw("malformed", f"position is stored as {shown(position)}, not a whole number.")
        elif type(occurred) is Flaw:
            flaw = occurred
        else:
            flaw = time_flaw(occurred)
        if not self.check_hashes:
            raise CorruptEvent(self.stream_id, version, flaw.message, position=position)
        at = version if type(version) is int else self.version + 1
        self._problem(at, flaw.kind, flaw.message)
        self.version = at
        if type(row[-1]) is str:
            self.head_hash = row[-1]

    def _step(self, version: int, trigger: str, source: str, dest: str, reason: str | None, data: Any) -> None:
        legal = _LEGAL.get((trigger, source, dest, reason))
        if legal is None:
            self._problem(
                version, "unknown", f"{trigger} from {source} to {dest} names something the machine does not know."
            )
            return
        state = _STATES[dest]
        if source != self.state:  # a StrEnum equals its spelling
            self._problem(
                version, "discontinuous", f"the event starts from {source}, but the stream was in {self.state}."
            )
        if not legal:
            self._problem(
                version,
                "illegal",
                f"{trigger} from {source} to {dest}"
                + (f" ({reason})" if reason else "")
                + " is not a step of the machine.",
            )
        self.state, self.reason = state, None if reason is None else _REASONS[reason]
        self.path.append(state)
        if trigger in _CARRYING:
            if type(data) is str:  # a replay reads SQLite's text as stored, and parses it only here
                try:
                    data = read_sqlite_json(data)
                except ValueError as exc:
                    raise CorruptEvent(self.stream_id, version, str(exc)) from None
            elif type(data) is not dict:
                if self.check_hashes:
                    return  # reported with the row's hash check
                flaw = data if type(data) is Flaw else data_flaw(data)
                raise CorruptEvent(self.stream_id, version, flaw.message if flaw else "data is not a JSON object.")
            account_id, key_id = carried_ids(trigger, data)
            self.account_id = account_id or self.account_id
            self.key_id = key_id or self.key_id

    def replay(self, as_of: datetime | None) -> Replay:
        return Replay(
            self.stream_id,
            self.state,
            self.reason,
            self.version,
            self.path,
            self.problems,
            as_of,
            self.account_id,
            self.key_id,
            self.head_hash,
        )

    def _projection(self) -> tuple[str, str | None, int, str, str | None, str | None]:
        """The projection row's (state, reason, version, head_hash, account_id, key_id) the events call for."""
        reason = None if self.reason is None else self.reason.value
        return (self.state.value, reason, self.version, self.head_hash, self.account_id, self.key_id)

    def compare(self, head: StreamHead) -> None:
        """Check the projection row against what the events say."""
        recorded = (head.state, head.reason, head.version, head.head_hash, head.account_id, head.key_id)
        folded = self._projection()
        if recorded != folded:
            self._problem(
                head.version,
                "projection",
                f"the projection says {head.state} at version {head.version}, but the events say "
                f"{folded[0]} at version {self.version}.",
            )
        elif head.updated_at is not None and iso_utc(head.updated_at) != self._latest:
            # The next command starts its time from here (times never decrease), so it must be the last event's.
            self._problem(
                head.version,
                "projection",
                f"the projection says the stream last moved at {iso_utc(head.updated_at)}, but its last event "
                f"is dated {self._latest}.",
            )


class AuthorityFold(StreamFold):
    """Folds an authority entity's stream (``@key:...``): the same row checks, its lifecycle's steps.

    Each event must be a step of the entity's lifecycle (see :mod:`keytrail.states.authority`)
    and name, in its ``data``, the entity of its stream: a key's event moved to another key's
    stream is found even when its hashes were made to agree.
    """

    def __init__(self, stream_id: str, *, check_hashes: bool) -> None:
        super().__init__(stream_id, check_hashes=check_hashes)
        self.entity = lifecycle_of(stream_id)
        self.entity_state = AuthorityState.New

    def _step(self, version: int, trigger: str, source: str, dest: str, reason: str | None, data: Any) -> None:
        if self.entity is None:
            self._problem(version, "unknown", "the stream names no kind of authority entity keytrail knows.")
            return
        life, entity_id = self.entity
        try:
            action, start, end = AuthorityAction(trigger), AuthorityState(source), AuthorityState(dest)
        except ValueError:
            self._problem(
                version, "unknown", f"{trigger} from {source} to {dest} names something the authority does not know."
            )
            return
        if start is not self.entity_state:
            self._problem(
                version,
                "discontinuous",
                f"the event starts from {source}, but the {life.kind} was {self.entity_state}.",
            )
        if (action, start, end) not in life.steps or reason is not None:
            self._problem(version, "illegal", f"{trigger} from {source} to {dest} is not a step of {life.named}.")
        if life.id_field is not None and type(data) is dict:
            named = data.get(life.id_field)
            # Compared as text: an id too long for any stream (a hostile row) is a mismatch, not a crash.
            if not isinstance(named, str) or f"@{life.kind}:{named}" != self.stream_id:
                self._problem(
                    version,
                    "entity",
                    f"the event names {life.kind} {shown(named)}, not the {life.kind} {entity_id} of its stream.",
                )
        self.entity_state = end

    def _projection(self) -> tuple[str, str | None, int, str, str | None, str | None]:
        return (self.entity_state.value, None, self.version, self.head_hash, None, None)


def fold_for(stream_id: str, *, check_hashes: bool) -> StreamFold:
    """The fold of a stream: an onboarding's, or an authority entity's (its id begins with ``@``)."""
    if is_authority_stream(stream_id):
        return AuthorityFold(stream_id, check_hashes=check_hashes)
    return StreamFold(stream_id, check_hashes=check_hashes)


def verify_streams(
    rows: Iterable[AuditRow],
    heads: Iterable[StreamHead],
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Merge-join events (ordered by stream, version) and projection rows (ordered by stream), in constant memory."""
    problems: list[Problem] = []
    head_iter = iter(heads)
    head = next(head_iter, None)
    streams = entities = total = 0
    fold: StreamFold | None = None
    done = 0

    def finish(fold: StreamFold, count: int) -> None:
        nonlocal head
        if head is not None and head.stream_id == fold.stream_id:
            if head.flaw is not None:
                fold.problems.append(
                    Problem(fold.stream_id, head.version, "malformed", "the projection row's " + head.flaw)
                )
            elif not fold.problems:
                fold.compare(head)
            head = next(head_iter, None)
        else:
            fold.problems.append(
                Problem(fold.stream_id, fold.version, "projection", "the stream has events but no projection row.")
            )
        if fold.problems:
            problems.append(fold.problems[0])
        if progress is not None:
            progress(count)

    for row in rows:
        stream_id = row[1]
        if fold is None or stream_id != fold.stream_id:
            if fold is not None:
                finish(fold, done)
            while head is not None and head.stream_id < stream_id:
                problems.append(
                    Problem(
                        head.stream_id, head.version, "orphan", "the projection has a row but the stream has no events."
                    )
                )
                head = next(head_iter, None)
            fold = fold_for(stream_id, check_hashes=True)
            if isinstance(fold, AuthorityFold):
                entities += 1
            else:
                streams += 1
            done = 0
        fold.feed_row(row)
        done += 1
        total += 1
    if fold is not None:
        finish(fold, done)
    while head is not None:
        problems.append(
            Problem(head.stream_id, head.version, "orphan", "the projection has a row but the stream has no events.")
        )
        head = next(head_iter, None)
    return VerifyReport(streams, total, problems, entities)
