"""The engine on both backends: the table, the source document's branches, expiry, replay, idempotency."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time

from keytrail import Engine, Reason, State, Trigger
from keytrail.errors import (
    AuthenticationFailed,
    DuplicateAccount,
    IdempotencyMismatch,
    IllegalTransition,
    InvalidInput,
    KeyUnusable,
    UnknownKey,
    UnknownOnboarding,
)
from keytrail.states import allowed_triggers
from keytrail.states.paths import Path
from keytrail.testing import assert_path, cover_transitions, drive
from tests.conftest import MovableClock
from tests.helpers import EMAIL, PASSWORD, authority_events, drive_to, ensure_account, snapshot

ISSUE_EXAMPLE_PASSWORD = "correct horse battery"


def test_issue_example_happy_path(engine: Engine) -> None:
    """The whole flow of the source document, as docs/python.md shows it."""
    engine.portal.create_account("ops@acme.test", ISSUE_EXAMPLE_PASSWORD, company="Acme")
    first = engine.access("acme")
    assert (first.state, first.reason, first.version) == (State.Prompted, Reason.missing, 1)
    assert engine.sign_in("acme", email="ops@acme.test", password=ISSUE_EXAMPLE_PASSWORD).state is State.SignedIn
    gen = engine.generate_key("acme", description="Amazon Sales Channel")
    assert gen.state is State.KeyGenerated and gen.key.startswith("kt_") and gen.hint == gen.key[-4:]
    copied = engine.copy_key("acme")
    assert copied.state is State.KeyCopied and copied.key == gen.key and copied.key_id == gen.key_id
    assert engine.save_config("acme", key=gen.key).state is State.ConfigSaved
    validated = engine.access("acme")
    assert (validated.state, validated.reason) == (State.Validated, None)
    assert engine.proceed("acme").state is State.StoreIntegration
    assert engine.state("acme") is State.StoreIntegration
    assert [e.version for e in engine.history("acme")] == list(range(1, 8))


@pytest.mark.parametrize("path", cover_transitions(outcomes=True), ids=lambda path: path.id)
def test_every_transition_of_the_table(engine: Engine, clock: MovableClock, path: Path) -> None:
    """Generated from the table: every transition, with every verification outcome that can decide it, really happens.

    The guards are made true or false by real keys, real revocation and moved time; each step
    must land where the table says, and the log must replay to the same path.
    """
    drive(engine, "row-test", path, clock=clock)
    assert_path(engine, "row-test", path.states)
    replay = engine.replay("row-test")
    assert replay.ok and replay.path == path.states
    assert engine.verify().ok


def _illegal_cases() -> list[tuple[State, Trigger]]:
    return [(state, trigger) for state in State for trigger in Trigger if trigger not in allowed_triggers(state)]


@pytest.mark.parametrize(("state", "trigger"), _illegal_cases(), ids=lambda v: v.value)
def test_every_illegal_trigger_is_refused_and_writes_nothing(engine: Engine, state: State, trigger: Trigger) -> None:
    """The error names the current state and what is allowed there; no row of any table changes."""
    drive_to(engine, "acme", state)
    before = snapshot(engine)
    kwargs: dict[str, str] = {
        Trigger.sign_in: {"email": EMAIL, "password": PASSWORD},
        Trigger.register: {"email": "other@acme.test", "password": PASSWORD, "company": "Acme"},
        Trigger.generate_key: {"description": "Amazon Sales Channel"},
    }.get(trigger, {})
    with pytest.raises(IllegalTransition) as caught:
        getattr(engine, trigger.value)("acme", **kwargs)
    message = str(caught.value)
    assert f"acme is {state.value}" in message
    assert "Allowed now: " + ", ".join(t.value for t in allowed_triggers(state)) in message
    assert snapshot(engine) == before


def test_already_signed_in_skips_the_password(engine: Engine, clock: MovableClock) -> None:
    """A live session lets the onboarding that opened it, re-prompted, sign in without the password; no other."""
    drive_to(engine, "store-a", State.SignedIn)
    engine.access("store-a")
    via_session = engine.sign_in("store-a", email=EMAIL)
    assert via_session.state is State.SignedIn
    assert engine.history("store-a")[-1].data["via"] == "session"
    engine.access("store-b")
    with pytest.raises(AuthenticationFailed, match=r"no live session for ops@acme\.test on store-b"):
        engine.sign_in("store-b", email=EMAIL)
    clock.advance(hours=9)  # past the 8-hour session
    engine.access("store-a")
    with pytest.raises(AuthenticationFailed, match="no live session"):
        engine.sign_in("store-a", email=EMAIL)
    assert (engine.state("store-a"), engine.state("store-b")) == (State.Prompted, State.Prompted)


def test_wrong_password_is_an_error_and_adds_no_event(engine: Engine) -> None:
    ensure_account(engine)
    engine.access("acme")
    before = snapshot(engine, skip=("sign_in_attempts", "accounts"), authority_log=False)
    with pytest.raises(AuthenticationFailed, match="wrong email or password") as caught:
        engine.sign_in("acme", email=EMAIL, password="not the password", actor="mallory")
    assert "not the password" not in str(caught.value)
    assert snapshot(engine, skip=("sign_in_attempts", "accounts"), authority_log=False) == before
    attempts = engine.portal.sign_in_attempts(EMAIL)
    assert [(a.outcome, a.stream_id) for a in attempts] == [("wrong_password", "acme")]
    # The failure is in the log, in the account's own stream, with its actor.
    account = engine.portal.find_account(EMAIL)
    assert account is not None
    assert authority_events(engine, f"@account:{account.account_id}")[-1] == ("sign_in_failed", "mallory")
    assert engine.verify().ok


def test_no_account_means_register(engine: Engine) -> None:
    engine.access("acme")
    out = engine.register("acme", email="new@acme.test", password=PASSWORD, company="Acme")
    assert out.state is State.SignedIn
    assert engine.portal.find_account("NEW@acme.test") is not None
    engine.access("other")
    with pytest.raises(DuplicateAccount):
        engine.register("other", email="new@acme.test", password=PASSWORD, company="Acme")
    assert engine.state("other") is State.Prompted


def test_copy_an_existing_key_instead_of_a_new_one(engine: Engine) -> None:
    key = drive_to(engine, "store-a", State.KeyGenerated)
    key_id = engine.history("store-a")[-1].data["key_id"]
    engine.access("store-b")
    engine.sign_in("store-b", email=EMAIL, password=PASSWORD)
    copied = engine.copy_key("store-b", key_id=key_id)
    assert copied.key == key
    engine.save_config("store-b", key=copied.key)
    assert engine.access("store-b").state is State.Validated


def test_copy_key_from_signed_in_needs_a_key_id(engine: Engine) -> None:
    drive_to(engine, "acme", State.SignedIn)
    before = snapshot(engine)
    with pytest.raises(InvalidInput, match="pass key_id"):
        engine.copy_key("acme")
    with pytest.raises(UnknownKey):
        engine.copy_key("acme", key_id="key_0000000000000000")
    assert snapshot(engine) == before


def test_a_revoked_key_cannot_be_copied(engine: Engine) -> None:
    drive_to(engine, "acme", State.KeyGenerated)
    key_id = engine.history("acme")[-1].data["key_id"]
    engine.portal.revoke_key(key_id)
    with pytest.raises(KeyUnusable, match="revoked"):
        engine.copy_key("acme")
    assert engine.state("acme") is State.KeyGenerated


def test_another_accounts_key_cannot_be_copied(engine: Engine) -> None:
    drive_to(engine, "acme", State.KeyGenerated)
    key_id = engine.history("acme")[-1].data["key_id"]
    engine.access("globex")
    engine.register("globex", email="ops@globex.test", password=PASSWORD, company="Globex")
    with pytest.raises(UnknownKey):
        engine.copy_key("globex", key_id=key_id)


def test_prompted_again_after_saving_a_wrong_key(engine: Engine) -> None:
    drive_to(engine, "acme", State.KeyCopied)
    engine.save_config("acme", key="not-the-key-we-generated")
    again = engine.access("acme")
    assert (again.state, again.reason) == (State.Prompted, Reason.invalid)
    engine.sign_in("acme", email=EMAIL)
    gen = engine.generate_key("acme", description="Amazon Sales Channel")
    engine.copy_key("acme")
    engine.save_config("acme", key=gen.key)
    assert engine.access("acme").state is State.Validated


def test_asterisks_keep_the_saved_key(engine: Engine) -> None:
    key = drive_to(engine, "acme", State.StoreIntegration)
    assert key is not None
    kept = engine.save_config("acme", key="******")
    assert kept.state is State.ConfigSaved
    assert engine.history("acme")[-1].data == {
        "fingerprint": engine.history("acme")[-3].data["fingerprint"],
        "hint": key[-4:],
        "kept": True,
    }
    assert engine.access("acme").state is State.Validated
    engine.access("fresh")
    with pytest.raises(InvalidInput, match="no saved key"):
        engine.save_config("fresh", key="****************")


def test_save_config_trims_surrounding_whitespace(engine: Engine) -> None:
    key = drive_to(engine, "acme", State.KeyCopied)
    engine.save_config("acme", key=f"  {key}\n")
    assert engine.access("acme").state is State.Validated


def test_expiry_with_freezegun(db_url: str) -> None:
    """A key valid today is expired after its lifetime, with the engine on the default clock."""
    with freeze_time("2026-03-01 12:00:00") as frozen:
        engine = Engine.open(db_url, key_lifetime=timedelta(days=30))
        try:
            drive_to(engine, "acme", State.StoreIntegration)
            assert engine.access("acme").state is State.StoreIntegration
            frozen.tick(timedelta(days=29, hours=23))
            assert engine.access("acme").state is State.StoreIntegration
            frozen.tick(timedelta(hours=1))  # exactly at expiry: expired
            out = engine.access("acme")
            assert (out.state, out.reason) == (State.Prompted, Reason.expired)
        finally:
            engine.close()


def test_a_revoked_key_is_invalid(engine: Engine) -> None:
    drive_to(engine, "acme", State.StoreIntegration)
    engine.portal.revoke_key(engine.portal.list_keys(EMAIL)[0].key_id)
    out = engine.access("acme")
    assert (out.state, out.reason) == (State.Prompted, Reason.invalid)


def test_proceed_reverifies_at_its_own_instant(engine: Engine, clock: MovableClock) -> None:
    drive_to(engine, "acme", State.Validated)
    clock.advance(days=366)
    out = engine.proceed("acme")
    assert (out.state, out.reason) == (State.Prompted, Reason.expired)


def test_replay_equals_the_projection_and_as_of_returns_the_past(engine: Engine, clock: MovableClock) -> None:
    drive_to(engine, "acme", State.KeyCopied)
    middle = clock.now
    clock.advance(minutes=5)
    engine.save_config("acme", key="x" * 20)
    engine.access("acme")
    replay = engine.replay("acme")
    status = engine.status("acme")
    assert (replay.state.value, replay.version, replay.head_hash) == (status.state, status.version, status.head_hash)
    assert replay.path == [
        State.Unverified,
        State.Prompted,
        State.SignedIn,
        State.KeyGenerated,
        State.KeyCopied,
        State.ConfigSaved,
        State.Prompted,
    ]
    assert replay.ok
    past = engine.replay("acme", as_of=middle)
    assert (past.state, past.version) == (State.KeyCopied, 4)
    before_all = engine.replay("acme", as_of=middle - timedelta(days=1))
    assert (before_all.state, before_all.version, before_all.path) == (State.Unverified, 0, [State.Unverified])


def test_unknown_onboardings_are_refused_where_one_must_exist(engine: Engine) -> None:
    for read in (engine.state, engine.history, engine.replay):
        with pytest.raises(UnknownOnboarding, match="no onboarding 'ghost'"):
            read("ghost")
    with pytest.raises(UnknownOnboarding):
        engine.verify("ghost")


def test_idempotency_key_returns_the_first_outcome_and_writes_nothing(engine: Engine) -> None:
    drive_to(engine, "acme", State.SignedIn)
    first = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="req-1")
    before = snapshot(engine)
    again = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="req-1")
    assert snapshot(engine) == before
    assert again.replayed and not first.replayed
    assert (again.version, again.state, again.key, again.key_id) == (
        first.version,
        first.state,
        first.key,
        first.key_id,
    )
    a1 = engine.access("acme", idempotency_key="page-view-1")
    a2 = engine.access("acme", idempotency_key="page-view-1")
    assert (a1.version, a1.state) == (a2.version, a2.state)
    with pytest.raises(IdempotencyMismatch):
        engine.proceed("acme", idempotency_key="page-view-1")


def test_actor_is_recorded(engine: Engine) -> None:
    engine.access("acme", actor="admin:jane")
    assert engine.history("acme")[0].actor == "admin:jane"


def test_verify_passes_on_a_busy_log(engine: Engine) -> None:
    for name in ("a", "b", "c"):
        drive_to(engine, f"store-{name}", State.StoreIntegration)
    report = engine.verify()
    # Three onboardings of 7 events, plus the authority's: one account created, one key per onboarding.
    assert report.ok and (report.streams, report.authority_streams, report.events) == (3, 1 + 3, 21 + 1 + 3)
