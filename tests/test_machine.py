"""The machine table has one interpreter: the ``transitions`` machine, compiled once into a decision table."""

from __future__ import annotations

import ast
import itertools
from dataclasses import replace
from pathlib import Path

import pytest

import keytrail
from keytrail.states import TABLE, Guard, Reason, Row, State, Trigger, allowed_triggers, is_legal_step, sources_of
from keytrail.states.machine import Decision, Edge, OnboardingMachine, compile_machine, compiled, machine
from keytrail.states.paths import transitions

S = State
T = Trigger

# What DESIGN.md section 2 allows in each state, written out by hand: the compiled table must say the same.
ALLOWED = {
    S.Unverified: (T.access, T.save_config),
    S.Prompted: (T.access, T.sign_in, T.register, T.save_config),
    S.SignedIn: (T.access, T.generate_key, T.copy_key, T.save_config),
    S.KeyGenerated: (T.access, T.generate_key, T.copy_key, T.save_config),
    S.KeyCopied: (T.access, T.generate_key, T.save_config),
    S.ConfigSaved: (T.access, T.save_config),
    S.Validated: (T.access, T.save_config, T.proceed),
    S.StoreIntegration: (T.access, T.save_config),
}
_UNGUARDED = {
    T.sign_in: S.SignedIn,
    T.register: S.SignedIn,
    T.generate_key: S.KeyGenerated,
    T.copy_key: S.KeyCopied,
    T.save_config: S.ConfigSaved,
}


def _expected_dest(trigger: Trigger, state: State, key_valid: bool) -> State:
    """DESIGN.md's table read by hand: access and proceed look at the key, the others do not."""
    if trigger is T.access:
        return (S.StoreIntegration if state is S.StoreIntegration else S.Validated) if key_valid else S.Prompted
    if trigger is T.proceed:
        return S.StoreIntegration if key_valid else S.Prompted
    return _UNGUARDED[trigger]


def _every_firing() -> list[tuple[Trigger, State, bool]]:
    return list(itertools.product(Trigger, State, (True, False)))


def test_the_compiled_table_is_what_the_transitions_machine_answers() -> None:
    """For every (trigger, state, key validity), the lookup equals a firing of a freshly built machine."""
    fresh = OnboardingMachine()
    table = compiled()
    for trigger, state, valid in _every_firing():
        answer = fresh.fire(trigger, state, valid)
        assert table.decisions.get((trigger, state, valid)) == answer, (trigger, state, valid)
        assert table.dests.get((trigger, state, valid)) == (None if answer is None else answer.dest)
    assert machine().fire(T.access, S.Validated, False) == fresh.fire(T.access, S.Validated, False)


def test_the_compiled_table_keeps_the_guards_of_the_design() -> None:
    """Every destination is DESIGN.md's, the key's validity deciding access and proceed (a dropped guard fails here)."""
    table = compiled()
    for trigger, state, valid in _every_firing():
        if trigger not in ALLOWED[state]:
            assert (trigger, state, valid) not in table.dests
            continue
        assert table.dests[trigger, state, valid] is _expected_dest(trigger, state, valid), (trigger, state, valid)
        guarded = trigger in (T.access, T.proceed)
        expected_guard = (Guard.key_valid if valid else Guard.key_not_valid) if guarded else None
        assert table.decisions[trigger, state, valid].guard is expected_guard


def test_allowed_triggers_and_their_sources_are_the_design() -> None:
    """The views the engine's IllegalTransition message reads, in Trigger and State order."""
    table = compiled()
    assert dict(table.allowed) == ALLOWED
    assert dict(table.sources) == {t: tuple(s for s in State if t in ALLOWED[s]) for t in Trigger}
    assert [allowed_triggers(s) for s in State] == [ALLOWED[s] for s in State]
    assert [sources_of(t) for t in Trigger] == [table.sources[t] for t in Trigger]


def test_legal_steps_are_each_firing_with_its_reason() -> None:
    """Replay accepts exactly: a step the key decided as not valid with a reason, any other step without one."""
    expected = set()
    for trigger, state, valid in _every_firing():
        if trigger in ALLOWED[state]:
            prompted = trigger in (T.access, T.proceed) and not valid
            for reason in tuple(Reason) if prompted else (None,):
                expected.add((trigger, state, _expected_dest(trigger, state, valid), reason))
    assert compiled().legal_steps == expected
    for trigger, source, dest, reason in itertools.product(Trigger, State, State, (None, *Reason)):
        assert is_legal_step(trigger, source, dest, reason) is ((trigger, source, dest, reason) in expected)


def test_a_changed_table_changes_every_view() -> None:
    """A row added and a guard dropped show up in the decisions, allowed triggers, sources, legal steps and edges."""
    copy_again = Row(T.copy_key, (S.KeyCopied,), S.KeyCopied)
    first_proceed = next(i for i, row in enumerate(TABLE) if row.trigger is T.proceed)
    unguarded = replace(TABLE[first_proceed], guard=None)  # proceed always integrates
    changed = (*TABLE[:first_proceed], unguarded, *TABLE[first_proceed + 1 :], copy_again)
    table = compile_machine(OnboardingMachine(changed))

    assert table.dests[T.copy_key, S.KeyCopied, True] is S.KeyCopied
    assert T.copy_key in table.allowed[S.KeyCopied] and T.copy_key not in compiled().allowed[S.KeyCopied]
    assert table.sources[T.copy_key] == (S.SignedIn, S.KeyGenerated, S.KeyCopied)
    assert (T.copy_key, S.KeyCopied, S.KeyCopied, None) in table.legal_steps
    assert table.edges[-1] == Edge(T.copy_key, S.KeyCopied, S.KeyCopied, None)

    # Without its guard the first proceed row wins whatever the key: the prompt row is never taken.
    assert table.decisions[T.proceed, S.Validated, False] == Decision(S.StoreIntegration, None, unguarded)
    assert (T.proceed, S.Validated, S.Prompted, Reason.expired) not in table.legal_steps
    assert Edge(T.proceed, S.Validated, S.Prompted, Guard.key_not_valid) not in table.edges
    assert (T.proceed, S.Validated, S.Prompted, Reason.expired) in compiled().legal_steps


def test_path_generation_walks_the_compiled_edges() -> None:
    """The transitions the path generators cover are the compiled table's edges, in table order."""
    assert [(t.trigger, t.source, t.dest, t.guard) for t in transitions()] == list(compiled().edges)
    assert list(compiled().edges) == [
        (row.trigger, source, row.dest, row.guard) for row in TABLE for source in row.sources
    ]


def test_a_table_missing_one_key_validity_is_refused() -> None:
    """A trigger allowed from a state must have an answer for a valid and a not valid key alike."""
    only_valid = tuple(row for row in TABLE if not (row.trigger is T.proceed and row.guard is Guard.key_not_valid))
    with pytest.raises(ValueError, match="proceed fire from Validated only when the key is valid"):
        compile_machine(OnboardingMachine(only_valid))


# Who may read the table's rows or run transitions: the compiler, and the diagrams (which draw the rows).
_TABLE_NAMES = {"TABLE", "Row", "rows_for", "is_legal_step", "allowed_triggers", "sources_of"}
_READERS = {"keytrail/states/machine.py": {"TABLE", "Row"}, "keytrail/diagrams.py": {"TABLE", "Row"}}


def test_nothing_else_interprets_the_table() -> None:
    """No module of keytrail imports the rows, the old per-call helpers or transitions, but the compiler."""
    root = Path(keytrail.__file__).parent
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "keytrail.states":
                used = {alias.name for alias in node.names} & _TABLE_NAMES
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "transitions":
                used = {"transitions"}
            elif isinstance(node, ast.Import):
                used = {"transitions" for alias in node.names if alias.name.split(".")[0] == "transitions"}
            else:
                continue
            if used:
                found.setdefault(name, set()).update(used)
    assert found == {**_READERS, "keytrail/states/machine.py": {"TABLE", "Row", "transitions"}}
