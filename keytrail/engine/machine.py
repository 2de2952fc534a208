"""The one ``transitions`` machine of the process, built from :data:`keytrail.states.TABLE`.

Building a ``Machine`` costs about a millisecond and ``add_model`` slows as models pile
up, so there is one machine and no registered models: each command fires the event on a
throwaway token that carries the stream's current state.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from transitions import EventData, Machine

from keytrail.portal.ports import Verdict
from keytrail.states import TABLE, Guard, State, Trigger, initial_state

__all__ = ["OnboardingMachine", "machine"]


def _key_valid(event: EventData) -> bool:
    verdict: Verdict | None = event.kwargs.get("verdict")
    return verdict is not None and verdict.valid


class _Token:
    """What ``transitions`` calls a model: here just the state being moved."""

    __slots__ = ("state",)

    def __init__(self, state: State) -> None:
        self.state = state


class OnboardingMachine:
    """Fires triggers through ``transitions`` on a state, with the guards of the table."""

    def __init__(self) -> None:
        specs: list[dict[str, Any]] = []
        for row in TABLE:
            spec: dict[str, Any] = {"trigger": row.trigger.value, "source": list(row.sources), "dest": row.dest}
            if row.guard is Guard.key_valid:
                spec["conditions"] = [_key_valid]
            elif row.guard is Guard.key_not_valid:
                spec["unless"] = [_key_valid]
            specs.append(spec)
        self._machine = Machine(
            model=None,
            states=list(State),
            initial=initial_state(),
            transitions=specs,
            auto_transitions=False,
            send_event=True,
        )

    def fire(self, trigger: Trigger, state: State, verdict: Verdict | None = None) -> State:
        """The state ``trigger`` leads to from ``state``; the caller has checked it is allowed."""
        token = _Token(state)
        if not self._machine.events[trigger.value].trigger(token, verdict=verdict):
            raise AssertionError(f"The table has no row for {trigger} from {state} with this verdict.")
        return token.state


@cache
def machine() -> OnboardingMachine:
    """The process-wide machine, built on first use."""
    return OnboardingMachine()
