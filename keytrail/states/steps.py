"""The step language of generated paths: what a step is, how it prints and how a line reads back.

A :class:`Step` is a trigger of the machine (with what ``save_config`` pastes, and where the
step must lead) or an :class:`Env` step, a change to the key world that is no trigger. Every
step prints as the line :func:`parse_step` reads back, so a generated path is also a readable
list that ``keytrail.testing.drive`` runs. :func:`transitions` lists what the compiled machine
can take, the unit path generation counts.

Like the rest of :mod:`keytrail.states`, this module imports nothing else of keytrail's; the
``transitions`` machine is compiled on first use, not on import, so importing the pytest
plugin stays cheap.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import TypeVar

from keytrail.states import Guard, Reason, State, Trigger

__all__ = [
    "DETOUR_COST",
    "Env",
    "Paste",
    "Step",
    "Transition",
    "Verification",
    "parse_step",
    "state_named",
    "suggestion",
    "transitions",
]


class Verification(StrEnum):
    """What verifying the saved key answers: valid, or one of the :class:`~keytrail.states.Reason` values."""

    valid = "valid"
    missing = "missing"
    invalid = "invalid"
    expired = "expired"

    @property
    def reason(self) -> Reason | None:
        """The prompt's reason this outcome gives (None when the key is valid)."""
        return None if self is Verification.valid else Reason(self.value)


class Env(StrEnum):
    """A change to the key world that is no trigger of the machine; ``.value`` is how a step list spells it."""

    revoke_saved_key = "revoke the saved key"
    expire_keys = "advance time past expiry"
    save_key_outside = "save a live key outside keytrail"


class Paste(StrEnum):
    """What ``save_config`` pastes into "Production Api key"."""

    key_in_hand = "key in hand"  # the key last generated or copied on this onboarding
    never_issued = "never issued"  # a well-formed key the authority never issued
    asterisks = "asterisks"  # the page's mask of the saved key: keeps it


# The price of a step when looking for the cheapest path. Saving a key outside keytrail is a
# detour (no admin clicks through it), so generated paths take it only where nothing else works.
DETOUR_COST = 10
_COSTS: dict[Env, int] = {Env.revoke_saved_key: 1, Env.expire_keys: 1, Env.save_key_outside: DETOUR_COST}


@dataclass(frozen=True)
class Transition:
    """One transition of the table: a row's trigger from one of its sources to its destination."""

    trigger: Trigger
    source: State
    dest: State
    guard: Guard | None = None

    def __str__(self) -> str:
        guard = f" [{self.guard.value}]" if self.guard is not None else ""
        return f"{self.trigger.value}: {self.source.value} -> {self.dest.value}{guard}"

    @property
    def id(self) -> str:
        """A short name for test ids: ``access-KeyCopied-Validated``."""
        return f"{self.trigger.value}-{self.source.value}-{self.dest.value}"


@cache
def transitions() -> tuple[Transition, ...]:
    """Every (trigger, source, destination, guard) the compiled machine takes, in table order."""
    from keytrail.states.machine import compiled  # built on first use: importing the plugin stays cheap

    return tuple(Transition(*edge) for edge in compiled().edges)


@dataclass(frozen=True)
class Step:
    """One line of a sequence: a trigger (with what it pastes, and what it should lead to) or an :class:`Env` step."""

    action: Trigger | Env
    paste: Paste | None = None
    expect: State | None = None
    outcome: Verification | None = None

    def __post_init__(self) -> None:
        if isinstance(self.action, Env) and (self.paste, self.expect, self.outcome) != (None, None, None):
            raise ValueError(
                f"The step {self.action.value!r} moves no state: it takes no paste, expectation or outcome."
            )
        if self.paste is not None and self.action is not Trigger.save_config:
            raise ValueError(f"Only save_config pastes a key, not {self.action.value}.")
        if self.outcome is not None and self.expect is None:
            raise ValueError("A verification outcome is checked only with an expected state (`-> State (outcome)`).")

    def __str__(self) -> str:
        if isinstance(self.action, Env):
            return self.action.value
        text = self.action.value
        if self.paste is not None:
            text += f"({self.paste.value})"
        if self.expect is not None:
            text += f" -> {self.expect.value}"
            if self.outcome is not None:
                text += f" ({self.outcome.value})"
        return text

    @property
    def trigger(self) -> Trigger | None:
        """The trigger this step fires, or None for an environment step."""
        return self.action if isinstance(self.action, Trigger) else None

    @property
    def cost(self) -> int:
        return _COSTS[self.action] if isinstance(self.action, Env) else 1


_STEP = re.compile(
    r"^(?P<action>[A-Za-z_]+)\s*(?:\(\s*(?P<paste>[^)]*?)\s*\))?"
    r"(?:\s*->\s*(?P<state>[A-Za-z]+)\s*(?:\(\s*(?P<outcome>[a-z]+)\s*\))?)?$"
)
_SPELLINGS = (
    "a trigger (`access`), a trigger and its expected state (`access -> Prompted (missing)`), "
    f"`save_config(<{' | '.join(p.value for p in Paste)}>)`, or one of: " + ", ".join(f"`{e.value}`" for e in Env)
)


_Named = TypeVar("_Named", bound=StrEnum)


def suggestion(text: str, spellings: Iterable[str]) -> str | None:
    """The spelling closest to ``text`` in any case (difflib), or None when none is close: for "did you mean"."""
    by_lower = {spelling.lower(): spelling for spelling in spellings}
    close = difflib.get_close_matches(text.lower(), list(by_lower), n=1)
    return by_lower[close[0]] if close else None


def _no_such(text: str, what: str, spellings: list[str], where: str = "") -> str:
    """``'Promted' is no state; did you mean 'Prompted'? The states are ...``"""
    close = suggestion(text, spellings)
    hint = f"; did you mean {close!r}? The" if close else "; the"
    return f"{text!r}{where} is no {what}{hint} {what}s are {', '.join(spellings)}."


def _named(kind: type[_Named], text: str, what: str) -> _Named:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(_no_such(text, what, [member.value for member in kind])) from None


def state_named(name: str | State) -> State:
    """The state spelt ``name``; a ValueError that suggests the closest state for a misspelling."""
    return name if isinstance(name, State) else _named(State, name, "state")


def parse_step(text: str | Trigger | Env | Step) -> Step:
    """Read one line of a step list; :class:`Trigger`, :class:`Env` and :class:`Step` values pass through.

    A trigger alone (``"save_config"``) checks nothing about where it leads; ``save_config``
    pastes the key in hand unless told otherwise. A misspelt name gets a "did you mean".
    """
    if isinstance(text, Step):
        return text
    if isinstance(text, Trigger | Env):
        return Step(text)
    if not isinstance(text, str):
        raise TypeError(f"A step is a string, a Trigger, an Env or a Step, not {type(text).__name__}.")
    spaced = " ".join(text.split())
    for env in Env:
        if spaced.lower() == env.value:
            return Step(env)
    match = _STEP.match(spaced)
    if match is None:
        close = suggestion(spaced, [e.value for e in Env])
        hint = f"did you mean {close!r}? Or " if close else ""
        raise ValueError(f"Cannot read the step {text!r}: {hint}write {_SPELLINGS}.")
    action, paste, state, outcome = match.group("action", "paste", "state", "outcome")
    try:
        trigger = Trigger(action)
    except ValueError:
        where = f" in the step {text!r}"
        raise ValueError(_no_such(action, "trigger", [t.value for t in Trigger], where)) from None
    try:
        return Step(
            trigger,
            None if paste is None else _named(Paste, paste, "paste"),
            None if state is None else _named(State, state, "state"),
            None if outcome is None else _named(Verification, outcome, "verification outcome"),
        )
    except ValueError as exc:
        raise ValueError(f"Cannot read the step {text!r}: {exc}") from None
