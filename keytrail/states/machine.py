"""The one interpreter of :data:`keytrail.states.TABLE`: the ``transitions`` machine, compiled once.

:class:`OnboardingMachine` builds a ``transitions`` ``Machine`` from the table's rows (a
guard becomes a ``conditions``/``unless`` check of the saved key's validity). :func:`compiled`
fires every trigger from every state, with the key valid and not valid, through that machine
once per process and keeps the answers as a :class:`DecisionTable`: a frozen mapping
``(trigger, state, key_valid) -> Decision`` and the views derived from it (the triggers allowed
in each state, the states each trigger fires from, the legal recorded steps, every transition).
The engine, replay and verify, and path generation all read that table, so what the machine
answers is what every part of keytrail does, and a row changed in the table changes all of them.

The guards ask one thing, whether the saved key verifies at the instant the trigger fires,
so a plain ``bool`` decides them; the engine turns its verdict into that ``bool``. Like the
rest of :mod:`keytrail.states`, this module imports nothing else of keytrail's (``transitions``
is a third-party library).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any, NamedTuple

from transitions import EventData, Machine, MachineError

from keytrail.states import TABLE, Guard, Reason, Row, State, Trigger, initial_state

__all__ = ["Decision", "DecisionTable", "Edge", "OnboardingMachine", "compile_machine", "compiled", "machine"]


class Decision(NamedTuple):
    """Where a trigger leads, the guard ``transitions`` checked to take it (None: none), and the row it came from."""

    dest: State
    guard: Guard | None
    row: Row


class Edge(NamedTuple):
    """One transition the machine can take: ``trigger`` from ``source`` to ``dest``, under ``guard``."""

    trigger: Trigger
    source: State
    dest: State
    guard: Guard | None


def _key_valid(event: EventData) -> bool:
    return bool(event.kwargs["key_valid"])


class _Token:
    """What ``transitions`` calls a model: the state being moved, and what decided the transition that fired."""

    __slots__ = ("guard", "row", "state")

    def __init__(self, state: State) -> None:
        self.state = state
        self.guard: Guard | None = None
        self.row: Row | None = None


def _taken(row: Row) -> Any:
    """The ``after`` callback of one row's transitions: notes the row, and the guard transitions checked."""

    def record(event: EventData) -> None:
        fired, token = event.transition, event.model
        assert fired is not None
        assert isinstance(token, _Token)
        # A condition that must hold is key_valid, one that must not (``unless``) is key_not_valid.
        guards = [Guard.key_valid if check.target else Guard.key_not_valid for check in fired.conditions]
        assert len(guards) <= 1
        token.row = row
        token.guard = guards[0] if guards else None

    return record


class OnboardingMachine:
    """A ``transitions`` machine with the rows and guards of a table; fires triggers on a state.

    Building a ``Machine`` costs about a millisecond and ``add_model`` slows as models pile up,
    so no model is registered: each firing moves a throwaway token carrying the state.
    """

    def __init__(self, table: tuple[Row, ...] = TABLE) -> None:
        self.table = table
        specs: list[dict[str, Any]] = []
        for row in table:
            spec: dict[str, Any] = {
                "trigger": row.trigger.value,
                "source": list(row.sources),
                "dest": row.dest,
                "after": [_taken(row)],
            }
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

    def fire(self, trigger: Trigger, state: State, key_valid: bool) -> Decision | None:
        """What the machine does with ``trigger`` in ``state``; None when no transition of it can fire there."""
        event = self._machine.events.get(trigger.value)
        if event is None:
            return None
        token = _Token(state)
        try:
            if not event.trigger(token, key_valid=key_valid):
                return None
        except MachineError:  # the trigger has no transition from this state
            return None
        assert token.row is not None
        return Decision(token.state, token.guard, token.row)


@dataclass(frozen=True)
class DecisionTable:
    """Every answer of the machine, compiled: what the engine, replay and path generation read.

    ``decisions`` holds an entry for each (trigger, state, key_valid) the machine fires;
    ``dests`` is the same keyed the same way with just the destination (the engine's one
    dict lookup per command). ``allowed`` lists the triggers of each state in
    :class:`Trigger` order, ``sources`` the states of each trigger in :class:`State` order.
    ``legal_steps`` are the (trigger, source, dest, reason) an event may record: a step
    decided by a guard with the key not valid carries a reason, any other none. ``edges``
    are the transitions in table order (row by row, source by source).
    """

    decisions: Mapping[tuple[Trigger, State, bool], Decision]
    dests: Mapping[tuple[Trigger, State, bool], State]
    allowed: Mapping[State, tuple[Trigger, ...]]
    sources: Mapping[Trigger, tuple[State, ...]]
    legal_steps: frozenset[tuple[Trigger, State, State, Reason | None]]
    edges: tuple[Edge, ...]


def compile_machine(fired: OnboardingMachine) -> DecisionTable:
    """Fire every (trigger, state, key validity) through ``fired`` once, and keep the answers.

    A table that lets a trigger fire from a state for one key validity and not the other is
    refused (ValueError): the engine would have no answer for the other once it had allowed the trigger.
    """
    table = fired.table
    decisions: dict[tuple[Trigger, State, bool], Decision] = {}
    for trigger in Trigger:
        for state in State:
            answers = {valid: fired.fire(trigger, state, valid) for valid in (True, False)}
            for valid, decision in answers.items():
                if decision is not None:
                    decisions[trigger, state, valid] = decision
                elif answers[not valid] is not None:
                    raise ValueError(
                        f"The table lets {trigger.value} fire from {state.value} only when the key is "
                        f"{'not valid' if valid else 'valid'}; it needs a row for the other case too."
                    )
    allowed_pairs = {(trigger, state) for trigger, state, _ in decisions}
    legal: set[tuple[Trigger, State, State, Reason | None]] = set()
    for (trigger, state, valid), decision in decisions.items():
        reasons: tuple[Reason | None, ...] = tuple(Reason) if decision.guard is not None and not valid else (None,)
        legal.update((trigger, state, decision.dest, reason) for reason in reasons)
    order = {row: index for index, row in reversed(list(enumerate(table)))}
    edges = {
        Edge(trigger, state, decision.dest, decision.guard): (order[decision.row], decision.row.sources.index(state))
        for (trigger, state, _), decision in decisions.items()
    }
    return DecisionTable(
        decisions=MappingProxyType(decisions),
        dests=MappingProxyType({key: decision.dest for key, decision in decisions.items()}),
        allowed=MappingProxyType({s: tuple(t for t in Trigger if (t, s) in allowed_pairs) for s in State}),
        sources=MappingProxyType({t: tuple(s for s in State if (t, s) in allowed_pairs) for t in Trigger}),
        legal_steps=frozenset(legal),
        edges=tuple(sorted(edges, key=edges.__getitem__)),
    )


@cache
def machine() -> OnboardingMachine:
    """The process-wide machine of :data:`~keytrail.states.TABLE`, built on first use."""
    return OnboardingMachine()


@cache
def compiled() -> DecisionTable:
    """The process-wide decision table of :data:`~keytrail.states.TABLE`, compiled on first use."""
    return compile_machine(machine())
