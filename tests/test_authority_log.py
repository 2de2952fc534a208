"""The key authority's actions in the hash-chained log: recorded with their actor, never a secret,
and every kind of tampering with them (or with the tables they vouch for) named by verify."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Connection

from keytrail import Engine, State
from keytrail.crypto import generate_secret_key
from keytrail.engine import checkpoints, reports
from keytrail.engine.audit_at import audit_events
from keytrail.engine.tokens import Tokens
from keytrail.errors import AuthenticationFailed, IntegrityViolation, InvalidInput
from keytrail.persistence.authority_store import AuthorityStore
from keytrail.persistence.store import events_table, streams_table
from keytrail.portal.records import AuthorityEvent
from tests.conftest import MovableClock
from tests.helpers import EMAIL, PASSWORD, authority_events, drive_to, rechain, snapshot


@pytest.fixture
def acted(engine: Engine, clock: MovableClock) -> dict[str, Any]:
    """An onboarding with its key, then a revocation, a lockout and its end, a rotation, a token's life."""
    key = drive_to(engine, "acme", State.StoreIntegration)
    key_id = engine.status("acme").key_id
    account = engine.portal.find_account(EMAIL)
    assert key is not None and key_id is not None and account is not None
    clock.advance(days=10)
    engine.portal.revoke_key(key_id, actor="alice")
    engine.access("beta")
    for _ in range(engine.portal.max_failed_sign_ins):
        with pytest.raises(AuthenticationFailed):
            engine.sign_in("beta", email=EMAIL, password="not the password", actor="mallory")
    clock.advance(engine.portal.lockout + timedelta(seconds=1))
    engine.sign_in("beta", email=EMAIL, password=PASSWORD, actor="bob")
    engine.admin.rotate_secret_key(generate_secret_key(), actor="ops")
    tokens = Tokens(engine)
    tokens.create("svc", "drive", actor="ops")
    tokens.revoke("svc", actor="ops")
    return {"key": key, "key_id": key_id, "account_id": account.account_id}


def test_every_authority_action_is_an_event_of_its_entity_with_its_actor(engine: Engine, acted: dict[str, Any]) -> None:
    failures = [("sign_in_failed", "mallory")] * engine.portal.max_failed_sign_ins
    assert authority_events(engine, f"@account:{acted['account_id']}") == [
        ("account_created", None),
        *failures,
        ("account_locked", "mallory"),
        ("account_unlocked", "bob"),
    ]
    assert authority_events(engine, f"@key:{acted['key_id']}") == [("key_generated", None), ("key_revoked", "alice")]
    assert authority_events(engine, "@encryption") == [("encryption_key_rotated", "ops")]
    assert authority_events(engine, "@token:svc") == [("token_created", "ops"), ("token_revoked", "ops")]
    report = engine.verify()
    assert report.ok, report.problems
    assert (report.streams, report.authority_streams) == (2, 4)
    # Covered by the feed and the digest like every event.
    fed = [event.stream for event in engine.feed(0, limit=1000).events]
    assert fed.count("@token:svc") == 2 and reports.digest(engine).events == len(list(engine.events()))
    # The onboardings list shows onboardings only.
    assert [status.stream for status in engine.streams()] == ["acme", "beta"]


def test_no_secret_is_in_an_authority_event(engine: Engine, acted: dict[str, Any]) -> None:
    logged = json.dumps([event.as_dict() for event in engine.events()])
    assert acted["key"] not in logged and PASSWORD not in logged and "not the password" not in logged
    assert "ktt_" not in logged  # the token's secret


def _sql(statement: str) -> Callable[[Connection], object]:
    return lambda conn: conn.execute(sa.text(statement))


# Each names the stream it must be found on ({key}, {account}: filled from the fixture) and the kind.
TAMPERING: dict[str, tuple[str, str, str]] = {
    "revocation's actor edited": (
        "UPDATE events SET actor = 'nobody' WHERE stream_id = '@key:{key}' AND version = 2",
        "@key:{key}",
        "hash",
    ),
    "revocation deleted": (
        "DELETE FROM events WHERE stream_id = '@key:{key}' AND version = 2",
        "@key:{key}",
        "projection",
    ),
    "lockout deleted": (
        "DELETE FROM events WHERE stream_id = '@account:{account}' AND trigger = 'account_locked'",
        "@account:{account}",
        "missing",
    ),
    "account events reordered": (
        "UPDATE events SET position = -position WHERE stream_id = '@account:{account}' AND version = 2",
        "@account:{account}",
        "reordered",
    ),
    "key un-revoked in its table": ("UPDATE api_keys SET revoked_at = NULL", "@key:{key}", "authority"),
    "key's expiry moved in its table": (
        "UPDATE api_keys SET expires_at = expires_at + interval '1 year'",
        "@key:{key}",
        "authority",
    ),
    "key's row deleted": ("DELETE FROM api_keys", "@key:{key}", "authority"),
    "account's email changed": ("UPDATE accounts SET email = 'evil@acme.test'", "@account:{account}", "authority"),
    "token un-revoked in its table": ("UPDATE api_tokens SET revoked_at = NULL", "@token:svc", "authority"),
    "token's scope raised in its table": ("UPDATE api_tokens SET scope = 'admin'", "@token:svc", "authority"),
    "token swapped in its table": (
        "UPDATE api_tokens SET token_hash = '" + "f" * 64 + "'",
        "@token:svc",
        "authority",
    ),
    "token's stream deleted": (
        "DELETE FROM events WHERE stream_id = '@token:svc'; DELETE FROM streams WHERE stream_id = '@token:svc'",
        "@token:svc",
        "authority",
    ),
}


@pytest.mark.parametrize("case", TAMPERING.values(), ids=list(TAMPERING))
def test_tampering_with_an_authority_event_or_row_is_named(
    engine: Engine, acted: dict[str, Any], case: tuple[str, str, str]
) -> None:
    statements, stream, kind = (part.format(key=acted["key_id"], account=acted["account_id"]) for part in case)
    if engine.database.dialect == "sqlite":
        statements = statements.replace("expires_at + interval '1 year'", "'2099-01-01 00:00:00.000000'")
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed = checkpoints.sign(engine, private)
    with engine.database.write() as conn:
        for statement in statements.split("; "):
            conn.execute(sa.text(statement))
    problems = engine.verify().problems
    assert (stream, kind) in [(p.stream, p.kind) for p in problems], problems
    # A checkpoint covers the events: any change to them fails it; the tables are verify's to check.
    assert checkpoints.check(engine, signed, public).ok is (
        "FROM events" not in statements and "UPDATE events" not in statements
    )


def test_a_consistent_rewrite_of_an_authority_stream_is_caught_by_a_checkpoint(
    engine: Engine, acted: dict[str, Any], clock: MovableClock
) -> None:
    """An attacker with write access erases a revocation everywhere (its event, the projection, the
    table): verify cannot tell, the checkpoint signed before can; a log that only grew still passes."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signed = checkpoints.sign(engine, private)
    clock.advance(hours=1)
    engine.access("acme")  # the log grows normally
    assert checkpoints.check(engine, signed, public).ok
    stream = f"@key:{acted['key_id']}"

    generated, _revoked = [e for e in engine.events() if e.stream_id == stream]
    with engine.database.write() as conn:
        conn.execute(sa.delete(events_table).where(events_table.c.stream_id == stream, events_table.c.version == 2))
        conn.execute(
            sa.update(streams_table)
            .where(streams_table.c.stream_id == stream)
            .values(state="Active", version=1, head_hash=generated.hash, updated_at=generated.occurred_at)
        )
        conn.execute(sa.text("UPDATE api_keys SET revoked_at = NULL"))
    assert engine.verify().ok  # consistent: the chain alone cannot see it
    assert engine.audit("acme").verdict.status == "valid"  # the lie, as the rewritten log tells it
    assert not checkpoints.check(engine, signed, public).ok


def test_the_audit_names_who_revoked_the_key_and_when(
    engine: Engine, acted: dict[str, Any], clock: MovableClock
) -> None:
    key_id = acted["key_id"]
    start = engine.history("acme")[0].occurred_at
    revoked = engine.audit("acme", at=start + timedelta(days=10, seconds=1))
    assert (revoked.verdict.status, revoked.verdict.revoked_by) == ("revoked", "alice")
    assert revoked.key is not None and revoked.key.key_id == key_id
    assert [e.trigger.value for e in revoked.authority_events] == ["key_generated", "key_revoked"]
    before = engine.audit("acme", at=start + timedelta(days=9))
    assert (before.verdict.status, before.state) == ("valid", State.StoreIntegration)
    assert [e.trigger.value for e in before.authority_events] == ["key_generated"]
    assert engine.audit("acme", at=start).verdict.status in ("missing", "valid")
    assert engine.audit("beta").verdict.status == "missing"
    # The same answer from an export, without the database.
    exported = list(engine.events())
    assert audit_events("acme", revoked.at, exported).as_dict() == revoked.as_dict()


def test_a_key_the_authority_never_issued_and_an_expired_one(engine: Engine, clock: MovableClock) -> None:
    drive_to(engine, "acme", State.StoreIntegration)
    engine.save_config("other", key="kt_" + "x" * 40)
    unknown = engine.audit("other")
    assert unknown.verdict.status == "unknown" and unknown.key is not None and unknown.key.key_id is None
    clock.advance(engine.portal.key_lifetime)
    expired = engine.audit("acme")
    assert expired.verdict.status == "expired" and expired.verdict.expires_at == clock.now


def test_an_audit_names_a_tampered_key_stream(engine: Engine, acted: dict[str, Any]) -> None:
    with engine.database.write() as conn:
        conn.execute(
            sa.update(events_table)
            .where(events_table.c.stream_id == f"@key:{acted['key_id']}", events_table.c.version == 2)
            .values(actor="nobody")
        )
    found = engine.audit("acme")
    assert not found.ok and [(p.stream, p.kind) for p in found.problems] == [(f"@key:{acted['key_id']}", "hash")]


def test_an_authority_stream_is_read_by_its_id_and_a_made_up_one_is_refused(
    engine: Engine, acted: dict[str, Any]
) -> None:
    key_stream = f"@key:{acted['key_id']}"
    assert [(e.trigger.value, e.actor) for e in engine.history(key_stream)] == [
        ("key_generated", None),
        ("key_revoked", "alice"),
    ]
    assert engine.verify(key_stream).ok and engine.verify(key_stream).authority_streams == 1
    for made_up in ("@nothing", "@key:", "@encryption:x", "@key:" + "x" * 200):
        with pytest.raises(InvalidInput, match="not a stream of the log"):
            engine.history(made_up)
    with pytest.raises(InvalidInput):
        engine.access("@key:key_0000000000000000")  # never an onboarding: commands take onboarding ids only


def test_racing_revocations_of_one_key_record_one_revocation(db_url: str, clock: MovableClock) -> None:
    """Engines revoking the same key at once: every caller succeeds, the first time is kept, and the
    log holds one key_revoked event that the table agrees with."""
    with Engine.open(db_url, clock=clock) as engine:
        drive_to(engine, "acme", State.KeyGenerated)
        key_id = engine.status("acme").key_id
    assert key_id is not None
    engines = [Engine.open(db_url, clock=clock) for _ in range(6)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def revoke(racer: Engine, number: int) -> None:
        barrier.wait()
        try:
            racer.portal.revoke_key(key_id, actor=f"racer-{number}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=revoke, args=(racer, n)) for n, racer in enumerate(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for racer in engines:
        racer.close()
    assert errors == []
    with Engine.open(db_url, clock=clock) as engine:
        revocations = [t for t, _ in authority_events(engine, f"@key:{key_id}") if t == "key_revoked"]
        assert revocations == ["key_revoked"]
        report = engine.verify()
        assert report.ok, report.problems


def test_a_step_a_racing_writer_already_took_is_skipped_only_when_asked(engine: Engine, clock: MovableClock) -> None:
    """Two sign-ins ending one lapsed lockout: the second finds the account unlocked and records nothing;
    a step that is not legal otherwise is an integrity error, never written."""
    drive_to(engine, "acme", State.SignedIn)
    account = engine.portal.find_account(EMAIL)
    assert account is not None
    unlocked = AuthorityEvent.account_moved("account_unlocked", account.account_id, "bob", clock.now)
    before = snapshot(engine)
    with AuthorityStore(engine.database).write() as records:
        assert records.record(unlocked, unless_done=True) is False
    assert snapshot(engine) == before
    with (
        pytest.raises(IntegrityViolation, match="account_unlocked is not a step of an account from Active"),
        AuthorityStore(engine.database).write() as records,
    ):
        records.record(unlocked)
    assert snapshot(engine) == before


def test_the_audit_follows_a_key_saved_outside_keytrail_from_the_page_view_that_found_it(
    engine: Engine, clock: MovableClock
) -> None:
    """A store configured with another key outside keytrail (``config:set``): the next page view records
    that key, and the audit answers for it, not for the key keytrail saved before."""
    drive_to(engine, "acme", State.StoreIntegration)
    account = engine.portal.find_account(EMAIL)
    assert account is not None
    clock.advance(minutes=1)
    other = engine.portal.generate_key(account.account_id, "set outside keytrail")
    engine.admin.put_saved_key("acme", other.key)
    seen = clock.advance(minutes=1)
    engine.access("acme")
    clock.advance(hours=1)
    engine.portal.revoke_key(other.key_id, actor="alice")
    audited = engine.audit("acme")
    assert audited.key is not None and audited.key.key_id == other.key_id
    assert (audited.key.saved_at, audited.key.saved_by) == (seen, None)  # first seen then; who saved it is unknown
    assert (audited.verdict.status, audited.verdict.revoked_by) == ("revoked", "alice")


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE accounts SET locked_until = NULL, failed_sign_ins = 0",
        "UPDATE accounts SET locked_until = created_at",
    ],
    ids=["lockout lifted", "lockout shortened"],
)
def test_a_lockout_edited_in_its_table_is_named(engine: Engine, edit: str) -> None:
    drive_to(engine, "acme", State.SignedIn)
    account = engine.portal.find_account(EMAIL)
    assert account is not None
    engine.access("beta")
    for _ in range(engine.portal.max_failed_sign_ins):
        with pytest.raises(AuthenticationFailed):
            engine.sign_in("beta", email=EMAIL, password="not the password")
    assert engine.verify().ok
    with engine.database.write() as conn:
        conn.execute(sa.text(edit))
    problems = engine.verify().problems
    assert (f"@account:{account.account_id}", "authority") in [(p.stream, p.kind) for p in problems], problems


def test_a_token_name_fits_its_stream_id(engine: Engine) -> None:
    """Token names stop at 120 characters, so that "@token:" and the name are the one spelling of its stream."""
    tokens = Tokens(engine)
    tokens.create("n" * 120, "audit")
    with pytest.raises(InvalidInput, match="1 to 120 printable characters"):
        tokens.create("n" * 121, "audit")
    assert engine.verify().ok
    assert [t for t, _ in authority_events(engine, "@token:" + "n" * 120)] == ["token_created"]


def test_hostile_times_and_a_partial_export_are_problems_of_the_audit_not_crashes(
    engine: Engine, acted: dict[str, Any]
) -> None:
    log = list(engine.events())
    # An export whose key events carry times without a zone (hashes recomputed or not): listed, never a TypeError.
    naive = [
        replace(e, data={**e.data, "revoked_at": "2026-01-11T09:00:00", "created_at": "2026-01-01T09:00:00"})
        if e.stream_id.startswith("@key:")
        else e
        for e in log
    ]
    hostile = audit_events("acme", engine.now(), naive)
    assert not hostile.ok and hostile.verdict.status in ("unknown", "expired", "revoked")
    # An export of the onboarding alone cannot judge its key, and says so.
    partial = audit_events("acme", engine.now(), [e for e in log if e.stream_id == "acme"])
    assert [p.kind for p in partial.problems] == ["incomplete"]
    # A time keytrail never writes in an authority table: verify lists it instead of stopping.
    if engine.database.dialect == "sqlite":
        with engine.database.write() as conn:
            conn.execute(sa.text("UPDATE api_tokens SET revoked_at = 'garbage'"))
        problems = engine.verify().problems
        assert [(p.stream, p.kind) for p in problems] == [("@authority", "malformed")]


def test_an_authority_event_naming_an_impossible_entity_is_a_problem_not_a_crash(engine: Engine) -> None:
    drive_to(engine, "acme", State.KeyGenerated)
    key_id = engine.status("acme").key_id
    stream = f"@key:{key_id}"

    def rename(row: dict[str, Any]) -> None:
        row["data"] = {**row["data"], "key_id": "k" * 300}

    rechain(engine, stream, rename)
    assert [(p.stream, p.kind) for p in engine.verify().problems] == [(stream, "entity")]
