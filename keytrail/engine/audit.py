"""Replay and verification: rebuilding state from events alone, and re-checking every chain.

Both fold a stream's events through :class:`StreamFold`, which checks each step against the
current machine table; the engine uses :func:`carried_ids` when it writes the projection, so
replay and the live projection are derived the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from keytrail.engine.results import Problem, Replay, VerifyReport
from keytrail.persistence import GENESIS_HASH, RecordedEvent, StreamHead
from keytrail.persistence.hashing import chain_hash_iso
from keytrail.persistence.store import AuditRow
from keytrail.states import Reason, State, Trigger, initial_state, is_legal_step

__all__ = ["StreamFold", "carried_ids", "verify_streams"]

_ACCOUNT_TRIGGERS = (Trigger.sign_in.value, Trigger.register.value)
_KEY_TRIGGERS = (Trigger.generate_key.value, Trigger.copy_key.value)
_CARRYING = frozenset(_ACCOUNT_TRIGGERS + _KEY_TRIGGERS)
_STATES = {state.value: state for state in State}
_REASONS = {reason.value: reason for reason in Reason}
# Every (trigger, source, dest, reason) spelling the machine knows, and whether the table allows it:
# one dict lookup per event instead of four enum conversions and a table scan.
_LEGAL: dict[tuple[str, str, str, str | None], bool] = {
    (trigger.value, source.value, dest.value, None if reason is None else reason.value): is_legal_step(
        trigger, source, dest, reason
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
    """Folds one stream's events in version order, collecting every problem it meets."""

    def __init__(self, stream_id: str, *, check_hashes: bool) -> None:
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

    def _problem(self, version: int, kind: str, message: str) -> None:
        self.problems.append(Problem(self.stream_id, version, kind, message))

    def feed(self, event: RecordedEvent) -> None:
        self.feed_row(event.audit_row())

    def feed_row(self, row: AuditRow) -> None:
        """Fold the next event of the stream (an :data:`AuditRow`), recording what is wrong with it."""
        (
            position,
            stream_id,
            version,
            trigger,
            source,
            dest,
            reason,
            data,
            actor,
            occurred,
            idem,
            schema,
            prev_hash,
            digest,
        ) = row
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
            if prev_hash != self.head_hash:
                self._problem(
                    version,
                    "chain",
                    "prev_hash does not match the hash of the previous version (a row was deleted, inserted or reordered).",
                )
            elif (
                chain_hash_iso(
                    prev_hash,
                    {
                        "stream_id": stream_id,
                        "version": version,
                        "trigger": trigger,
                        "source": source,
                        "dest": dest,
                        "reason": reason,
                        "data": data,
                        "actor": actor,
                        "occurred_at": occurred,
                        "idempotency_key": idem,
                        "schema_version": schema,
                    },
                )
                != digest
            ):
                self._problem(
                    version, "hash", "the stored hash does not match the row's contents (the row was edited)."
                )
        self._step(version, trigger, source, dest, reason, data)
        self.version = version
        self.head_hash = digest

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
            if isinstance(data, str):  # a replay reads data as stored, and parses it only here
                try:
                    data = json.loads(data)
                except ValueError:
                    return
            if not isinstance(data, dict):
                return
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

    def compare(self, head: StreamHead) -> None:
        """Check the projection row against what the events say."""
        recorded = (head.state, head.reason, head.version, head.head_hash, head.account_id, head.key_id)
        folded = (
            self.state.value,
            None if self.reason is None else self.reason.value,
            self.version,
            self.head_hash,
            self.account_id,
            self.key_id,
        )
        if recorded != folded:
            self._problem(
                head.version,
                "projection",
                f"the projection says {head.state} at version {head.version}, but the events say "
                f"{self.state} at version {self.version}.",
            )


def verify_streams(
    rows: Iterable[AuditRow],
    heads: Iterable[StreamHead],
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Merge-join events (ordered by stream, version) and projection rows (ordered by stream), in constant memory."""
    problems: list[Problem] = []
    head_iter = iter(heads)
    head = next(head_iter, None)
    streams = total = 0
    fold: StreamFold | None = None
    done = 0

    def finish(fold: StreamFold, count: int) -> None:
        nonlocal head
        if head is not None and head.stream_id == fold.stream_id:
            if not fold.problems:
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
            fold = StreamFold(stream_id, check_hashes=True)
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
    return VerifyReport(streams, total, problems)
