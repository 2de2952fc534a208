"""The onboarding machine as pure data: states, triggers, reasons and the one transition table.

Everything else is derived from :data:`TABLE`; nothing restates it. The diagrams draw its
rows; :mod:`keytrail.states.machine` builds the ``transitions`` machine from it and compiles
that into the decision table the engine, replay/verify and path generation read. This
package imports nothing else of keytrail's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache

__all__ = [
    "ANY_STATE",
    "TABLE",
    "Guard",
    "Reason",
    "Row",
    "State",
    "Trigger",
    "allowed_triggers",
    "initial_state",
    "is_legal_step",
    "rows_for",
    "sources_of",
]


class State(StrEnum):
    """Where an onboarding stands; ``.value`` is the exact spelling stored in the log."""

    Unverified = "Unverified"
    Prompted = "Prompted"
    SignedIn = "SignedIn"
    KeyGenerated = "KeyGenerated"
    KeyCopied = "KeyCopied"
    ConfigSaved = "ConfigSaved"
    Validated = "Validated"
    StoreIntegration = "StoreIntegration"


class Trigger(StrEnum):
    """What an admin (or a service acting for one) does."""

    access = "access"
    sign_in = "sign_in"
    register = "register"
    generate_key = "generate_key"
    copy_key = "copy_key"
    save_config = "save_config"
    proceed = "proceed"


class Reason(StrEnum):
    """Why the channel prompts for a key."""

    missing = "missing"  # nothing is saved in the store configuration
    invalid = "invalid"  # unknown or revoked key
    expired = "expired"  # the clock is at or past the key's expiry


class Guard(StrEnum):
    """A condition on the saved key, checked at the instant the trigger fires."""

    key_valid = "key_valid"
    key_not_valid = "key_not_valid"


ANY_STATE: tuple[State, ...] = tuple(State)


@dataclass(frozen=True)
class Row:
    """One line of the transition table: ``trigger`` moves ``sources`` to ``dest`` when ``guard`` holds."""

    trigger: Trigger
    sources: tuple[State, ...]
    dest: State
    guard: Guard | None = None
    note: str = ""


_ALL_BUT_STORE_INTEGRATION = tuple(s for s in State if s is not State.StoreIntegration)

# The order matters where guards overlap: the first row whose source and guard match wins.
TABLE: tuple[Row, ...] = (
    Row(
        Trigger.access,
        (State.StoreIntegration,),
        State.StoreIntegration,
        Guard.key_valid,
        "an integrated store whose key still verifies stays integrated",
    ),
    Row(Trigger.access, _ALL_BUT_STORE_INTEGRATION, State.Validated, Guard.key_valid, "the saved key verifies"),
    Row(
        Trigger.access,
        ANY_STATE,
        State.Prompted,
        Guard.key_not_valid,
        "missing, invalid or expired key: prompt for one",
    ),
    Row(
        Trigger.sign_in,
        (State.Prompted,),
        State.SignedIn,
        None,
        "sign in to the Commerce account (or reuse a live session)",
    ),
    Row(
        Trigger.register, (State.Prompted,), State.SignedIn, None, "no account yet: register the company, then sign in"
    ),
    Row(
        Trigger.generate_key,
        (State.SignedIn, State.KeyGenerated, State.KeyCopied),
        State.KeyGenerated,
        None,
        "API Portal: describe the key, Add New",
    ),
    Row(
        Trigger.copy_key,
        (State.SignedIn, State.KeyGenerated),
        State.KeyCopied,
        None,
        "API Portal: Copy (the new key, or an existing one by id)",
    ),
    Row(Trigger.save_config, ANY_STATE, State.ConfigSaved, None, "paste into Production Api key and Save Config"),
    Row(
        Trigger.proceed,
        (State.Validated,),
        State.StoreIntegration,
        Guard.key_valid,
        "go on to Store Integration while the key still verifies",
    ),
    Row(
        Trigger.proceed,
        (State.Validated,),
        State.Prompted,
        Guard.key_not_valid,
        "the key stopped verifying in between: prompt again",
    ),
)


def initial_state() -> State:
    """The state of an onboarding before its first event."""
    return State.Unverified


@cache
def rows_for(trigger: Trigger) -> tuple[Row, ...]:
    """The rows of one trigger, in table order."""
    return tuple(row for row in TABLE if row.trigger is trigger)


def sources_of(trigger: Trigger) -> tuple[State, ...]:
    """The states a trigger may fire from, in the order of :class:`State`: a read of the compiled machine."""
    from keytrail.states.machine import compiled  # that module builds the machine from this one's table

    return compiled().sources[trigger]


def allowed_triggers(state: State) -> tuple[Trigger, ...]:
    """The triggers that may fire in ``state``, in the order of :class:`Trigger`: a read of the compiled machine."""
    from keytrail.states.machine import compiled

    return compiled().allowed[state]


def is_legal_step(trigger: Trigger, source: State, dest: State, reason: Reason | None) -> bool:
    """Whether one recorded event is a step the machine takes, its reason included (a prompt's reason, else None)."""
    from keytrail.states.machine import compiled

    return (trigger, source, dest, reason) in compiled().legal_steps
