"""The queries behind the CLI's auditor and operator commands (keytrail.engine.reports), on both backends."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from keytrail import Engine, State
from keytrail.engine import reports
from keytrail.errors import InvalidInput, UnknownDatabase, UnknownOnboarding
from keytrail.events import event_hash
from tests.conftest import MovableClock
from tests.helpers import PASSWORD, drive_to


def test_digest_is_the_documented_running_hash(engine: Engine) -> None:
    """d_n = sha256(d_(n-1) + h_n) over rows by position, h_n recomputed from the row: an auditor can redo it."""
    drive_to(engine, "b-store", State.Validated)
    drive_to(engine, "a-store", State.Prompted)
    expected = hashlib.sha256(b"keytrail-digest-v1").hexdigest()
    rows = sorted(engine.events(), key=lambda e: e.position)
    for row in rows:
        expected = hashlib.sha256((expected + event_hash(row.prev_hash, row.hashed_fields())).encode()).hexdigest()
    found = reports.digest(engine)
    assert (found.events, found.digest, found.last_position) == (len(rows), expected, rows[-1].position)
    assert found.token == f"{len(rows)}:{expected}"


def test_digest_check_passes_while_the_log_only_grows(engine: Engine) -> None:
    """A kept digest still checks after more events; the check says how many were added."""
    empty = reports.digest(engine)
    assert (empty.events, empty.digest) == (0, reports.DIGEST_SEED)
    drive_to(engine, "acme", State.SignedIn)
    kept = reports.digest(engine)
    engine.generate_key("acme", description="Amazon Sales Channel")  # and the authority's key_generated
    engine.access("other")
    result = reports.check_digest(engine, kept.token)
    assert (result.ok, result.total_events, result.as_dict()["new_events"]) == (True, kept.events + 3, 3)
    assert reports.check_digest(engine, kept.digest).ok
    assert reports.check_digest(engine, empty.token).ok


def test_digest_check_fails_on_a_consistently_rewritten_stream(engine: Engine) -> None:
    """Rewriting a row and its stored hash so verify's chain still holds is caught by a kept digest."""
    drive_to(engine, "acme", State.Prompted)
    kept = reports.digest(engine)
    (event,) = list(engine.events("acme"))
    forged = {**event.hashed_fields(), "actor": "mallory"}
    with engine.database.write() as conn:
        conn.execute(
            sa.text("UPDATE events SET actor = 'mallory', hash = :h WHERE position = :p"),
            {"h": event_hash(event.prev_hash, forged), "p": event.position},
        )
        conn.execute(
            sa.text("UPDATE streams SET head_hash = :h WHERE stream_id = 'acme'"),
            {"h": event_hash(event.prev_hash, forged)},
        )
    assert engine.verify().ok  # an unkeyed chain cannot see a consistent rewrite
    result = reports.check_digest(engine, kept.token)
    assert not result.ok
    assert "edited, deleted, inserted or reordered" in result.message
    assert not reports.check_digest(engine, kept.digest).ok


@pytest.mark.parametrize("token", ["", "abc", "x:" + "0" * 64, "1:" + "g" * 64, "12:" + "0" * 63])
def test_parse_digest_refuses(token: str) -> None:
    """Only N:HEX or HEX (64 hex digits) is a digest."""
    with pytest.raises(InvalidInput):
        reports.parse_digest(token)


def test_expiring_follows_the_clock(engine: Engine, clock: MovableClock) -> None:
    """A key made now (one-year lifetime) enters a 30-day window 335 days later, and shows expired after."""
    drive_to(engine, "acme", State.StoreIntegration)
    drive_to(engine, "bare", State.Prompted)  # no saved key: nothing to expire
    assert reports.expiring(engine, timedelta(days=30)) == []
    clock.advance(days=340)
    (soon,) = reports.expiring(engine, timedelta(days=30))
    assert (soon.stream, soon.expired, soon.remaining) == ("acme", False, timedelta(25))
    assert soon.state is State.StoreIntegration  # a State, as everywhere else
    assert (soon.as_dict()["state"], soon.as_dict()["days_left"]) == ("StoreIntegration", 25.0)
    clock.advance(days=30)
    (gone,) = reports.expiring(engine, timedelta(0))
    assert gone.expired and gone.remaining == timedelta(days=-5)
    with pytest.raises(InvalidInput, match="must not be negative"):
        reports.expiring(engine, timedelta(days=-1))


def test_revoked_keys_are_not_expiring(engine: Engine) -> None:
    """A revoked key has no expiry to warn about: status and access show it as invalid instead."""
    drive_to(engine, "acme", State.ConfigSaved)
    key_id = engine.status("acme").key_id
    assert key_id is not None
    engine.portal.revoke_key(key_id)
    assert reports.expiring(engine, timedelta(days=5000)) == []


def test_replay_with_progress_matches_the_engine(engine: Engine, clock: MovableClock) -> None:
    """Replay with a progress callback (the CLI's bar) is the same replay, plus one tick per event."""
    drive_to(engine, "acme", State.StoreIntegration)
    ticks: list[int] = []
    assert engine.replay("acme", progress=ticks.append) == engine.replay("acme")
    assert sum(ticks) == 7
    with pytest.raises(UnknownOnboarding):
        engine.replay("nobody", progress=ticks.append)


def test_export_rows_hold_no_secrets(engine: Engine) -> None:
    """Every exported row has every column; none holds the key or the password."""
    key = drive_to(engine, "acme", State.StoreIntegration)
    assert key is not None
    rows = list(reports.export_rows(engine, "acme"))
    assert [r["version"] for r in rows] == list(range(1, 8))
    # The whole export holds the authority's events too (account created, key generated): no secret either.
    everything = list(reports.export_rows(engine))
    assert {r["stream_id"][:5] for r in everything} == {"acme", "@acco", "@key:"}
    assert key not in repr(everything) and PASSWORD not in repr(everything)
    assert all(tuple(sorted(r)) == tuple(sorted(reports.EXPORT_COLUMNS)) for r in rows)
    assert key not in repr(rows) and PASSWORD not in repr(rows)


def test_opening_without_create_refuses_a_missing_or_empty_database(db_url: str, tmp_path: Path) -> None:
    """A database with no keytrail schema, or no file at all, is bad input (exit 2), and nothing is created."""
    with pytest.raises(UnknownDatabase, match="no keytrail database") as caught:
        Engine.open(db_url, create=False)
    assert caught.value.exit_code == 2
    if db_url.startswith("sqlite"):
        assert not (tmp_path / "keytrail.db").exists()
        (tmp_path / "keytrail.db").touch()
        with pytest.raises(UnknownDatabase, match="holds no keytrail database yet"):
            Engine.open(db_url, create=False)
    Engine.open(db_url).close()
    Engine.open(db_url, create=False).close()
