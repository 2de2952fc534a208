"""Following the log: pages of the settled global order, an iterator that waits for new events,
and named subscriptions whose checkpoint moves only after their handler returned.

The order is ``position``'s, and only its settled prefix is ever served (see
:mod:`keytrail.persistence.feed`): a follower that moves its checkpoint to the last position
it was given never skips an event that commits late. Delivery to a subscription is
at-least-once: a handler that returned for an event whose checkpoint was not yet written (a
crash in between) sees that event again on the next run, never a gap.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keytrail import inputs
from keytrail.engine.results import Event
from keytrail.errors import InvalidInput
from keytrail.persistence.units import Storage

__all__ = ["FeedPage", "Following", "Subscription"]

_MAX_POSITION = 2**63 - 1
_MAX_LIMIT = 10_000
_BATCH_PAUSE = 0.002
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}", re.ASCII)


@dataclass(frozen=True)
class FeedPage:
    """Events of the settled global order after a position; ``next`` is the ``after`` of the next page."""

    events: list[Event]
    next: int

    def as_dict(self) -> dict[str, Any]:
        """The ``GET /v1/events`` and ``tail --json`` shape: each event as ``history --json`` prints it, with its stream."""
        return {"events": [{"stream": e.stream, **e.as_dict()} for e in self.events], "next": self.next}


def _check_after(after: object) -> int:
    return inputs.check_count("after (a position)", after, least=0, most=_MAX_POSITION)


class Following:
    """The feed side of :class:`~keytrail.engine.Engine`, which provides what is declared here."""

    _storage: Storage
    _now: Callable[[], datetime]

    def feed(self, after: int = 0, limit: int = 100) -> FeedPage:
        """Up to ``limit`` events after position ``after``, in the settled global order; never blocks on a writer."""
        after = _check_after(after)
        limit = inputs.check_count("limit", limit, least=1, most=_MAX_LIMIT)
        feed = self._storage.feed
        horizon = feed.horizon()
        if horizon <= after:
            return FeedPage([], after)
        events = feed.page(after, limit, horizon, Event.from_row)
        full = len(events) == limit
        return FeedPage(events, events[-1].position if full else horizon)

    def follow(self, after: int = 0, *, limit: int = 500, poll: float = 0.05) -> Iterator[Event]:
        """Every event after ``after``, then each new one as it settles, forever (break to stop).

        Waiting is a short poll of the horizon: full pages follow each other at once; after a
        partial one it waits 2 ms (so that a busy log is read in batches, not one query per
        event), and while nothing comes, from 1 ms growing to ``poll`` seconds.
        """
        after = _check_after(after)
        limit = inputs.check_count("limit", limit, least=1, most=_MAX_LIMIT)
        poll = inputs.check_seconds("poll", poll)
        pause = 0.001
        while True:
            page = self.feed(after, limit)
            after = page.next
            if page.events:
                pause = 0.001
                yield from page.events
                if len(page.events) < limit:
                    time.sleep(min(_BATCH_PAUSE, poll))
                continue
            time.sleep(min(pause, poll))
            pause *= 2

    def subscription(self, name: str) -> Subscription:
        """The named subscription (created with its first checkpoint), whose position is kept in the database."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(
                f"{inputs.quoted(str(name))} is not a subscription name: use 1 to 128 letters, digits and . _ - : @, "
                "beginning with a letter or digit."
            )
        return Subscription(self, name)


class Subscription:
    """A named consumer of the feed: it hands each event to a handler, then records its position."""

    def __init__(self, engine: Following, name: str) -> None:
        self._engine = engine
        self.name = name

    def __repr__(self) -> str:
        return f"Subscription({self.name!r}, position={self.position})"

    @property
    def position(self) -> int:
        """The position of the last event whose handler returned (0: none yet)."""
        return self._engine._storage.feed.checkpoint(self.name)  # noqa: SLF001 (the engine's own part)

    def run(self, handler: Callable[[Event], object], *, follow: bool = False, limit: int = 500) -> int:
        """Hand every event after the checkpoint to ``handler``, moving the checkpoint after each return.

        Without ``follow`` it returns at the end of the settled log; with it, it waits for new
        events forever. An exception from the handler leaves the checkpoint before that event and
        propagates. Returns how many events were handled.
        """
        engine = self._engine
        feed = engine._storage.feed  # noqa: SLF001 (the engine's own part)
        after = feed.checkpoint(self.name)
        handled = 0
        events = engine.follow(after, limit=limit) if follow else self._catch_up(after, limit)
        for event in events:
            handler(event)
            feed.move_checkpoint(self.name, event.position, engine._now())  # noqa: SLF001
            handled += 1
        return handled

    def _catch_up(self, after: int, limit: int) -> Iterator[Event]:
        while True:
            page = self._engine.feed(after, limit)
            yield from page.events
            if not page.events:
                return
            after = page.next
