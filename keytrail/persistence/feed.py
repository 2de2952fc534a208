"""The log as a feed: the settled global order, and the checkpoints of named subscriptions.

A reader of the global order must never move past a position that can still appear. On
SQLite the one writer commits positions in order, so whatever a reader sees is settled. On
PostgreSQL positions come from a sequence when a transaction inserts its event, and the
transaction may commit after a later one: a reader that took the later position as its
checkpoint would never see the earlier one.

The horizon here is computed without touching the write path. Read the sequence's last
value M first, then the transactions that hold a write lock on ``events`` (every inserting
transaction takes it before it draws a position, and keeps it to its end). Every position up
to M was drawn by a transaction that has committed, rolled back, or is among those holders; so
once each of them has ended (a later check no longer finds its virtual transaction id, which
is never reused), every position up to M is settled. The feed keeps such candidates and
serves up to the newest one settled: it never waits for a writer, it only does not go past one.
A transaction left open (idle in transaction) holds the horizon back until it ends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keytrail.errors import CorruptEvent
from keytrail.persistence.database import Database
from keytrail.persistence.store import _AUDIT_SCAN, _EVENT_COLUMNS, events_table
from keytrail.persistence.stored import WELL_TYPED_ROWS, checked_event, read_sqlite_json, strict_sqlite_event
from keytrail.persistence.tables import SubscriptionRow

__all__ = ["FeedReader"]

_subscriptions: sa.Table = SubscriptionRow.__table__  # type: ignore[attr-defined]
_LAST_DRAWN = "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('events', 'position')), 0)"
_WRITERS = (
    "SELECT DISTINCT virtualtransaction FROM pg_locks WHERE locktype = 'relation' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND relation = 'events'::regclass AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()"
)
_E = TypeVar("_E")
_PAGE = " WHERE position > ? AND position <= ? ORDER BY position LIMIT ?"
# Candidates kept while writers are in flight: the oldest are dropped past this (a later one settles them).
_MAX_CANDIDATES = 64


@dataclass(frozen=True)
class _Candidate:
    """Every position up to ``position`` is settled once none of ``writers`` is still in flight."""

    position: int
    writers: frozenset[str]


class FeedReader:
    """The settled prefix of the global order, pages of it, and subscription checkpoints."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._settled = 0
        self._candidates: list[_Candidate] = []

    def horizon(self, *, wait: bool = False) -> int:
        """The last position of the settled prefix: no event can commit at or below it later.

        Without ``wait`` it never blocks: positions drawn by writers still in flight are left for a
        later call. With ``wait``, it waits for the writers in flight now to end, and returns at
        least every position drawn before the call (a digest's cut).
        """
        if self._db.dialect == "sqlite":
            with self._db.read() as conn:
                return int(conn.exec_driver_sql("SELECT COALESCE(MAX(position), 0) FROM events").scalar_one())
        drawn, writers = self._drawn_and_writers()
        settled = self._settle(drawn, writers)
        pause = 0.001
        while wait and settled < drawn:
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            settled = self._settle(*self._drawn_and_writers())
        return settled

    def _drawn_and_writers(self) -> tuple[int, frozenset[str]]:
        with self._db.read() as conn:
            drawn = int(conn.exec_driver_sql(_LAST_DRAWN).scalar_one())  # first: see the module's docstring
            if drawn <= self._settled and not self._candidates:
                return drawn, frozenset()  # nothing drawn since the last settled horizon: no lock table read
            writers = frozenset(row[0] for row in conn.exec_driver_sql(_WRITERS))
        return drawn, writers

    def _settle(self, drawn: int, writers: frozenset[str]) -> int:
        """Settle the candidates whose writers have all ended; keep (``drawn``, ``writers``) as the newest."""
        with self._lock:
            settled = self._settled
            pending: list[_Candidate] = []
            for candidate in self._candidates:
                if candidate.writers & writers:
                    pending.append(candidate)
                else:
                    settled = max(settled, candidate.position)
            if writers:
                pending.append(_Candidate(drawn, writers))
            else:
                settled = max(settled, drawn)
            self._candidates = [c for c in pending if c.position > settled][-_MAX_CANDIDATES:]
            self._settled = settled
            return settled

    def page(self, after: int, limit: int, upto: int, make: Callable[[Any, Any, Any], _E]) -> list[_E]:
        """Up to ``limit`` events with ``after < position <= upto``, by position (read after the horizon was),
        each built by ``make`` (see :func:`_page`)."""
        with self._db.read() as conn:
            return _page(conn, after, upto, limit, make)

    # -- subscriptions ----------------------------------------------------------------------------

    def checkpoint(self, name: str) -> int:
        """The position subscription ``name`` has handled up to (0: none yet)."""
        with self._db.read() as conn:
            found = conn.execute(sa.select(_subscriptions.c.position).where(_subscriptions.c.name == name)).first()
        return 0 if found is None else int(found[0])

    def move_checkpoint(self, name: str, position: int, at: datetime) -> None:
        """Record that ``name`` handled every event up to ``position``."""
        with self._db.write() as conn:
            _save(conn, name, position, at)


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _feed_rows(rows: list[Any], make: Callable[[Any, Any, Any], _E]) -> list[_E]:
    """SQLite rows of a feed page, each column checked as :func:`strict_sqlite_event` checks it, faster.

    ``data`` texts repeat (every page view of a stream records the same verdict): each distinct
    text is checked once per page; a flat object (keytrail's are) is then copied for each row, a
    fresh dict that no other event shares; any other is parsed again.
    """
    flat: dict[str, dict[str, Any] | None] = {}
    typed, parse = WELL_TYPED_ROWS, datetime.fromisoformat
    out = []
    for row in rows:
        text, stamp = row[7], row[9]
        # The time's shape (see SQLITE_TIME_SHAPE) at a fraction of the regex's cost: 26 characters, the
        # separators in place, and fromisoformat below (which takes only ASCII digits around them).
        if tuple(map(type, row)) not in typed or len(stamp) != 26 or stamp[10] != " " or stamp[19] != ".":
            strict_sqlite_event(row)  # raises CorruptEvent naming what is wrong
        try:
            occurred = parse(stamp + "+00:00")
            if text in flat:
                known = flat[text]
                data = json.loads(text) if known is None else known.copy()
            else:
                data = read_sqlite_json(text)
                flat[text] = dict(data) if all(type(v) in _SCALARS for v in data.values()) else None
        except ValueError as exc:
            raise CorruptEvent(row[1], row[2], str(exc), position=row[0]) from None
        out.append(make(row, data, occurred))
    return out


def _page(conn: Connection, after: int, upto: int, limit: int, make: Callable[[Any, Any, Any], _E]) -> list[_E]:
    """Up to ``limit`` events with ``after < position <= upto``, in position order, each checked as every
    reader checks them (CorruptEvent naming a damaged one) and built by ``make(row, data, occurred_at)``:
    ``row`` holds :class:`~keytrail.events.RecordedEvent`'s fields in order, ``data`` and ``occurred_at`` read."""
    if conn.dialect.name == "sqlite":
        dbapi: Any = conn.connection.driver_connection
        return _feed_rows(dbapi.execute(_AUDIT_SCAN + _PAGE, (after, upto, limit)).fetchall(), make)
    position = events_table.c.position
    query = sa.select(*_EVENT_COLUMNS).where(position > after, position <= upto).order_by(position).limit(limit)
    rows = conn.execute(query).all()
    for row in rows:
        if type(row[7]) is not dict:
            checked_event(row)  # raises CorruptEvent naming it
    return [make(row, row[7], row[9]) for row in rows]


def _save(conn: Connection, name: str, position: int, at: datetime) -> None:
    values = {"position": position, "updated_at": at}
    moved = conn.execute(sa.update(_subscriptions).where(_subscriptions.c.name == name).values(**values))
    if moved.rowcount == 0:
        conn.execute(sa.insert(_subscriptions).values(name=name, **values))
