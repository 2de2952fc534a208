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

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from keytrail.errors import StorageError
from keytrail.logs import get_logger

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
    # Callers queued for the next commit when the figures were read.
    waiting: int = 0


class _Ticket(Generic[_U]):
    """One caller's work, the caller's context (its log fields and request ids), and what became of it."""

    __slots__ = ("context", "error", "leads", "result", "wake", "work")

    def __init__(self, work: Callable[[_U], Any]) -> None:
        self.work = work
        self.context = contextvars.copy_context()
        self.wake = threading.Event()
        self.leads = False
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit(Generic[_U]):
    """Runs callers' work in shared write transactions; see the module's docstring.

    ``translate`` turns a driver's or SQLAlchemy's error into keytrail's (anything else is
    handed back as it was raised), as a transaction of one caller would.
    """

    def __init__(
        self,
        write: Callable[[], AbstractContextManager[_U]],
        *,
        max_batch: int,
        where: str,
        translate: Callable[[BaseException], BaseException],
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._where = where
        self._translate = translate
        self._lock = threading.Lock()
        self._queue: deque[_Ticket[_U]] = deque()
        self._leading = False
        # The thread running a batch: a command it starts from inside one (a verifier that drives
        # the engine) could only wait for itself.
        self._leader: int | None = None
        self._commits = 0
        self._commands = 0
        self._largest = 0
        self._seconds = 0.0

    @property
    def stats(self) -> CommitStats:
        return CommitStats(self._commits, self._commands, self._largest, self._seconds, len(self._queue))

    def run(self, work: Callable[[_U], _T]) -> _T:
        """``work(unit)`` inside a write transaction, committed (maybe with others' work) before this returns."""
        if self._leader == threading.get_ident():
            raise StorageError(
                f"A command was started on {self._where} from inside another command's transaction on the same "
                "thread (a key verifier that drives the engine?); it would wait for itself. Nothing was written."
            )
        ticket: _Ticket[_U] = _Ticket(work)
        with self._lock:
            self._queue.append(ticket)
            follows = self._leading
            self._leading = True
        if follows:
            try:
                ticket.wake.wait()
            except BaseException:
                self._abandon(ticket)
                raise
            if not ticket.leads:
                result: _T = ticket.outcome()
                return result
        self._lead()
        result = ticket.outcome()
        return result

    def _abandon(self, ticket: _Ticket[_U]) -> None:
        """A waiting caller interrupted (Ctrl-C): its work never runs if no batch took it yet, and
        leadership handed to it passes on, so that no one waits for a caller who left."""
        with self._lock:
            if ticket in self._queue:
                self._queue.remove(ticket)
                if ticket.leads:
                    self._hand_on()

    def _hand_on(self) -> None:
        """Under the lock: the next batch's first caller leads it, or no one leads."""
        if self._queue:
            successor = self._queue[0]
            successor.leads = True
            successor.wake.set()
        else:
            self._leading = False

    def _lead(self) -> None:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
        self._leader = threading.get_ident()
        try:
            self._commit(batch)
        finally:
            self._leader = None
            with self._lock:
                self._hand_on()
            for ticket in batch:
                ticket.wake.set()

    def _commit(self, batch: list[_Ticket[_U]]) -> None:
        started = time.perf_counter()
        committed = False
        try:
            with self._write() as unit:
                if len(batch) == 1:  # alone: no savepoint, its error rolls the transaction back
                    batch[0].result = batch[0].context.run(batch[0].work, unit)
                else:
                    for ticket in batch:
                        self._run_apart(unit, ticket)
            committed = True
        except BaseException as exc:
            if not committed:
                for ticket in batch:
                    if ticket.error is None:
                        ticket.error = exc if len(batch) == 1 else self._batch_failed(exc)
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
            ticket.result = ticket.context.run(ticket.work, unit)
        except BaseException as exc:  # its own caller gets it, in its own thread
            unit.rollback_to_savepoint()
            ticket.error = self._translate(exc)
        else:
            unit.release_savepoint()

    def _batch_failed(self, exc: BaseException) -> BaseException:
        """What each caller of a batch whose commit failed is told (the same for all)."""
        if isinstance(exc, Exception):
            return self._translate(exc)
        return StorageError(
            f"The commit on {self._where} was interrupted ({type(exc).__name__}) and may or may not have been "
            "written: read the onboarding before retrying."
        )
