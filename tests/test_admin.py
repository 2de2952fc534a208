"""The admin surface and the reads' exported types: what operators and the pytest toolkit use outside the flow."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
import sqlalchemy as sa

import keytrail
from keytrail import Admin, Engine, OnboardingStatus, Reason, SavedKeyRecord, State, Verdict
from keytrail.crypto import fingerprint, generate_secret_key
from keytrail.errors import CorruptProjection, InvalidInput, SecretKeyError
from keytrail.persistence.store import config_table
from tests.conftest import MovableClock
from tests.helpers import drive_to, snapshot

KEY = "kt_" + "a" * 43


class Revealing:
    """A KeyVerifier plug-in that unseals what it is given, as a remote authority's client does."""

    def __init__(self) -> None:
        self.revealed: list[str | None] = []

    def verify(self, saved: keytrail.SavedKey | None, at: datetime) -> Verdict:
        self.revealed.append(None if saved is None else saved.reveal())
        return Verdict.missing()


def test_a_key_saved_from_outside_is_read_back_without_its_ciphertext(engine: Engine, clock: MovableClock) -> None:
    """put_saved_key writes the store configuration as bin/magento config:set would; reads give no ciphertext."""
    assert isinstance(engine.admin, Admin)
    assert engine.admin.saved_key("acme") is None
    record = engine.admin.put_saved_key("acme", f"  {KEY}\n")
    assert record == SavedKeyRecord("acme", fingerprint(KEY), KEY[-4:], clock.now)
    assert engine.admin.saved_key("acme") == record
    assert [f.name for f in dataclasses.fields(SavedKeyRecord)] == ["stream", "fingerprint", "hint", "saved_at"]
    assert KEY not in repr(record) and KEY not in str(record.as_dict())
    shown = record.as_dict()
    assert (list(shown), shown["stream"], shown["fingerprint"]) == (
        ["stream", "fingerprint", "hint", "saved_at"],
        "acme",
        fingerprint(KEY),
    )
    assert datetime.fromisoformat(shown["saved_at"]) == record.saved_at
    # No event: the onboarding is not tracked until its first command, which then finds the key.
    assert list(engine.streams()) == []
    assert engine.admin.saved_key_verdict("acme") == (record, Verdict(False, Reason.invalid))
    assert engine.access("acme").reason is Reason.invalid  # a key the authority never issued
    saved, verdict = engine.saved_key_status("acme")
    assert (saved, verdict.reason) == (record, Reason.invalid)


def test_saved_keys_lists_every_configuration(engine: Engine) -> None:
    engine.admin.put_saved_key("b-store", KEY)
    engine.admin.put_saved_key("a-store", "kt_" + "b" * 43)
    assert [r.stream for r in engine.admin.saved_keys()] == ["a-store", "b-store"]
    checked = engine.admin.saved_key_verdicts()
    assert [(r.stream, v.reason) for r, v in checked] == [("a-store", Reason.invalid), ("b-store", Reason.invalid)]


def test_put_saved_key_refuses_bad_input_and_writes_nothing(engine: Engine) -> None:
    before = snapshot(engine)
    for stream, key in (("acme", "short"), ("acme", "x" * 20 + " y"), ("bad id!", KEY), ("acme", "*" * 20)):
        with pytest.raises(InvalidInput):
            engine.admin.put_saved_key(stream, key)
    assert snapshot(engine) == before


def test_rotation_goes_through_admin_and_the_saved_key_still_unseals(engine: Engine) -> None:
    """Every secret is re-sealed under the new key, and the saved key still reaches a plug-in verifier."""
    key = drive_to(engine, "acme", State.StoreIntegration)
    with engine.database.read() as conn:
        before = set(conn.execute(sa.select(config_table.c.ciphertext)).scalars())
    with pytest.raises(SecretKeyError):
        engine.admin.rotate_secret_key("not a key")
    assert engine.admin.rotate_secret_key(generate_secret_key()) == 2  # the saved key and the authority's
    with engine.database.read() as conn:
        assert set(conn.execute(sa.select(config_table.c.ciphertext)).scalars()).isdisjoint(before)
    revealing = Revealing()
    engine.verifier = revealing
    engine.saved_key_status("acme")
    assert revealing.revealed == [key]
    assert not hasattr(Engine, "rotate_secret_key")


def test_status_and_streams_return_one_exported_type(engine: Engine) -> None:
    """The id is ``stream`` as in Outcome; the state a State, the reason a Reason; as_dict is the --json object."""
    drive_to(engine, "acme", State.Prompted)
    status = engine.status("acme")
    assert isinstance(status, OnboardingStatus)
    assert (status.stream, status.state, status.reason, status.version) == ("acme", State.Prompted, Reason.missing, 1)
    assert list(engine.streams()) == [status]
    assert status.as_dict() == {
        "stream": "acme",
        "state": "Prompted",
        "reason": "missing",
        "version": 1,
        "account_id": None,
        "key_id": None,
        "updated_at": status.as_dict()["updated_at"],
        "head_hash": status.head_hash,
    }
    assert datetime.fromisoformat(status.as_dict()["updated_at"]) == status.updated_at


def test_a_projection_holding_an_unknown_state_is_named(engine: Engine) -> None:
    """A state keytrail does not know is a damaged projection, not a string handed on."""
    drive_to(engine, "acme", State.Prompted)
    with engine.database.write() as conn:
        conn.execute(sa.text("UPDATE streams SET state = 'Teleported', reason = 'bored' WHERE stream_id = 'acme'"))
    for read in (lambda: engine.status("acme"), lambda: list(engine.streams()), lambda: engine.state("acme")):
        with pytest.raises(CorruptProjection, match="acme"):
            read()


def test_the_clock_is_public(engine: Engine, clock: MovableClock) -> None:
    """The pytest toolkit moves time through the clock the engine was opened with."""
    assert engine.clock is clock
