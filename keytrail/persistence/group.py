"""Group commit: the commands that arrive while a commit is in progress share the next one.

At durability ``full`` each commit waits for one sync of the write-ahead log, so one writer at
a time can go no faster than the disk's sync rate. Here the callers of one engine queue their
work; the first to find no commit in progress leads: it takes what is queued (up to
``max_batch``, and never waits for more), runs each caller's work in a savepoint of one write
transaction, commits once and answers everyone. A work that fails rolls back to its savepoint
alone and its caller gets its own error; the others commit. A caller is answered only after the
commit returned, so an acknowledged event is durable at the engine's durability; if the commit
itself fails, every caller of the batch gets that error and nothing of the batch was written.

The next queued caller then leads the next batch, so no caller works for others for long.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from keytrail.errors import KeytrailError, StorageError
from keytrail.logs import get_logger
from keytrail.persistence.faults import translate_error

__all__ = ["Batchable", "CommitStats", "GroupCommit"]

_T = TypeVar("_T")
_U = TypeVar("_U", bound="Batchable")
_log = get_logger("keytrail.storage")


class Batchable(Protocol):
    """A unit of work that can hold several callers' work apart."""

    def savepoint(self) -> None: ...
    def release_savepoint(self) -> None: ...
    def rollback_to_savepoint(self) -> None: ...


@dataclass(frozen=True)
class CommitStats:
    """How many shared commits an engine made, and how many commands they held (``commands / commits``: the mean batch)."""

    commits: int
    commands: int
    largest: int
    # Time spent in shared commits (the transaction and its sync), in seconds: ``seconds / commits`` is the mean latency.
    seconds: float = 0.0


class _Ticket(Generic[_U]):
    """One caller's work, and what became of it."""

    __slots__ = ("error", "leads", "result", "wake", "work")

    def __init__(self, work: Callable[[_U], Any]) -> None:
        self.work = work
        self.wake = threading.Event()
        self.leads = False
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit(Generic[_U]):
    """Runs callers' work in shared write transactions; see the module's docstring."""

    def __init__(self, write: Callable[[], AbstractContextManager[_U]], *, max_batch: int, where: str) -> None:
        self._write = write
        self._max_batch = max_batch
        self._where = where
        self._lock = threading.Lock()
        self._queue: deque[_Ticket[_U]] = deque()
        self._leading = False
        self._commits = 0
        self._commands = 0
        self._largest = 0
        self._seconds = 0.0

    @property
    def stats(self) -> CommitStats:
        return CommitStats(self._commits, self._commands, self._largest, self._seconds)

    def run(self, work: Callable[[_U], _T]) -> _T:
        """``work(unit)`` inside a write transaction, committed (maybe with others' work) before this returns."""
        ticket: _Ticket[_U] = _Ticket(work)
        with self._lock:
            self._queue.append(ticket)
            follows = self._leading
            self._leading = True
        if follows:
            ticket.wake.wait()
            if not ticket.leads:
                result: _T = ticket.outcome()
                return result
        self._lead()
        result = ticket.outcome()
        return result

    def _lead(self) -> None:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
        try:
            self._commit(batch)
        finally:
            with self._lock:
                if self._queue:  # the next batch's first caller leads it
                    successor = self._queue[0]
                    successor.leads = True
                    successor.wake.set()
                else:
                    self._leading = False
            for ticket in batch:
                ticket.wake.set()

    def _commit(self, batch: list[_Ticket[_U]]) -> None:
        started = time.perf_counter()
        try:
            with self._write() as unit:
                if len(batch) == 1:  # alone: no savepoint, its error rolls the transaction back
                    batch[0].result = batch[0].work(unit)
                else:
                    for ticket in batch:
                        self._run_apart(unit, ticket)
        except BaseException as exc:
            for ticket in batch:
                if ticket.error is None:
                    ticket.error = exc if len(batch) == 1 else _batch_failed(exc, self._where)
                    ticket.result = None
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._commits += 1
            self._commands += len(batch)
            self._largest = max(self._largest, len(batch))
            self._seconds += time.perf_counter() - started
        if len(batch) > 1:
            _log.debug("group_commit", works=len(batch), commit_ms=round((time.perf_counter() - started) * 1000, 3))

    def _run_apart(self, unit: _U, ticket: _Ticket[_U]) -> None:
        unit.savepoint()
        try:
            ticket.result = ticket.work(unit)
        except Exception as exc:
            unit.rollback_to_savepoint()
            ticket.error = exc if isinstance(exc, KeytrailError) else translate_error(exc, self._where)
        else:
            unit.release_savepoint()


def _batch_failed(exc: BaseException, where: str) -> BaseException:
    """What each caller of a batch whose commit failed is told (a keytrail error, the same for all)."""
    if isinstance(exc, KeytrailError):
        return exc
    if isinstance(exc, Exception):
        return translate_error(exc, where)
    return StorageError(f"The commit on {where} was interrupted ({type(exc).__name__}); nothing of it was written.")
