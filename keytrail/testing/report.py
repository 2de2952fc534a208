"""Reading an onboarding's path back, and :func:`assert_path`'s side-by-side report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keytrail.errors import UnknownOnboarding
from keytrail.states import State, initial_state
from keytrail.states.steps import state_named

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
    return [initial_state(), *(event.onboarding_step()[2] for event in history_of(engine, stream))]


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def path_table(
    expected: Sequence[State] | None, events: Sequence[Event], mark: int | None = None, start: int = 0
) -> tuple[int | None, str]:
    """A table of expected and actual states with the first difference marked, and the events that led there.

    ``expected`` lines up with the actual path from step ``start`` on, which must match to its
    end. Without ``expected``, just the actual path, with row ``mark`` marked.
    """
    actual = [initial_state(), *(e.dest for e in events)]
    want = list(expected or [])
    end = max(start + len(want), len(actual))

    def wanted(i: int) -> State | None:
        return want[i - start] if start <= i < start + len(want) else None

    first = mark
    if expected is not None:
        first = next((i for i in range(start, end) if wanted(i) is not (actual[i] if i < len(actual) else None)), None)
    rows: list[tuple[str, ...]] = [("", "step", "expected", "actual", "trigger", "reason", "at")]
    for i in range(end):
        event = events[i - 1] if 0 < i <= len(events) else None
        state = wanted(i)
        rows.append(
            (
                ">" if i == first else "",
                str(i),
                state.value if state is not None else ("" if i < start else "-"),
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


def assert_path(
    engine: Engine,
    stream: str,
    expected: Iterable[State | str],
    *,
    from_step: int | None = None,
    last: int | None = None,
) -> None:
    """Pass when the onboarding went through exactly ``expected``; else show both, side by side.

    By default ``expected`` is the whole path, Unverified (step 0, before the first event)
    first. ``from_step=k`` checks the path from step k to its end (step k is the state after
    the k-th event); ``last=n`` checks its last n states (``expected`` then has n of them),
    whatever came before. The report numbers steps as in the whole path either way. A
    misspelt state name is a ValueError that suggests the state meant.
    """
    __tracebackhide__ = True
    if from_step is not None and last is not None:
        raise TypeError("assert_path() takes from_step or last, not both.")
    try:
        want = [state_named(s) for s in expected]
    except ValueError as exc:  # a misspelt state: the sentence suggests the one meant
        raise exc.with_traceback(None)  # noqa: B904 - the same exception, re-raised without its frames
    events = history_of(engine, stream)
    start, where = 0, ""
    if from_step is not None:
        if from_step < 0:
            raise ValueError(f"from_step counts from 0 (Unverified), so it cannot be {from_step}.")
        start, where = from_step, f" from step {from_step}"
    elif last is not None:
        if last < 1:
            raise ValueError(f"last counts the states to check, so it is at least 1, not {last}.")
        if len(want) != last:
            raise ValueError(f"last={last} takes {last} expected states, not {len(want)}.")
        start, where = max(0, len(events) + 1 - last), f" in its last {last} states"
    first, table = path_table(want, events, start=start)
    if first is None:
        return
    message = [
        f"The onboarding {stream!r} did not go through the expected states{where}; the first difference is at step {first}."
    ]
    if start == 0 and want and want[0] is not initial_state():
        message.append(f"(A path starts at {initial_state().value}, the state before the first event.)")
    raise AssertionError("\n".join([*message, "", table]))
