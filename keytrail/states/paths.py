"""Paths through the onboarding machine, generated from the one table (like XState's graph tools).

Three generators, all derived from :data:`keytrail.states.TABLE` through the one compiled
machine (:func:`keytrail.states.machine.compiled`):

- :func:`shortest_paths` / :func:`path_to`: the cheapest sequence that reaches each state;
- :func:`cover_transitions`: sequences that together take every transition of the table;
- :func:`simple_paths`: every path between two states that visits no state twice (bounded).

The table's guards ask whether the saved key verifies at the instant a trigger fires. To
turn rows into sequences a test can *run*, the generator follows a small model of the key
world (a :class:`World`): what verifying the saved key answers now (a :class:`Verification`),
the key last generated or copied on the onboarding (the key "in hand"), whether that key
is the saved one, and whether the onboarding holds a live session of the account site (only
its own password sign-in opens one; the key commands need it). Triggers change it (``generate_key`` puts a new key in hand, ``save_config``
pastes one of the :class:`Paste` choices), and so do three :class:`Env` steps that are no
trigger of the machine: the authority revoking the saved key, time moving past every key's
expiry (and so past every session's end), and a live key saved in the store configuration outside keytrail (a store configured
before keytrail tracked it, or with ``bin/magento config:set``). The plugin's driver
(:mod:`keytrail.testing`) realises each step with real keys, real revocation and moved time.

Every :class:`Step` prints as the line the driver reads back (``str(step)`` parses to the same
step), so a generated path is also a readable list::

    access -> Prompted (missing)
    sign_in -> SignedIn
    generate_key -> KeyGenerated
    save_config(key in hand) -> ConfigSaved
    access -> Validated (valid)
    advance time past expiry
    proceed -> Prompted (expired)

Like the rest of :mod:`keytrail.states`, this module is pure: it imports nothing else of
keytrail's, touches no database and needs no clock.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache

from keytrail.states import Guard, Reason, State, Trigger, initial_state
from keytrail.states.machine import compiled

__all__ = [
    "ALL_ENV",
    "DETOUR_COST",
    "Env",
    "Move",
    "Paste",
    "Path",
    "Step",
    "Transition",
    "Verification",
    "World",
    "cover_transitions",
    "coverage_items",
    "moves",
    "parse_step",
    "path_to",
    "reachable_items",
    "shortest_paths",
    "simple_paths",
    "transitions",
    "walk",
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


def parse_step(text: str | Trigger | Env | Step) -> Step:
    """Read one line of a step list; :class:`Trigger`, :class:`Env` and :class:`Step` values pass through.

    A trigger alone (``"save_config"``) checks nothing about where it leads; ``save_config``
    pastes the key in hand unless told otherwise.
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
        raise ValueError(f"Cannot read the step {text!r}: write {_SPELLINGS}.")
    action, paste, state, outcome = match.group("action", "paste", "state", "outcome")
    try:
        trigger = Trigger(action)
    except ValueError:
        raise ValueError(
            f"{action!r} in the step {text!r} is no trigger; the triggers are {', '.join(t.value for t in Trigger)}."
        ) from None
    try:
        return Step(
            trigger,
            None if paste is None else Paste(paste),
            None if state is None else State(state),
            None if outcome is None else Verification(outcome),
        )
    except ValueError as exc:
        raise ValueError(f"Cannot read the step {text!r}: {exc} (write {_SPELLINGS}).") from None


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
        """A short name for test ids: the last transition taken, and the outcome that decided it."""
        last = next((i for i in reversed(range(len(self.steps))) if self.taken[i] is not None), None)
        if last is None:
            return "empty"
        transition, outcome = self.taken[last], self.steps[last].outcome
        assert transition is not None
        return transition.id + ("" if outcome is None else f"-{outcome.value}")

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
    return _path(done, world)


def _path(done: Sequence[Move], end: World, prefix: int = 0) -> Path:
    return Path(tuple(m.step for m in done), tuple(m.transition for m in done), end, prefix)


# -- cheapest paths -------------------------------------------------------------------------------


@cache
def _cheapest_tree(envs: frozenset[Env] = ALL_ENV) -> dict[World, tuple[int, tuple[Move, ...]]]:
    """Dijkstra from the fresh onboarding over every world: the cheapest way to each, ties broken by step order."""
    start = World.initial()
    best: dict[World, tuple[int, tuple[Move, ...]]] = {}
    counter = itertools.count()
    queue: list[tuple[int, int, World, tuple[Move, ...]]] = [(0, next(counter), start, ())]
    while queue:
        cost, _, world, route = heapq.heappop(queue)
        if world in best:
            continue
        best[world] = (cost, route)
        for move in moves(world, envs=envs):
            if move.world not in best:
                heapq.heappush(queue, (cost + move.step.cost, next(counter), move.world, (*route, move)))
    return best


def shortest_paths(*, envs: frozenset[Env] = ALL_ENV) -> dict[State, Path]:
    """The cheapest sequence from a fresh onboarding to each reachable state, in :class:`State` order."""
    found: dict[State, tuple[int, tuple[Move, ...], World]] = {}
    for world, (cost, route) in _cheapest_tree(envs).items():
        if world.state not in found or cost < found[world.state][0]:
            found[world.state] = (cost, route, world)
    return {state: _path(found[state][1], found[state][2]) for state in State if state in found}


def path_to(target: State) -> Path:
    """The cheapest sequence from a fresh onboarding to ``target``; ValueError when no sequence reaches it."""
    paths = shortest_paths()
    if target not in paths:
        raise ValueError(f"No sequence of steps reaches {target.value} from {initial_state().value}.")
    return paths[target]


# -- covering every transition --------------------------------------------------------------------

Item = Transition | tuple[Transition, Verification | None]


def _item_of(move: Move, outcomes: bool) -> Item | None:
    if move.transition is None:
        return None
    return (move.transition, move.outcome) if outcomes else move.transition


def coverage_items(*, outcomes: bool = False) -> list[Item]:
    """What a covering set must take: every transition, or with ``outcomes`` every (transition, outcome) pair.

    With ``outcomes``, a guarded transition counts once per verification outcome that can decide
    it (valid for ``key_valid``; missing, invalid and expired for ``key_not_valid``).
    """
    if not outcomes:
        return list(transitions())
    items: list[Item] = []
    for transition in transitions():
        if transition.guard is Guard.key_valid:
            items.append((transition, Verification.valid))
        elif transition.guard is Guard.key_not_valid:
            items.extend((transition, v) for v in Verification if v is not Verification.valid)
        else:
            items.append((transition, None))
    return items


@cache
def _cheapest_through(outcomes: bool, envs: frozenset[Env]) -> dict[Item, tuple[int, tuple[Move, ...], World]]:
    """For each item that can be taken at all, the cheapest sequence that ends by taking it."""
    through: dict[Item, tuple[int, tuple[Move, ...], World]] = {}
    for world, (cost, route) in sorted(_cheapest_tree(envs).items(), key=lambda kv: kv[1][0]):
        for move in moves(world, envs=envs):
            item = _item_of(move, outcomes)
            total = cost + move.step.cost
            if item is not None and (item not in through or total < through[item][0]):
                through[item] = (total, (*route, move), move.world)
    return through


def reachable_items(*, outcomes: bool = False, envs: frozenset[Env] = ALL_ENV) -> list[Item]:
    """The items of :func:`coverage_items` that some sequence of steps (with Env steps from ``envs``) can take."""
    through = _cheapest_through(outcomes, envs)
    return [item for item in coverage_items(outcomes=outcomes) if item in through]


def cover_transitions(*, outcomes: bool = False, envs: frozenset[Env] = ALL_ENV) -> list[Path]:
    """Sequences from a fresh onboarding that together take every reachable transition at least once.

    For each transition (in table order) not yet taken by an earlier sequence, the cheapest
    sequence ending with it. With ``outcomes``, every reachable (transition, verification
    outcome) pair instead. Only the Env steps in ``envs`` are used. Compare
    :func:`reachable_items` with :func:`coverage_items` to see what no sequence can take.
    """
    through = _cheapest_through(outcomes, envs)
    covered: set[Item] = set()
    paths: list[Path] = []
    for item in coverage_items(outcomes=outcomes):
        if item in covered or item not in through:
            continue
        _, route, end = through[item]
        path = _path(route, end)
        paths.append(path)
        covered.update(path.items if outcomes else set(path.transitions))
    return paths


# -- simple paths -----------------------------------------------------------------------------


def _env_closure(frontier: dict[World, tuple[int, tuple[Move, ...]]]) -> dict[World, tuple[int, tuple[Move, ...]]]:
    """Every world reachable from the frontier by Env steps alone, each by its cheapest route."""
    best = dict(frontier)
    counter = itertools.count()
    queue = [(cost, next(counter), world, route) for world, (cost, route) in frontier.items()]
    heapq.heapify(queue)
    done: set[World] = set()
    while queue:
        cost, _, world, route = heapq.heappop(queue)
        if world in done:
            continue
        done.add(world)
        for env in Env:
            for move in moves(world, Step(env)):
                total = cost + move.step.cost
                if move.world not in best or total < best[move.world][0]:
                    best[move.world] = (total, (*route, move))
                    heapq.heappush(queue, (total, next(counter), move.world, (*route, move)))
    return best


def simple_paths(source: State, target: State, *, max_transitions: int = len(State), limit: int = 1000) -> list[Path]:
    """Every path from ``source`` to ``target`` that visits no state twice, up to ``max_transitions`` transitions.

    Each comes as a runnable sequence from a fresh onboarding: the cheapest way to ``source``
    (``path.prefix`` steps long), then the simple path, with the cheapest Env steps the guards
    need in between. Paths differ in the transitions they take; at most ``limit`` are returned,
    shortest first. ``source == target`` gives the one empty path.
    """
    start = path_to(source)
    start_route = tuple(m for m in _cheapest_tree()[start.end][1])
    prefix = len(start_route)
    results: list[tuple[int, int, Path]] = []

    def search(state: State, visited: frozenset[State], frontier: dict[World, tuple[int, tuple[Move, ...]]]) -> None:
        depth = len(visited) - 1
        if state is target and depth > 0:
            world, (cost, route) = min(frontier.items(), key=lambda kv: (kv[1][0], repr(kv[0])))
            results.append((depth, cost, _path((*start_route, *route), world, prefix)))
            return
        if depth >= max_transitions:
            return
        branches: dict[Transition, dict[World, tuple[int, tuple[Move, ...]]]] = {}
        for world, (cost, route) in _env_closure(frontier).items():
            for move in moves(world):
                if move.transition is None or move.transition.dest in visited:
                    continue
                bucket = branches.setdefault(move.transition, {})
                total = cost + move.step.cost
                if move.world not in bucket or total < bucket[move.world][0]:
                    bucket[move.world] = (total, (*route, move))
        for transition in sorted(branches, key=transitions().index):
            search(transition.dest, visited | {transition.dest}, branches[transition])

    if source is target:
        return [Path(start.steps, start.taken, start.end, prefix)]
    search(source, frozenset({source}), {start.end: (0, ())})
    order = transitions().index
    results.sort(key=lambda r: (r[0], r[1], [order(t) for t in r[2].taken[prefix:] if t is not None]))
    return [path for _, _, path in results[:limit]]
