"""Path generation from the machine table: shortest paths, a covering set, simple paths, and the step language."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keytrail import Engine
from keytrail.states import TABLE, Guard, State, Trigger
from keytrail.states.paths import (
    DETOUR_COST,
    Env,
    Paste,
    Step,
    Transition,
    Verification,
    World,
    cover_transitions,
    coverage_items,
    moves,
    parse_step,
    path_to,
    reachable_items,
    shortest_paths,
    simple_paths,
    transitions,
    walk,
)
from keytrail.testing import assert_path, drive
from tests.conftest import MovableClock

HAPPY_PATH = [
    "access -> Prompted (missing)",
    "sign_in -> SignedIn",
    "generate_key -> KeyGenerated",
    "save_config(key in hand) -> ConfigSaved",
    "access -> Validated (valid)",
    "proceed -> StoreIntegration (valid)",
]


def test_transitions_are_every_row_from_every_source() -> None:
    """33 today: one per (row, source), in table order, with the row's guard."""
    expected = [(row.trigger, source, row.dest, row.guard) for row in TABLE for source in row.sources]
    assert [(t.trigger, t.source, t.dest, t.guard) for t in transitions()] == expected
    assert len(transitions()) == 33


def test_the_covering_set_takes_every_transition_of_the_table() -> None:
    """A row added to the table is taken by a generated sequence, or this fails naming it."""
    taken = {t for path in cover_transitions() for t in path.transitions}
    assert [str(t) for t in transitions() if t not in taken] == []
    assert len(cover_transitions()) < len(transitions())  # sequences take several transitions each


def test_the_outcome_covering_set_takes_every_reachable_outcome() -> None:
    """Each guarded transition with each verification outcome that can decide it; only 'missing' after a save cannot."""
    items = coverage_items(outcomes=True)
    taken = {item for path in cover_transitions(outcomes=True) for item in path.items}
    assert set(reachable_items(outcomes=True)) <= taken
    unreachable = [(str(i[0]), i[1]) for i in items if isinstance(i, tuple) and i not in taken]
    # Validated, StoreIntegration and ConfigSaved are only ever entered with a key saved, and
    # nothing removes a saved key: a prompt from there is never for a missing key.
    assert unreachable == [
        ("access: ConfigSaved -> Prompted [key_not_valid]", Verification.missing),
        ("access: Validated -> Prompted [key_not_valid]", Verification.missing),
        ("access: StoreIntegration -> Prompted [key_not_valid]", Verification.missing),
        ("proceed: Validated -> Prompted [key_not_valid]", Verification.missing),
    ]
    assert len(items) == 51 and len(taken) == 47


def test_without_a_key_saved_outside_keytrail_five_transitions_cannot_happen() -> None:
    """Prompted, SignedIn, ... are entered with a bad key, and keytrail's own save moves to ConfigSaved."""
    without = frozenset({Env.revoke_saved_key, Env.expire_keys})
    missing = [str(t) for t in transitions() if t not in reachable_items(envs=without)]
    assert missing == [
        "access: Unverified -> Validated [key_valid]",
        "access: Prompted -> Validated [key_valid]",
        "access: SignedIn -> Validated [key_valid]",
        "access: KeyGenerated -> Validated [key_valid]",
        "access: KeyCopied -> Validated [key_valid]",
    ]
    detoured = [str(p.transitions[-1]) for p in cover_transitions() if Env.save_key_outside.value in p.as_list()]
    assert detoured == missing  # the covering set takes the detour only where nothing else works


def test_generated_sequences_have_distinct_test_ids() -> None:
    for paths in (cover_transitions(), cover_transitions(outcomes=True)):
        ids = [path.id for path in paths]
        assert len(set(ids)) == len(ids)


def test_every_generated_sequence_follows_the_model_step_by_step() -> None:
    """walk() replays each generated sequence from its printed lines and lands on the same states."""
    for path in [*cover_transitions(outcomes=True), *shortest_paths().values()]:
        again = walk(path.as_list())
        assert again.states == path.states
        assert again.steps == path.steps


def test_shortest_paths_follow_the_source_document() -> None:
    """The cheapest way to each state is the admin's own flow; a detour only where nothing else works."""
    paths = shortest_paths()
    assert list(paths) == list(State)
    assert path_to(State.StoreIntegration).as_list() == HAPPY_PATH
    assert path_to(State.Validated).as_list() == HAPPY_PATH[:5]
    assert path_to(State.KeyCopied).as_list() == [*HAPPY_PATH[:3], "copy_key -> KeyCopied"]
    assert path_to(State.ConfigSaved).as_list() == ["save_config(never issued) -> ConfigSaved"]
    assert path_to(State.Unverified).as_list() == []
    for state, path in paths.items():
        assert path.states[-1] is state
        assert path.cost < DETOUR_COST


def test_shortest_paths_are_shortest() -> None:
    """No sequence of fewer steps reaches a state: checked by brute force over every step list up to that length."""
    best: dict[State, int] = {State.Unverified: 0}
    frontier = [World.initial()]
    for length in range(1, 7):
        frontier = list({m.world: None for w in frontier for m in moves(w) if m.step.cost == 1})
        for world in frontier:
            best.setdefault(world.state, length)
    assert {s: len(p) for s, p in shortest_paths().items()} == best


def test_simple_paths_visit_no_state_twice() -> None:
    paths = simple_paths(State.Prompted, State.StoreIntegration)
    assert paths
    assert all(
        p.states[: len(p.states) - len(p.states_after_prefix) + 1] == [State.Unverified, State.Prompted] for p in paths
    )
    parts = [tuple(p.states_after_prefix) for p in paths]
    for part in parts:
        assert part[0] is State.Prompted and part[-1] is State.StoreIntegration
        assert len(set(part)) == len(part)
    taken = [tuple(t for t in p.taken[p.prefix :] if t is not None) for p in paths]
    assert len(set(taken)) == len(taken)  # each path takes its own transitions
    assert [len(t) for t in taken] == sorted(len(t) for t in taken)
    for path in paths:
        assert walk(path.as_list()).states == path.states


def test_simple_paths_between_prompted_and_signed_in_are_sign_in_and_register() -> None:
    """SignedIn is entered only from Prompted, by two triggers: exactly two simple paths."""
    paths = simple_paths(State.Prompted, State.SignedIn)
    assert [p.as_list()[p.prefix :] for p in paths] == [["sign_in -> SignedIn"], ["register -> SignedIn"]]


def test_simple_paths_are_bounded() -> None:
    everything = simple_paths(State.Unverified, State.StoreIntegration)
    assert len(simple_paths(State.Unverified, State.StoreIntegration, limit=3)) == 3
    short = simple_paths(State.Unverified, State.StoreIntegration, max_transitions=3)
    assert short and all(len(p.transitions) <= 3 for p in short)
    assert len(short) < len(everything)
    assert simple_paths(State.Validated, State.Validated)[0].states[-1] is State.Validated


def test_guards_are_decided_by_the_saved_key() -> None:
    """The model picks the first matching row, as the transitions machine does."""
    fresh = World.initial()
    (access,) = moves(fresh, Step(Trigger.access))
    assert (access.transition, access.outcome) == (
        Transition(Trigger.access, State.Unverified, State.Prompted, Guard.key_not_valid),
        Verification.missing,
    )
    integrated = World(State.StoreIntegration, saved=Verification.valid)
    (stay,) = moves(integrated, Step(Trigger.access))
    assert stay.transition == Transition(
        Trigger.access, State.StoreIntegration, State.StoreIntegration, Guard.key_valid
    )
    expired = moves(integrated, Step(Env.expire_keys))[0].world
    assert expired.saved is Verification.expired
    assert moves(expired, Step(Env.expire_keys)) == []  # nothing valid is left to expire
    assert moves(fresh, Step(Trigger.copy_key)) == []  # not allowed in Unverified
    assert moves(fresh, Step(Env.revoke_saved_key)) == []  # nothing issued is saved


def test_walk_refuses_what_cannot_happen() -> None:
    with pytest.raises(ValueError, match=r"Step 2, 'copy_key', cannot happen"):
        walk(["access", "copy_key"])
    with pytest.raises(ValueError, match=r"Step 1, 'access -> Validated', is 'access -> Prompted \(missing\)'"):
        walk(["access -> Validated"])
    with pytest.raises(ValueError, match="cannot happen"):
        walk(["access", "save_config(asterisks)"])  # nothing saved for the mask to keep
    assert walk(["access", "sign_in"]).states == [State.Unverified, State.Prompted, State.SignedIn]


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("access", Step(Trigger.access)),
        ("  access   ->  Prompted ( expired ) ", Step(Trigger.access, None, State.Prompted, Verification.expired)),
        ("save_config(never issued)", Step(Trigger.save_config, Paste.never_issued)),
        ("save_config(asterisks) -> ConfigSaved", Step(Trigger.save_config, Paste.asterisks, State.ConfigSaved)),
        ("Revoke the  saved key", Step(Env.revoke_saved_key)),
        ("advance time past expiry", Step(Env.expire_keys)),
        (Trigger.proceed, Step(Trigger.proceed)),
    ],
)
def test_parse_step(text: str, step: Step) -> None:
    assert parse_step(text) == step


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("acces", "'acces' in the step 'acces' is no trigger; did you mean 'access'? The triggers are access, sign_in"),
        (
            "access -> Nowhere",
            "Cannot read the step 'access -> Nowhere': 'Nowhere' is no state; the states are Unverified",
        ),
        ("save_config(a key)", "'a key' is no paste; the pastes are key in hand, never issued, asterisks."),
        ("access(key in hand)", "Only save_config pastes a key, not access"),
        (
            "revoke every key",
            "Cannot read the step 'revoke every key': did you mean 'revoke the saved key'? Or write a trigger",
        ),
        ("xyz zz", "Cannot read the step 'xyz zz': write a trigger"),
    ],
)
def test_parse_step_errors_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_step(text)


_steps = st.one_of(
    st.builds(Step, st.sampled_from(Env)),
    st.builds(
        lambda trigger, paste, expect, outcome: Step(
            trigger,
            paste if trigger is Trigger.save_config else None,
            expect,
            outcome if expect is not None else None,
        ),
        st.sampled_from(Trigger),
        st.none() | st.sampled_from(Paste),
        st.none() | st.sampled_from(State),
        st.none() | st.sampled_from(Verification),
    ),
)


@settings(max_examples=200)
@given(_steps)
def test_every_step_reads_back_from_its_line(step: Step) -> None:
    assert parse_step(str(step)) == step


@pytest.mark.parametrize(("source", "target"), [(State.Prompted, State.Validated), (State.Validated, State.Prompted)])
def test_simple_paths_happen_on_the_engine(engine: Engine, clock: MovableClock, source: State, target: State) -> None:
    """Every simple path really happens with real keys, each on its own onboarding of one database."""
    paths = simple_paths(source, target)
    assert len(paths) > 3
    for number, path in enumerate(paths):
        drive(engine, f"path-{number}", path, clock=clock)
        assert_path(engine, f"path-{number}", path.states)
    assert engine.verify().ok


PAIRS = [(a, b) for a in State for b in State]


def test_simple_paths_have_unique_readable_ids() -> None:
    """A test parametrized over simple paths gets one id per path that says which triggers it takes."""
    for source, target in PAIRS:
        paths = simple_paths(source, target)
        ids = [path.id for path in paths]
        assert len(set(ids)) == len(ids), (source, target, ids)
        for path, name in zip(paths, ids, strict=True):
            triggers = "-".join(t.trigger.value for t in path.taken[path.prefix :] if t is not None)
            assert re.sub(r">[A-Za-z]+", "", name) == (triggers or f"stay-{source.value}")
    assert [p.id for p in simple_paths(State.Prompted, State.SignedIn)] == ["sign_in", "register"]
    assert simple_paths(State.Validated, State.Validated)[0].id == "stay-Validated"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("access -> Promted", "did you mean 'Prompted'?"),
        ("access -> validated (valid)", "did you mean 'Validated'?"),
        ("acess -> Prompted", "did you mean 'access'?"),
        ("save_config(key in hnd)", "did you mean 'key in hand'?"),
        ("revoke the saved ky", "did you mean 'revoke the saved key'?"),
    ],
)
def test_a_misspelt_name_gets_a_suggestion(text: str, hint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(hint)):
        parse_step(text)


def test_path_to_is_documented_as_a_shortest_path() -> None:
    assert "shortest" in (path_to.__doc__ or "")


def test_generators_take_state_names_and_suggest_for_a_misspelling() -> None:
    assert path_to("Validated") == path_to(State.Validated)
    assert simple_paths("Prompted", "SignedIn") == simple_paths(State.Prompted, State.SignedIn)
    with pytest.raises(ValueError, match=re.escape("'Validatd' is no state; did you mean 'Validated'?")):
        path_to("Validatd")
