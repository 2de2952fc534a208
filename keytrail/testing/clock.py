"""Frozen time for onboarding tests: the clock behind the ``keytrail_clock`` fixture.

freezegun is imported when a clock is first frozen, not when the plugin loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

__all__ = ["DEFAULT_START", "Advancing", "FrozenClock", "frozen_clock"]

DEFAULT_START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


class FrozenClock:
    """Frozen time (freezegun) as an engine clock: calling it returns now, aware UTC; only the test moves it."""

    def __init__(self, frozen: Any) -> None:
        self._frozen = frozen

    def __call__(self) -> datetime:
        return self.now

    def __repr__(self) -> str:
        return f"FrozenClock({self.now.isoformat()})"

    @property
    def now(self) -> datetime:
        """The frozen instant."""
        instant: datetime = self._frozen()
        return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move time forward by ``delta`` or by ``timedelta`` keywords (``advance(days=31)``); returns the new now."""
        if (delta is None) == (not kwargs):
            raise TypeError("advance() takes a timedelta or timedelta keywords such as days=31, not both or neither.")
        step = delta if delta is not None else timedelta(**kwargs)
        if not isinstance(step, timedelta):
            raise TypeError(f"advance() takes a timedelta, not {type(step).__name__}.")
        self._frozen.tick(step)
        return self.now

    def set(self, instant: datetime | str) -> datetime:
        """Jump to ``instant`` (aware, or an ISO 8601 string with its offset), forward or back; returns it."""
        when = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"set() needs a timezone-aware instant, not {when.isoformat()}: keytrail keeps UTC times.")
        self._frozen.move_to(when.astimezone(UTC))
        return self.now


@contextmanager
def frozen_clock(start: datetime | str = DEFAULT_START) -> Iterator[FrozenClock]:
    """Freeze time at ``start`` (freezegun) for the ``with`` block; what ``keytrail_clock`` uses."""
    try:
        from freezegun import freeze_time
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError("keytrail_clock and frozen_clock need freezegun: pip install freezegun") from None
    when = datetime.fromisoformat(start) if isinstance(start, str) else start
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"frozen_clock() needs a timezone-aware start, not {when.isoformat()}.")
    with freeze_time(when.astimezone(UTC)) as frozen:
        yield FrozenClock(frozen)


class Advancing(Protocol):
    """A clock a test can move: what ``drive`` needs to advance time past expiry."""

    def advance(self, delta: timedelta) -> object: ...
