"""The small model of the key world that turns the table's rows into sequences a test can run.

The table's guards ask whether the saved key verifies at the instant a trigger fires. A
:class:`World` holds what decides that: the state, what verifying the saved key answers now,
the key in hand, whether it is the saved one, and whether the onboarding holds a live session
of the account site. :func:`moves` says which steps can happen in a world and where each leads;
a :class:`Path` is a sequence of them from a fresh onboarding. See :mod:`keytrail.states.paths`
for the generators built on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from keytrail.states import State, Trigger, initial_state
from keytrail.states.steps import Env, Paste, Step, Transition, Verification, parse_step

__all__ = ["ALL_ENV", "Move", "Path", "World", "moves", "walk"]


@dataclass(frozen=True)
class World:
    """An onboarding's state and the facts about keys that decide its guards."""

    state: State
    saved: Verification = Verification.missing  # what verifying the saved key answers now
    hand: Verification | None = None  # the key last generated or copied here (None: no such key yet)
    hand_saved: bool = False  # the saved key is the key in hand
    hand_mine: bool = False  # the key in hand belongs to the account the onboarding signed in to last
    session: bool = False  # the onboarding's own sign-in to the account site is still live

    @classmethod
    def initial(cls) -> World:
        """A fresh onboarding: nothing saved, no key in hand."""
        return cls(initial_state())

    def with_keys_expired(self) -> World:
        """Every key issued so far is past its expiry (time moved by the key lifetime), every session over."""

        def aged(check: Verification | None) -> Verification | None:
            return Verification.expired if check is Verification.valid else check

        saved = aged(self.saved)
        assert saved is not None
        return replace(self, saved=saved, hand=aged(self.hand), session=False)


@dataclass(frozen=True)
class Move:
    """What one step does to a world: where it leads, the transition it takes (None for an Env step)."""

    step: Step
    world: World
    transition: Transition | None
    outcome: Verification | None

    @property
    def item(self) -> tuple[Transition, Verification | None] | None:
        return None if self.transition is None else (self.transition, self.outcome)


def _keys_after(world: World, trigger: Trigger, paste: Paste | None) -> World | None:
    """The key facts after a trigger's side effects, or None when the trigger cannot be carried out here."""
    if trigger in (Trigger.generate_key, Trigger.copy_key) and not world.session:
        return None  # the account site wants a sign-in again: the onboarding's session ended
    if trigger is Trigger.sign_in:
        return replace(world, session=True)
    if trigger is Trigger.generate_key:
        return replace(world, hand=Verification.valid, hand_saved=False, hand_mine=True)
    if trigger is Trigger.copy_key:
        # The portal copies only a live key of the signed-in account: the key in hand.
        usable = world.hand is Verification.valid and world.hand_mine
        return world if usable else None
    if trigger is Trigger.register:
        return replace(world, hand_mine=False, session=True)  # a new account: the key in hand is another's
    if trigger is Trigger.save_config:
        if paste is Paste.never_issued:
            return replace(world, saved=Verification.invalid, hand_saved=False)
        if paste is Paste.asterisks:
            return world if world.saved is not Verification.missing else None
        if world.hand is None:
            return None
        return replace(world, saved=world.hand, hand_saved=True)
    return world  # access, proceed (and any trigger added later) leave the keys alone


def _env_after(world: World, env: Env) -> World | None:
    if env is Env.revoke_saved_key:
        if world.saved not in (Verification.valid, Verification.expired):
            return None  # nothing the authority issued is saved
        hand = Verification.invalid if world.hand_saved else world.hand
        return replace(world, saved=Verification.invalid, hand=hand)
    if env is Env.expire_keys:
        aged = world.with_keys_expired()
        return aged if aged != world else None
    if world.saved is Verification.valid:
        return None  # a valid key is saved already
    return replace(world, saved=Verification.valid, hand_saved=False)


def _step_move(world: World, step: Step) -> Move | None:
    if isinstance(step.action, Env):
        after = _env_after(world, step.action)
        return None if after is None else Move(step, after, None, None)
    trigger = step.action
    paste = step.paste if step.paste is not None or trigger is not Trigger.save_config else Paste.key_in_hand
    from keytrail.states.machine import compiled  # built on first use: importing the plugin stays cheap

    taken = compiled().decisions.get((trigger, world.state, world.saved is Verification.valid))
    if taken is None:
        return None
    keys = _keys_after(world, trigger, paste)
    if keys is None:
        return None
    outcome = world.saved if taken.guard is not None else None
    transition = Transition(trigger, world.state, taken.dest, taken.guard)
    labelled = Step(trigger, paste if trigger is Trigger.save_config else None, taken.dest, outcome)
    return Move(labelled, replace(keys, state=taken.dest), transition, outcome)


def _candidate_steps() -> Iterator[Step]:
    for trigger in Trigger:
        if trigger is Trigger.save_config:
            yield from (Step(trigger, paste) for paste in Paste)
        else:
            yield Step(trigger)
    yield from (Step(env) for env in Env)


ALL_ENV: frozenset[Env] = frozenset(Env)


def moves(world: World, step: Step | None = None, *, envs: frozenset[Env] = ALL_ENV) -> list[Move]:
    """Every step that can be carried out in ``world`` (or just ``step``), each with where it leads.

    A trigger step comes back labelled with its expected state and verification outcome. Env
    steps outside ``envs`` are not offered.
    """
    candidates = [step] if step is not None else [s for s in _candidate_steps() if s.trigger or s.action in envs]
    found = (_step_move(world, candidate) for candidate in candidates)
    return [move for move in found if move is not None]


@dataclass(frozen=True)
class Path:
    """A sequence of steps from a fresh onboarding, and the transitions it takes."""

    steps: tuple[Step, ...]
    taken: tuple[Transition | None, ...]  # aligned with steps; None for Env steps
    end: World
    prefix: int = 0  # how many leading steps only lead to where the path of interest starts
    name: str | None = None  # the test id, when the generator gives one (simple_paths does)

    @property
    def transitions(self) -> list[Transition]:
        return [t for t in self.taken if t is not None]

    @property
    def states(self) -> list[State]:
        """The states the onboarding goes through, starting from Unverified: what ``assert_path`` takes."""
        return [initial_state(), *(t.dest for t in self.transitions)]

    @property
    def states_after_prefix(self) -> list[State]:
        """The states from where the prefix ends on: for a simple path, its source to its target."""
        before = sum(1 for t in self.taken[: self.prefix] if t is not None)
        return self.states[before:]

    @property
    def triggers(self) -> list[Trigger]:
        return [t.trigger for t in self.transitions]

    @property
    def items(self) -> set[tuple[Transition, Verification | None]]:
        """Each transition taken, with the verification outcome that decided it (None for unguarded rows)."""
        return {(t, s.outcome) for s, t in zip(self.steps, self.taken, strict=True) if t is not None}

    @property
    def cost(self) -> int:
        return sum(step.cost for step in self.steps)

    @property
    def id(self) -> str:
        """A short name for test ids: the generator's name for it, else the last transition and its outcome.

        :func:`~keytrail.states.paths.simple_paths` names each path by the triggers it takes
        after its prefix (``sign_in-generate_key-save_config-access``), unique among its results.
        """
        if self.name is not None:
            return self.name
        last = next((i for i in reversed(range(len(self.steps))) if self.taken[i] is not None), None)
        if last is None:
            return "empty"
        transition, outcome = self.taken[last], self.steps[last].outcome
        assert transition is not None
        return transition.id + ("" if outcome is None else f"-{outcome.value}")

    @classmethod
    def from_moves(cls, done: Sequence[Move], end: World, prefix: int = 0) -> Path:
        """The path that takes ``done`` and ends in ``end``; its first ``prefix`` steps only lead to where it starts."""
        return cls(tuple(m.step for m in done), tuple(m.transition for m in done), end, prefix)

    def as_list(self) -> list[str]:
        """The steps as the lines ``keytrail.testing.drive`` reads."""
        return [str(step) for step in self.steps]

    def __len__(self) -> int:
        return len(self.steps)

    def __str__(self) -> str:
        return "\n".join(self.as_list())


def walk(steps: Iterable[str | Trigger | Env | Step], start: World | None = None) -> Path:
    """Follow a step list through the model from a fresh onboarding (or ``start``); ValueError if a step cannot happen.

    Each step comes back labelled with where the model says it leads.
    """
    world = start or World.initial()
    done: list[Move] = []
    for number, raw in enumerate(steps, 1):
        step = parse_step(raw)
        found = moves(world, step)
        if not found:
            raise ValueError(f"Step {number}, {str(step)!r}, cannot happen in {world}.")
        move = found[0]
        wrong_state = step.expect is not None and step.expect is not move.step.expect
        if wrong_state or (step.outcome is not None and step.outcome is not move.step.outcome):
            raise ValueError(f"Step {number}, {str(step)!r}, is {str(move.step)!r} in {world}.")
        done.append(move)
        world = move.world
    return Path.from_moves(done, world)
