"""Paths through the onboarding machine, generated from the one table (like XState's graph tools).

Three generators, all derived from :data:`keytrail.states.TABLE` through the one compiled
machine (:func:`keytrail.states.machine.compiled`):

- :func:`shortest_paths` / :func:`path_to`: a shortest sequence that reaches each state (the
  fewest steps; a key saved outside keytrail counts as :data:`DETOUR_COST` steps), one among
  possibly several equally short, so a test of it checks one way there, not every way;
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
from dataclasses import replace
from functools import cache

from keytrail.states import Guard, State, initial_state
from keytrail.states.model import ALL_ENV, Move, Path, World, moves, walk
from keytrail.states.steps import (
    DETOUR_COST,
    Env,
    Paste,
    Step,
    Transition,
    Verification,
    parse_step,
    state_named,
    transitions,
)

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
    """A shortest sequence from a fresh onboarding to each reachable state, in :class:`State` order.

    Shortest counts steps, a key saved outside keytrail as :data:`DETOUR_COST` of them; among
    equally short sequences the first in table order wins. For every way between two states,
    see :func:`simple_paths`.
    """
    found: dict[State, tuple[int, tuple[Move, ...], World]] = {}
    for world, (cost, route) in _cheapest_tree(envs).items():
        if world.state not in found or cost < found[world.state][0]:
            found[world.state] = (cost, route, world)
    return {state: Path.from_moves(found[state][1], found[state][2]) for state in State if state in found}


def path_to(target: State | str) -> Path:
    """A shortest sequence from a fresh onboarding to ``target`` (see :func:`shortest_paths`); ValueError if none.

    It is one way there, the admin's own flow where the source document gives one: a test
    that drives it checks that way only. :func:`simple_paths` gives every way without loops.
    """
    target = state_named(target)  # a misspelt name gets a "did you mean"
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
        path = Path.from_moves(route, end)
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


def simple_paths(
    source: State | str, target: State | str, *, max_transitions: int = len(State), limit: int = 1000
) -> list[Path]:
    """Every path from ``source`` to ``target`` that visits no state twice, up to ``max_transitions`` transitions.

    Each comes as a runnable sequence from a fresh onboarding: the cheapest way to ``source``
    (``path.prefix`` steps long), then the simple path, with the cheapest Env steps the guards
    need in between. Paths differ in the transitions they take; at most ``limit`` are returned,
    shortest first. ``source == target`` gives the one empty path.
    """
    source, target = state_named(source), state_named(target)
    start = path_to(source)
    start_route = tuple(m for m in _cheapest_tree()[start.end][1])
    prefix = len(start_route)
    results: list[tuple[int, int, Path]] = []

    def search(state: State, visited: frozenset[State], frontier: dict[World, tuple[int, tuple[Move, ...]]]) -> None:
        depth = len(visited) - 1
        if state is target and depth > 0:
            world, (cost, route) = min(frontier.items(), key=lambda kv: (kv[1][0], repr(kv[0])))
            results.append((depth, cost, Path.from_moves((*start_route, *route), world, prefix)))
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
        return [Path(start.steps, start.taken, start.end, prefix, name=f"stay-{source.value}")]
    search(source, frozenset({source}), {start.end: (0, ())})
    order = transitions().index
    results.sort(key=lambda r: (r[0], r[1], [order(t) for t in r[2].taken[prefix:] if t is not None]))
    return _named([path for _, _, path in results[:limit]])


def _named(paths: list[Path]) -> list[Path]:
    """Simple paths with unique test ids: the triggers each takes, with the states they lead to where that is needed.

    Two simple paths between the same states always differ in the transitions they take, and a
    transition is its trigger and destination once its source (the state before) is known, so
    the long form (``access>Prompted-sign_in>SignedIn``) is always unique.
    """

    def spelled(path: Path, *, dests: bool) -> str:
        taken = [t for t in path.taken[path.prefix :] if t is not None]
        return "-".join(t.trigger.value + (f">{t.dest.value}" if dests else "") for t in taken)

    short = [spelled(path, dests=False) for path in paths]
    return [
        replace(path, name=name if short.count(name) == 1 else spelled(path, dests=True))
        for path, name in zip(paths, short, strict=True)
    ]
