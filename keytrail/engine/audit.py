"""Replay and verification: rebuilding state from events alone, and re-checking every chain.

Both fold a stream's events through :class:`StreamFold`, which checks each step against the
current machine table; the engine uses :func:`carried_ids` when it writes the projection, so
replay and the live projection are derived the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from keytrail.engine.results import Problem, Replay, VerifyReport
from keytrail.persistence import GENESIS_HASH, RecordedEvent, StreamHead, chain_hash
from keytrail.states import Reason, State, Trigger, initial_state, is_legal_step

__all__ = ["StreamFold", "carried_ids", "verify_streams"]

_ACCOUNT_TRIGGERS = (Trigger.sign_in.value, Trigger.register.value)
_KEY_TRIGGERS = (Trigger.generate_key.value, Trigger.copy_key.value)


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
        expected = self.version + 1
        if event.version != expected:
            if event.version > expected:
                self._problem(
                    expected, "missing", f"version {expected} is missing: the next row is version {event.version}."
                )
            else:
                self._problem(
                    event.version, "duplicate", f"version {event.version} comes again after version {self.version}."
                )
        if event.position <= self._last_position:
            self._problem(
                event.version,
                "reordered",
                f"position {event.position} is not after position {self._last_position} of the previous version.",
            )
        self._last_position = event.position
        if self.check_hashes:
            if event.prev_hash != self.head_hash:
                self._problem(
                    event.version,
                    "chain",
                    "prev_hash does not match the hash of the previous version (a row was deleted, inserted or reordered).",
                )
            elif chain_hash(event.prev_hash, event.hashed_fields()) != event.hash:
                self._problem(
                    event.version, "hash", "the stored hash does not match the row's contents (the row was edited)."
                )
        self._step(event)
        self.version = event.version
        self.head_hash = event.hash

    def _step(self, event: RecordedEvent) -> None:
        try:
            trigger, source, dest = Trigger(event.trigger), State(event.source), State(event.dest)
            reason = None if event.reason is None else Reason(event.reason)
        except ValueError:
            self._problem(
                event.version,
                "unknown",
                f"{event.trigger} from {event.source} to {event.dest} names something the machine does not know.",
            )
            return
        if source is not self.state:
            self._problem(
                event.version, "discontinuous", f"the event starts from {source}, but the stream was in {self.state}."
            )
        if not is_legal_step(trigger, source, dest, reason):
            self._problem(
                event.version,
                "illegal",
                f"{trigger} from {source} to {dest}"
                + (f" ({reason})" if reason else "")
                + " is not a step of the machine.",
            )
        self.state, self.reason = dest, reason
        self.path.append(dest)
        account_id, key_id = carried_ids(event.trigger, event.data)
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


def _group(events: Iterable[RecordedEvent]) -> Iterator[tuple[str, list[RecordedEvent]]]:
    """Consecutive events of one stream at a time (the input is ordered by stream, version)."""
    current: str | None = None
    batch: list[RecordedEvent] = []
    for event in events:
        if event.stream_id != current:
            if current is not None:
                yield current, batch
            current, batch = event.stream_id, []
        batch.append(event)
    if current is not None:
        yield current, batch


def verify_streams(
    events: Iterable[RecordedEvent],
    heads: Iterable[StreamHead],
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Merge-join events and projection rows, both ordered by stream id, in constant memory per stream."""
    problems: list[Problem] = []
    head_iter = iter(heads)
    head = next(head_iter, None)
    streams = total = 0
    for stream_id, batch in _group(events):
        while head is not None and head.stream_id < stream_id:
            problems.append(
                Problem(
                    head.stream_id, head.version, "orphan", "the projection has a row but the stream has no events."
                )
            )
            head = next(head_iter, None)
        fold = StreamFold(stream_id, check_hashes=True)
        for event in batch:
            fold.feed(event)
        if head is not None and head.stream_id == stream_id:
            if not fold.problems:
                fold.compare(head)
            head = next(head_iter, None)
        else:
            fold.problems.append(
                Problem(stream_id, fold.version, "projection", "the stream has events but no projection row.")
            )
        if fold.problems:
            problems.append(fold.problems[0])
        streams += 1
        total += len(batch)
        if progress is not None:
            progress(len(batch))
    while head is not None:
        problems.append(
            Problem(head.stream_id, head.version, "orphan", "the projection has a row but the stream has no events.")
        )
        head = next(head_iter, None)
    return VerifyReport(streams, total, problems)
