"""Reading an onboarding's path back, and :func:`assert_path`'s side-by-side report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keytrail.errors import UnknownOnboarding
from keytrail.states import State, initial_state

if TYPE_CHECKING:
    from keytrail.engine import Engine, Event

__all__ = ["assert_path", "history_of", "path_of", "path_table"]


def history_of(engine: Engine, stream: str) -> list[Event]:
    try:
        return engine.history(stream)
    except UnknownOnboarding:
        return []


def path_of(engine: Engine, stream: str) -> list[State]:
    """The states the onboarding went through, starting with Unverified (just that for an unknown onboarding)."""
    return [initial_state(), *(event.dest for event in history_of(engine, stream))]


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def path_table(
    expected: Sequence[State] | None, events: Sequence[Event], mark: int | None = None
) -> tuple[int | None, str]:
    """A table of expected and actual states with the first difference marked, and the events that led there.

    Without ``expected``, just the actual path, with row ``mark`` marked.
    """
    actual = [initial_state(), *(e.dest for e in events)]
    first = mark
    if expected is not None:
        first = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a is not b), None)
        if first is None and len(expected) != len(actual):
            first = min(len(expected), len(actual))
    want = list(expected or [])
    rows: list[tuple[str, ...]] = [("", "step", "expected", "actual", "trigger", "reason", "at")]
    for i in range(max(len(want), len(actual))):
        event = events[i - 1] if 0 < i <= len(events) else None
        rows.append(
            (
                ">" if i == first else "",
                str(i),
                want[i].value if i < len(want) else "-",
                actual[i].value if i < len(actual) else "-",
                "(start)" if i == 0 else (event.trigger.value if event else ""),
                event.reason.value if event and event.reason else "",
                _when(event.occurred_at) if event else "",
            )
        )
    if expected is None:
        rows = [row[:2] + row[3:] for row in rows]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return first, "\n".join(lines)


def assert_path(engine: Engine, stream: str, expected: Iterable[State | str]) -> None:
    """Pass when the onboarding went through exactly ``expected`` (Unverified first); else show both, side by side."""
    __tracebackhide__ = True
    want = [State(s) for s in expected]
    events = history_of(engine, stream)
    first, table = path_table(want, events)
    if first is None:
        return
    message = [
        f"The onboarding {stream!r} did not go through the expected states; the first difference is at step {first}."
    ]
    if want and want[0] is not initial_state():
        message.append(f"(A path starts at {initial_state().value}, the state before the first event.)")
    raise AssertionError("\n".join([*message, "", table]))
