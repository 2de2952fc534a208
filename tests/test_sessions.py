"""Sessions of the account site belong to one onboarding; idempotent retries hand out no more than copy_key would.

Each test is one attack sentence of the issue, on both backends.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keytrail import Engine, State
from keytrail.cli import app
from keytrail.engine import upgrading
from keytrail.errors import (
    AccountLocked,
    AuthenticationFailed,
    ConcurrencyConflict,
    KeyUnusable,
    SchemaMismatch,
    StorageError,
)
from keytrail.events import iso_utc
from keytrail.persistence import PendingEvent
from keytrail.persistence.units import Storage
from keytrail.pgcluster import scratch_database
from tests.conftest import MovableClock
from tests.helpers import EMAIL, PASSWORD, drive_to, ensure_account, snapshot

WRONG = "not-the-password-0"
NO_SESSION = "There is no live session for {email} on {stream}; sign in with the password."


def _prompted(engine: Engine, stream: str) -> None:
    engine.access(stream)
    assert engine.state(stream) is State.Prompted


# -- item 5: a session belongs to the onboarding that signed in --------------------------------


def test_another_onboarding_cannot_reuse_a_live_session(engine: Engine) -> None:
    """store-b cannot sign in without the password on store-a's session, so it cannot copy store-a's key."""
    drive_to(engine, "store-a", State.KeyGenerated)
    _prompted(engine, "store-b")
    before = snapshot(engine, skip=("sign_in_attempts",), authority_log=False)
    with pytest.raises(AuthenticationFailed) as caught:
        engine.sign_in("store-b", email=EMAIL)
    assert str(caught.value) == NO_SESSION.format(email=EMAIL, stream="store-b")
    assert snapshot(engine, skip=("sign_in_attempts",), authority_log=False) == before
    assert engine.state("store-b") is State.Prompted
    assert [(a.outcome, a.stream_id) for a in engine.portal.sign_in_attempts(EMAIL)][-1] == ("no_session", "store-b")
    # The onboarding that signed in may come back without the password while its session lasts.
    _prompted(engine, "store-a")
    again = engine.sign_in("store-a", email=EMAIL)
    assert again.state is State.SignedIn
    assert engine.history("store-a")[-1].data["via"] == "session"


def test_session_sign_ins_do_not_reset_the_failure_count(engine: Engine) -> None:
    """20 wrong passwords with a session sign-in every four lock the account (after the fifth)."""
    drive_to(engine, "owner", State.SignedIn)
    _prompted(engine, "attacker")
    locked_after = None
    for attempt in range(1, 21):
        try:
            engine.sign_in("attacker", email=EMAIL, password=WRONG)
        except AccountLocked:
            locked_after = attempt
            break
        except AuthenticationFailed:
            pass
        if attempt % 4 == 0:
            _prompted(engine, "owner")
            assert engine.sign_in("owner", email=EMAIL).state is State.SignedIn  # the session, no password
    assert locked_after == 5
    with pytest.raises(AccountLocked):
        engine.sign_in("attacker", email=EMAIL, password=PASSWORD)


def test_a_session_sign_in_does_not_extend_the_session(engine: Engine, clock: MovableClock) -> None:
    """Only a password success opens or extends a session: one password lasts 8 hours, however often it is reused."""
    drive_to(engine, "acme", State.SignedIn)
    for _ in range(3):
        clock.advance(hours=3)
        _prompted(engine, "acme")
        if _ == 2:  # 9 hours after the password
            with pytest.raises(AuthenticationFailed, match="no live session"):
                engine.sign_in("acme", email=EMAIL)
        else:
            engine.sign_in("acme", email=EMAIL)


@pytest.mark.parametrize("later", [timedelta(hours=8), timedelta(hours=9), timedelta(days=30)])
def test_key_commands_refused_after_the_session_ended(engine: Engine, clock: MovableClock, later: timedelta) -> None:
    """An onboarding left in SignedIn or KeyGenerated mints and copies nothing once its session ended."""
    drive_to(engine, "acme", State.KeyGenerated)
    key_id = engine.history("acme")[-1].data["key_id"]
    drive_to(engine, "left", State.SignedIn)
    ended = clock.now + timedelta(hours=8)
    clock.advance(later)
    before = snapshot(engine)

    def message(stream: str) -> str:
        return re.escape(f"The session of {stream} on the account site ended at {iso_utc(ended)}; sign in again.")

    with pytest.raises(AuthenticationFailed, match=message("left")):
        engine.generate_key("left", description="Amazon Sales Channel")
    with pytest.raises(AuthenticationFailed, match=message("acme")):
        engine.generate_key("acme", description="Amazon Sales Channel")
    with pytest.raises(AuthenticationFailed, match=message("acme")):
        engine.copy_key("acme")
    with pytest.raises(AuthenticationFailed, match=message("left")):
        engine.copy_key("left", key_id=key_id)
    assert snapshot(engine) == before
    assert (engine.state("left"), engine.state("acme")) == (State.SignedIn, State.KeyGenerated)


def test_signing_in_on_one_onboarding_keeps_the_other_sessions(engine: Engine) -> None:
    """Two onboardings of one account each hold their own session: a password sign-in elsewhere ends neither."""
    drive_to(engine, "store-a", State.SignedIn)
    drive_to(engine, "store-b", State.SignedIn)
    assert engine.generate_key("store-a", description="a").state is State.KeyGenerated
    assert engine.generate_key("store-b", description="b").state is State.KeyGenerated


def test_no_session_and_unknown_account_answer_alike(engine: Engine) -> None:
    """Probing without a password tells nothing: same class, same message, one recorded attempt each."""
    ensure_account(engine)
    _prompted(engine, "probe")
    answers = []
    for email in (EMAIL, "nobody@acme.test"):
        with pytest.raises(AuthenticationFailed) as caught:
            engine.sign_in("probe", email=email)
        answers.append((type(caught.value), str(caught.value).replace(email, "<email>")))
    assert answers[0] == answers[1]
    assert answers[0][1] == NO_SESSION.format(email="<email>", stream="probe")
    attempts = [(a.email, a.outcome, a.stream_id) for a in engine.portal.sign_in_attempts()]
    assert attempts == [(EMAIL, "no_session", "probe"), ("nobody@acme.test", "no_session", "probe")]


def test_cli_session_sign_in_answers_alike(tmp_path: Path) -> None:
    """``sign-in --session`` prints the same line for an unknown email and for no session."""
    db = f"sqlite:///{tmp_path}/k.db"
    with Engine.open(db) as engine:
        ensure_account(engine)
        _prompted(engine, "probe")
    lines = []
    for email in (EMAIL, "nobody@acme.test"):
        result = CliRunner().invoke(app, ["--db", db, "sign-in", "probe", "--email", email, "--session"])
        lines.append((result.exit_code, result.stderr.replace(email, "<email>")))
    assert lines[0] == lines[1]


# -- item 4: an idempotent retry hands out no more than copy_key could now ---------------------------


def test_retry_within_the_session_returns_the_key(engine: Engine) -> None:
    drive_to(engine, "acme", State.SignedIn)
    first = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    copied = engine.copy_key("acme", idempotency_key="copy-1")
    before = snapshot(engine)
    again = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    copied_again = engine.copy_key("acme", idempotency_key="copy-1")
    assert (again.key, again.replayed, copied_again.key, copied_again.replayed) == (first.key, True, copied.key, True)
    assert snapshot(engine) == before


def test_retry_after_revocation_is_refused(engine: Engine) -> None:
    drive_to(engine, "acme", State.SignedIn)
    first = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    engine.portal.revoke_key(first.key_id)
    before = snapshot(engine)
    with pytest.raises(KeyUnusable, match=r"already used for generate_key at version 3\b.*revoked") as caught:
        engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    assert first.key not in str(caught.value) and "gen-1" not in str(caught.value)
    assert snapshot(engine) == before


def test_retry_without_a_live_session_is_refused(engine: Engine, clock: MovableClock) -> None:
    drive_to(engine, "acme", State.SignedIn)
    engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    engine.copy_key("acme", idempotency_key="copy-1")
    clock.advance(hours=9)
    before = snapshot(engine)
    with pytest.raises(AuthenticationFailed, match=r"already used for generate_key at version 3\b.*session"):
        engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    with pytest.raises(AuthenticationFailed, match=r"already used for copy_key at version 4\b.*session"):
        engine.copy_key("acme", idempotency_key="copy-1")
    assert snapshot(engine) == before


def test_retry_of_an_expired_key_is_refused_even_signed_in_again(engine: Engine, clock: MovableClock) -> None:
    drive_to(engine, "acme", State.SignedIn)
    engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    clock.advance(days=366)
    _prompted(engine, "acme")
    engine.sign_in("acme", email=EMAIL, password=PASSWORD)
    before = snapshot(engine)
    with pytest.raises(KeyUnusable, match=r"already used for generate_key at version 3\b.*expired"):
        engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    assert snapshot(engine) == before


def test_the_issue_example_400_days_later(engine: Engine, clock: MovableClock) -> None:
    """Revoked, expired, nobody signed in, the stream Prompted: the retry shows nothing."""
    drive_to(engine, "acme", State.SignedIn)
    first = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    engine.portal.revoke_key(first.key_id)
    clock.advance(days=400)
    _prompted(engine, "acme")
    before = snapshot(engine)
    with pytest.raises((KeyUnusable, AuthenticationFailed), match="cannot be shown again") as caught:
        engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    assert first.key not in str(caught.value)
    assert snapshot(engine) == before


# -- item 4: idempotency keys are stored as digests ----------------------------------------------


def test_idempotency_keys_are_not_in_the_log_or_its_exports(db_url: str, clock: MovableClock) -> None:
    raw = "req-SECRET-idem-5d1f"
    with Engine.open(db_url, clock=clock) as engine:
        drive_to(engine, "acme", State.SignedIn)
        engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key=raw)
        stored = engine.history("acme")[-1].idempotency_key
        assert stored is not None and stored.startswith("idem:") and raw not in stored
        assert raw not in repr(snapshot(engine))
        assert engine.verify().ok
    outputs = [CliRunner().invoke(app, ["--db", db_url, *args]) for args in (["history", "acme", "--json"], ["export"])]
    for result in outputs:
        assert result.exit_code == 0, result.stderr
        assert raw not in result.stdout and stored in result.stdout
    history = json.loads(outputs[0].stdout)
    assert history["events"][-1]["idempotency_key"] == stored


def test_a_printed_digest_replays_nothing(engine: Engine) -> None:
    """Whoever read an export cannot send the printed digest back as an idempotency key to get the key."""
    drive_to(engine, "acme", State.SignedIn)
    engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    stored = engine.history("acme")[-1].idempotency_key
    assert stored is not None
    fresh = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key=stored)
    assert not fresh.replayed and fresh.version == 4


def test_raw_idempotency_keys_of_older_versions_still_replay(engine: Engine) -> None:
    """An event written before digests holds the raw key: a retry with that key still gets its outcome."""
    engine.access("acme")
    with Storage(engine.database).write() as unit:
        head = unit.load("acme").head
        pending = PendingEvent("access", "Prompted", "Prompted", "missing", {}, None, engine.now(), "legacy-1")
        unit.append("acme", head, pending)
    before = snapshot(engine)
    again = engine.access("acme", idempotency_key="legacy-1")
    assert again.replayed and again.version == 2
    assert snapshot(engine) == before
    assert engine.verify().ok


# -- the sessions table of older databases -------------------------------------------------------------

_OLD_SESSIONS = """CREATE TABLE portal_sessions (
    account_id VARCHAR(40) NOT NULL,
    opened_at {time} NOT NULL,
    expires_at {time} NOT NULL,
    PRIMARY KEY (account_id),
    FOREIGN KEY(account_id) REFERENCES accounts (account_id)
)"""


def test_a_database_of_the_previous_version_opens_and_works(db_url: str, clock: MovableClock) -> None:
    """The schema before sessions were bound (an early 0.1.0): refused on open, upgraded by `keytrail db upgrade`,
    its unbound sessions unusable."""
    with Engine.open(db_url, clock=clock) as engine:
        drive_to(engine, "acme", State.SignedIn)
        with engine.database.write() as conn:
            names = set(sa.inspect(conn).get_table_names())
            for name in names - {"events", "streams", "store_config", "keytrail_meta", "accounts", "api_keys"}:
                if name != "sign_in_attempts":
                    conn.execute(sa.text(f"DROP TABLE {name}"))
            conn.execute(sa.text("UPDATE keytrail_meta SET value = '1' WHERE name = 'schema_version'"))
            time = "TIMESTAMP WITH TIME ZONE" if engine.database.dialect == "postgresql" else "DATETIME"
            conn.execute(sa.text(_OLD_SESSIONS.format(time=time)))
            account_id = conn.execute(sa.text("SELECT account_id FROM accounts")).scalar_one()
            conn.execute(
                sa.text("INSERT INTO portal_sessions VALUES (:a, :o, :e)"),
                {"a": account_id, "o": clock.now, "e": clock.now + timedelta(hours=8)},
            )
            conn.execute(sa.text("DELETE FROM keytrail_meta WHERE name = 'idempotency_salt'"))
    with pytest.raises(SchemaMismatch, match="keytrail db upgrade"):
        Engine.open(db_url, clock=clock, create=False)
    upgrading.upgrade(db_url)
    for _ in range(2):  # the upgrade ran once, and opening again finds nothing to do
        with Engine.open(db_url, clock=clock, create=False) as engine:
            assert engine.state("acme") is State.SignedIn
    with Engine.open(db_url, clock=clock, create=False) as engine:
        # The session in the old table is bound to no onboarding: the key commands want a new sign-in.
        with pytest.raises(AuthenticationFailed, match="sign in again"):
            engine.generate_key("acme", description="Amazon Sales Channel")
        _prompted(engine, "acme")
        with pytest.raises(AuthenticationFailed, match="no live session"):
            engine.sign_in("acme", email=EMAIL)
        engine.sign_in("acme", email=EMAIL, password=PASSWORD)
        first = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
        again = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
        assert again.replayed and again.key == first.key
        assert engine.verify().ok


@pytest.mark.postgres
def test_an_older_database_that_is_read_only_is_refused_and_not_upgraded(
    postgres_server: str, clock: MovableClock
) -> None:
    """Opening an older schema is refused (never migrated), read-only or not; the upgrade on a read-only
    database fails clearly and writes nothing; once writable, it upgrades and works.

    PostgreSQL only: the suite runs as root, where a SQLite file's permissions stop no write.
    """
    with scratch_database(postgres_server) as url:
        with Engine.open(url, clock=clock) as engine:
            drive_to(engine, "acme", State.SignedIn)
            with engine.database.write() as conn:
                conn.execute(sa.text("DROP TABLE onboarding_sessions"))
                conn.execute(sa.text("DROP TABLE subscriptions"))
                conn.execute(sa.text("DROP TABLE keytrail_alembic_version"))
                conn.execute(sa.text("DELETE FROM keytrail_meta WHERE name = 'idempotency_salt'"))
                conn.execute(sa.text("UPDATE keytrail_meta SET value = '1' WHERE name = 'schema_version'"))
        name = sa.make_url(url).database
        raw = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with raw.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        try:
            with pytest.raises(SchemaMismatch, match=r"older than this keytrail's.*keytrail db upgrade"):
                Engine.open(url, clock=clock, create=False)
            with pytest.raises(StorageError, match="read-only"):
                upgrading.upgrade(url)
        finally:
            with raw.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off'))
            raw.dispose()
        assert upgrading.current(url).revision == "0001"
        upgrading.upgrade(url)
        with Engine.open(url, clock=clock, create=False) as engine:
            assert engine.access("acme", idempotency_key="req-1").state is State.Prompted
            assert engine.verify().ok


def test_a_stale_expected_version_is_refused_before_the_password_is_checked(engine: Engine) -> None:
    """A sign-in bound to a version the onboarding has left records no failed attempt and counts towards no lockout."""
    drive_to(engine, "acme", State.Prompted)
    attempts = len(engine.portal.sign_in_attempts(EMAIL))
    with pytest.raises(ConcurrencyConflict):
        engine.sign_in("acme", email=EMAIL, password="a wrong password", expected_version=7)
    assert len(engine.portal.sign_in_attempts(EMAIL)) == attempts
