"""The pytest plugin: its fixtures, the driver, assert_path's report, and a project that only installs keytrail."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import keytrail.testing
from keytrail import Engine, Reason, State
from keytrail.errors import IllegalTransition
from keytrail.testing import (
    DEFAULT_START,
    DRIVER_EMAIL,
    DriveError,
    FrozenClock,
    assert_path,
    drive,
    frozen_clock,
    path_of,
    path_to,
)

pytest_plugins = ["pytester"]

TESTING_PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def test_the_plugin_is_registered_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    """Installing keytrail is enough: pytest loaded keytrail.testing under the name 'keytrail'."""
    assert pytestconfig.pluginmanager.get_plugin("keytrail") is keytrail.testing


def test_keytrail_clock_moves_only_when_told(keytrail_clock: FrozenClock) -> None:
    """Frozen at the default start; advance takes a timedelta or its keywords; set jumps anywhere."""
    assert keytrail_clock() == keytrail_clock.now == DEFAULT_START
    assert datetime.now(UTC) == DEFAULT_START  # freezegun froze the whole test
    assert keytrail_clock.advance(days=31) == DEFAULT_START + timedelta(days=31)
    assert keytrail_clock.advance(timedelta(hours=2, seconds=1)) == DEFAULT_START + timedelta(
        days=31, hours=2, seconds=1
    )
    assert keytrail_clock.set("2027-05-01T02:00:00+02:00") == datetime(2027, 5, 1, 0, 0, tzinfo=UTC)
    assert keytrail_clock.set(datetime(2026, 2, 1, tzinfo=UTC)) == datetime(2026, 2, 1, tzinfo=UTC)
    assert datetime.now(UTC) == keytrail_clock.now


def test_keytrail_clock_refuses_ambiguous_moves(keytrail_clock: FrozenClock) -> None:
    with pytest.raises(TypeError, match="not both or neither"):
        keytrail_clock.advance()
    with pytest.raises(TypeError, match="not both or neither"):
        keytrail_clock.advance(timedelta(days=1), days=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        keytrail_clock.set(datetime(2026, 1, 1))  # a naive datetime
    assert keytrail_clock.now == DEFAULT_START


def test_frozen_clock_outside_fixtures() -> None:
    """The context manager behind keytrail_clock, for code that cannot take fixtures."""
    with frozen_clock("2030-06-01T12:00:00+00:00") as clock:
        assert clock.advance(minutes=5) == datetime(2030, 6, 1, 12, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware start"), frozen_clock(datetime(2030, 1, 1)):
        pass


def test_keytrail_engine_is_fresh_and_follows_the_clock(
    keytrail_engine: Engine, keytrail_clock: FrozenClock, tmp_path: Path, keytrail_backend: str
) -> None:
    """An empty database (a SQLite file in tmp_path by default); every event is stamped with keytrail_clock's time."""
    assert keytrail_engine.database.dialect == keytrail_backend
    if keytrail_backend == "sqlite":
        assert keytrail_engine.database.sqlite_path == tmp_path / "keytrail.db"
    assert list(keytrail_engine.streams()) == []
    keytrail_clock.advance(days=3)
    first = keytrail_engine.access("acme")
    assert first.occurred_at == DEFAULT_START + timedelta(days=3)
    keytrail_clock.advance(minutes=1)
    assert keytrail_engine.access("acme").occurred_at == DEFAULT_START + timedelta(days=3, minutes=1)


def test_an_expiry_follows_the_frozen_clock(keytrail_engine: Engine, keytrail_clock: FrozenClock) -> None:
    """The default key lifetime is 365 days: valid the instant before, expired at the instant."""
    drive(keytrail_engine, "acme", path_to(State.StoreIntegration))
    keytrail_clock.advance(timedelta(days=365) - timedelta(microseconds=1))
    assert keytrail_engine.access("acme").state is State.StoreIntegration
    keytrail_clock.advance(timedelta(microseconds=1))
    out = keytrail_engine.access("acme")
    assert (out.state, out.reason) == (State.Prompted, Reason.expired)


def test_drive_produces_every_verification_outcome_for_real(keytrail_engine: Engine) -> None:
    """Missing, valid, invalid (never issued and revoked) and expired, each checked by the real authority."""
    engine = keytrail_engine
    outcomes = drive(
        engine,
        "acme",
        [
            "access -> Prompted (missing)",
            "sign_in -> SignedIn",
            "generate_key -> KeyGenerated",
            "copy_key -> KeyCopied",
            "save_config(never issued) -> ConfigSaved",
            "access -> Prompted (invalid)",
            "sign_in -> SignedIn",
            "copy_key -> KeyCopied",
            "save_config(key in hand) -> ConfigSaved",
            "access -> Validated (valid)",
            "revoke the saved key",
            "proceed -> Prompted (invalid)",
            "sign_in",
            "generate_key",
            "save_config",
            "save_config(asterisks) -> ConfigSaved",
            "access -> Validated (valid)",
            "advance time past expiry",
            "access -> Prompted (expired)",
        ],
    )
    assert len(outcomes) == 17
    generated = outcomes[2]
    assert getattr(generated, "key", "").startswith("kt_")
    keys = engine.portal.list_keys(DRIVER_EMAIL)
    assert [k.key_id for k in keys if k.revoked_at is not None] == [getattr(generated, "key_id", None)]
    assert len(keys) == 2 and all(k.status(outcomes[-1].occurred_at) != "active" for k in keys)
    config, verdict = engine.saved_key_status("acme")
    assert config is not None and verdict.reason is Reason.expired


def test_a_live_key_saved_outside_keytrail(keytrail_engine: Engine) -> None:
    """The one way into Validated from SignedIn: the store configuration written without keytrail."""
    drive(
        keytrail_engine,
        "acme",
        ["access", "sign_in", "save a live key outside keytrail", "access -> Validated (valid)"],
    )
    assert_path(keytrail_engine, "acme", ["Unverified", "Prompted", "SignedIn", "Validated"])
    assert [e.trigger.value for e in keytrail_engine.history("acme")] == ["access", "sign_in", "access"]


def test_register_then_copy_needs_a_key_of_the_new_account(keytrail_engine: Engine) -> None:
    """After register the key in hand is another account's: the real portal refuses to copy it."""
    drive(keytrail_engine, "acme", ["access", "sign_in", "generate_key", "access", "register -> SignedIn"])
    with pytest.raises(keytrail.errors.UnknownKey):
        drive(keytrail_engine, "acme", ["copy_key"])
    drive(keytrail_engine, "acme", ["generate_key", "access", "sign_in", "copy_key -> KeyCopied"])


def test_a_step_that_leads_elsewhere_fails_with_the_path(keytrail_engine: Engine) -> None:
    with pytest.raises(DriveError) as caught:
        drive(keytrail_engine, "acme", ["access", "sign_in", "access -> Validated"])
    assert str(caught.value) == textwrap.dedent(
        """\
        Step 3 of 3, 'access -> Validated', led 'acme' to Prompted (missing).

        What the onboarding went through:
           step  actual      trigger  reason   at
           0     Unverified  (start)
           1     Prompted    access   missing  2026-01-01T09:00:00Z
           2     SignedIn    sign_in           2026-01-01T09:00:00Z
        >  3     Prompted    access   missing  2026-01-01T09:00:00Z"""
    )


def test_an_engine_error_keeps_its_type_and_says_which_step(keytrail_engine: Engine) -> None:
    with pytest.raises(IllegalTransition) as caught:
        drive(keytrail_engine, "acme", ["access", "copy_key"])
    assert caught.value.__notes__[0] == "while driving 'acme': step 2 of 2, 'copy_key'"
    assert caught.value.__notes__[1].splitlines()[-1].split() == [
        ">",
        "1",
        "Prompted",
        "access",
        "missing",
        "2026-01-01T09:00:00Z",
    ]
    assert path_of(keytrail_engine, "acme") == [State.Unverified, State.Prompted]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (["access", "save_config"], "acme has no key in hand: no key was generated or copied on it yet."),
        (["revoke the saved key"], "acme has no saved key the authority issued, so there is nothing to revoke."),
        (["save_config(never issued)", "revoke the saved key"], "nothing to revoke"),
    ],
)
def test_steps_that_cannot_be_carried_out_say_why(keytrail_engine: Engine, steps: list[str], message: str) -> None:
    with pytest.raises(DriveError, match=re.escape(message)):
        drive(keytrail_engine, "acme", steps)


def test_moving_time_needs_a_clock_that_moves(tmp_path: Path) -> None:
    """An engine on a clock without advance(): the driver says how to give it one instead of guessing."""
    engine = Engine.open(f"sqlite:///{tmp_path}/k.db", clock=lambda: DEFAULT_START)
    try:
        with pytest.raises(DriveError, match="open the engine with clock=keytrail_clock"):
            drive(engine, "acme", ["advance time past expiry"])

        class Hand:
            def __init__(self) -> None:
                self.moved = timedelta(0)

            def advance(self, delta: timedelta) -> None:
                self.moved += delta

        hand = Hand()
        drive(engine, "acme", ["advance time past expiry"], clock=hand)
        assert hand.moved == timedelta(days=365)
    finally:
        engine.close()


def test_assert_path_passes_on_the_exact_path(keytrail_engine: Engine) -> None:
    drive(keytrail_engine, "acme", ["access", "sign_in"])
    assert_path(keytrail_engine, "acme", [State.Unverified, State.Prompted, State.SignedIn])
    assert_path(keytrail_engine, "acme", ["Unverified", "Prompted", "SignedIn"])
    assert_path(keytrail_engine, "never-started", [State.Unverified])


def test_assert_path_shows_both_side_by_side(keytrail_engine: Engine, keytrail_clock: FrozenClock) -> None:
    drive(keytrail_engine, "acme", ["access", "sign_in"])
    keytrail_clock.advance(minutes=3)
    drive(keytrail_engine, "acme", ["generate_key"])
    with pytest.raises(AssertionError) as caught:
        assert_path(keytrail_engine, "acme", ["Unverified", "Prompted", "SignedIn", "KeyCopied", "ConfigSaved"])
    assert str(caught.value) == textwrap.dedent(
        """\
        The onboarding 'acme' did not go through the expected states; the first difference is at step 3.

           step  expected     actual        trigger       reason   at
           0     Unverified   Unverified    (start)
           1     Prompted     Prompted      access        missing  2026-01-01T09:00:00Z
           2     SignedIn     SignedIn      sign_in                2026-01-01T09:00:00Z
        >  3     KeyCopied    KeyGenerated  generate_key           2026-01-01T09:03:00Z
           4     ConfigSaved  -"""
    )


def test_assert_path_marks_a_path_that_went_further(keytrail_engine: Engine) -> None:
    """Equal as far as the expectation goes is not enough: the first extra state is the difference."""
    drive(keytrail_engine, "acme", ["access", "sign_in"])
    with pytest.raises(AssertionError, match=r"first difference is at step 2\.") as caught:
        assert_path(keytrail_engine, "acme", ["Unverified", "Prompted"])
    assert re.search(r"^>  2 +- +SignedIn +sign_in", str(caught.value), re.MULTILINE)


def test_assert_path_reminds_that_paths_start_at_unverified(keytrail_engine: Engine) -> None:
    drive(keytrail_engine, "acme", ["access"])
    with pytest.raises(AssertionError, match=r"\(A path starts at Unverified, the state before the first event\.\)"):
        assert_path(keytrail_engine, "acme", ["Prompted"])


def _documented_example() -> str:
    """The Python block of docs/testing.md ("Testing your integration"), run as a user's test file."""
    match = re.search(r"```python\n(.*?)```", TESTING_PAGE.read_text(encoding="utf-8"), re.DOTALL)
    assert match is not None, "docs/testing.md has no python example"
    return match.group(1)


FAILING_EXAMPLE = """
from datetime import timedelta

import pytest

from keytrail.testing import assert_path, drive


@pytest.fixture
def keytrail_engine_options():
    return {"key_lifetime": timedelta(days=30)}


def test_a_wrong_expectation(keytrail_engine):
    drive(keytrail_engine, "acme", ["access", "sign_in", "generate_key"])
    assert_path(keytrail_engine, "acme", ["Unverified", "Prompted", "SignedIn", "KeyCopied"])


def test_short_keys(keytrail_engine, keytrail_clock):
    drive(keytrail_engine, "acme", ["save a live key outside keytrail", "access -> Validated (valid)"])
    keytrail_clock.advance(days=30)
    drive(keytrail_engine, "acme", ["access -> Prompted (expired)"])
"""


def _user_project(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        addopts = ["--strict-markers", "-p", "no:cacheprovider"]
        filterwarnings = ["error"]
        """
    )
    pytester.makepyfile(test_amazon_onboarding=_documented_example(), test_failing=FAILING_EXAMPLE)


def test_a_project_that_only_installs_keytrail(pytester: pytest.Pytester) -> None:
    """The documented example and a failing test, in a fresh interpreter: the plugin comes from the installed package."""
    _user_project(pytester)
    result = pytester.runpytest_subprocess("-v")
    documented_tests = 3 + 25  # three stories, and one test per generated covering sequence
    result.assert_outcomes(passed=documented_tests + 1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_amazon_onboarding.py::test_a_new_store_goes_through_to_store_integration PASSED*",
            "*test_amazon_onboarding.py::test_every_transition_of_the_machine?access-Unverified-Validated-valid? PASSED*",
            "*test_failing.py::test_short_keys PASSED*",
            "*The onboarding 'acme' did not go through the expected states; the first difference is at step 3.",
            "*step  expected    actual        trigger       reason   at",
            "*>  3     KeyCopied   KeyGenerated  generate_key           2026-01-01T09:00:00Z",
        ]
    )
    assert "postgresql" not in result.stdout.str()


@pytest.mark.postgres
def test_the_same_project_on_postgresql_when_asked(pytester: pytest.Pytester, postgres_server: str) -> None:
    """--keytrail-postgres runs every keytrail_engine test on both databases."""
    _user_project(pytester)
    result = pytester.runpytest_subprocess("-v", f"--keytrail-postgres={postgres_server}", "-k", "not every_transition")
    result.assert_outcomes(passed=2 * 4, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*::test_a_revoked_key_means_a_new_one?sqlite? PASSED*",
            "*::test_a_revoked_key_means_a_new_one?postgresql? PASSED*",
            "*::test_short_keys?postgresql? PASSED*",
        ]
    )


HEAVY = (
    "sqlalchemy",
    "sqlmodel",
    "psycopg",
    "transitions",
    "structlog",
    "freezegun",
    "keytrail.engine",
    "keytrail.persistence",
    "keytrail.portal",
)


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    """pytest imports the plugin in every project that has keytrail installed: no engine, database or machine then."""
    code = "import sys, keytrail.testing; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [name for name in HEAVY if name in loaded] == []


NOTHING_HEAVY = f"""
import sys


def test_a_test_without_keytrail_fixtures(pytestconfig):
    assert pytestconfig.pluginmanager.get_plugin("keytrail") is not None
    assert [name for name in {HEAVY!r} if name in sys.modules] == []
"""


def test_a_test_run_without_keytrail_fixtures_pays_nothing_for_the_plugin(pytester: pytest.Pytester) -> None:
    """The plugin is loaded, yet a test that uses none of its fixtures runs with no engine, database or hash loaded."""
    pytester.makepyfile(test_plain=NOTHING_HEAVY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_assert_path_suggests_the_state_meant(keytrail_engine: Engine) -> None:
    with pytest.raises(ValueError, match=re.escape("'Promted' is no state; did you mean 'Prompted'?")):
        assert_path(keytrail_engine, "acme", ["Unverified", "Promted"])


def test_assert_path_from_a_step(keytrail_engine: Engine) -> None:
    """``from_step=k`` checks the states from step k on (step 0 is Unverified), numbered as in the full table."""
    drive(keytrail_engine, "acme", ["access", "sign_in", "generate_key"])
    assert_path(keytrail_engine, "acme", ["SignedIn", "KeyGenerated"], from_step=2)
    assert_path(keytrail_engine, "acme", ["Unverified", "Prompted", "SignedIn", "KeyGenerated"], from_step=0)
    with pytest.raises(AssertionError, match=r"from step 1.*first difference is at step 2\.") as caught:
        assert_path(keytrail_engine, "acme", ["Prompted", "KeyCopied", "KeyGenerated"], from_step=1)
    assert re.search(r"^   0 +(?:- +)?Unverified +\(start\)", str(caught.value), re.MULTILINE)
    assert re.search(r"^>  2 +KeyCopied +SignedIn +sign_in", str(caught.value), re.MULTILINE)


def test_assert_path_of_the_last_states(keytrail_engine: Engine, keytrail_clock: FrozenClock) -> None:
    """``last=n`` checks only the last n states, whatever came before."""
    drive(keytrail_engine, "acme", path_to(State.StoreIntegration))
    keytrail_clock.advance(days=365)
    drive(keytrail_engine, "acme", ["access -> Prompted (expired)", "sign_in"])
    assert_path(keytrail_engine, "acme", ["StoreIntegration", "Prompted", "SignedIn"], last=3)
    with pytest.raises(AssertionError, match=r"last 2 states.*first difference is at step 7\.") as caught:
        assert_path(keytrail_engine, "acme", ["Validated", "SignedIn"], last=2)
    assert re.search(r"^>  7 +Validated +Prompted +access +expired", str(caught.value), re.MULTILINE)
    with pytest.raises(ValueError, match=r"last=2 takes 2 expected states, not 3\."):
        assert_path(keytrail_engine, "acme", ["Prompted", "SignedIn", "SignedIn"], last=2)
    with pytest.raises(TypeError, match="from_step or last, not both"):
        assert_path(keytrail_engine, "acme", ["SignedIn"], from_step=9, last=1)


ILLEGAL_STEP = """
from keytrail.testing import assert_path, drive


def test_an_illegal_trigger(keytrail_engine):
    drive(keytrail_engine, "acme", ["access", "sign_in", "proceed"])


def test_a_misspelt_step(keytrail_engine):
    drive(keytrail_engine, "acme", ["access -> Promted"])


def test_a_misspelt_state(keytrail_engine):
    assert_path(keytrail_engine, "acme", ["Unverifed"])
"""


def test_an_illegal_trigger_shows_the_path_not_keytrail_internals(pytester: pytest.Pytester) -> None:
    """The failure report is the user's own line, the engine's sentence and the path table: no keytrail frame."""
    pytester.makepyfile(test_illegal=ILLEGAL_STEP)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)
    output = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            '>*drive(keytrail_engine, "acme", ?"access", "sign_in", "proceed"?)',  # ? for the brackets fnmatch reads
            "E*IllegalTransition: acme is SignedIn; proceed is allowed only in Validated.*",
            "*while driving 'acme': step 3 of 3, 'proceed'*",
            "*1     Prompted    access   missing*",
            "*2     SignedIn    sign_in*",
        ]
    )
    result.stdout.fnmatch_lines(["E*ValueError: *'Promted' is no state; did you mean 'Prompted'?*"])
    assert f"{DriveError.__module__}.{DriveError.__qualname__}" == "keytrail.testing.DriveError"
    result.stdout.fnmatch_lines(["E*ValueError: 'Unverifed' is no state; did you mean 'Unverified'?*"])
    frames = re.findall(r"^(\S+\.py):\d+: ", output, re.MULTILINE)
    assert frames == ["test_illegal.py"] * 3, output
