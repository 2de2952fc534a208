"""The storage contract: every backend's command path keeps the same promises, and writes the rows SQLAlchemy writes.

One path writes every event (see keytrail.persistence.commands); its statements are spelled per
backend by hand, so this contract holds each adapter to what the schema's own SQLAlchemy types
would have stored, value for value and, on SQLite, byte for byte, and to the unit of work's
promises: one joined read, appends that refuse a stale head, upserts, idempotent lookups.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keytrail import Engine, State
from keytrail.errors import ConcurrencyConflict, CorruptProjection
from keytrail.events import PendingEvent
from keytrail.persistence.authority_store import accounts, api_keys
from keytrail.persistence.store import config_table, events_table, streams_table
from keytrail.persistence.units import Storage
from keytrail.pgcluster import scratch_database
from keytrail.states import Reason
from tests.conftest import MovableClock
from tests.helpers import drive_to, put_saved_key

_TABLES = (events_table, streams_table, config_table)
_ORDER = {"events": "position", "streams": "stream_id", "store_config": "stream_id"}


@pytest.fixture
def second_url(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A second empty database on the same backend as ``db_url``."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/second.db"
        return
    with scratch_database(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture
def counted_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Account ids and keys from a counter, so that a scenario's rows are the same on every run."""
    counter = itertools.count()
    monkeypatch.setattr("keytrail.portal.authority.uuid.uuid4", lambda: uuid.UUID(int=next(counter)))
    monkeypatch.setattr("keytrail.portal.authority.secrets.token_urlsafe", lambda n: f"{next(counter):043d}")
    monkeypatch.setattr("keytrail.portal.authority.secrets.token_hex", lambda n: f"{next(counter):016x}")


def _scenario(engine: Engine, clock: MovableClock) -> None:
    """Every command, every verdict: new streams, idempotency keys, saved and kept keys, expiry, revocation."""
    engine.access("never-saved", idempotency_key="first-view")
    engine.access("never-saved", actor="admin@acme")
    key = drive_to(engine, "acme", State.StoreIntegration)
    assert key is not None
    for n in range(3):
        clock.advance(seconds=1)
        assert engine.access("acme", actor=None if n else "cron", idempotency_key=f"view-{n}").version == 8 + n
    put_saved_key(engine, "acme", "kt_" + "u" * 43)  # a key the authority does not know
    clock.advance(seconds=1)
    assert engine.access("acme").reason is Reason.invalid
    put_saved_key(engine, "acme", key)
    clock.advance(seconds=1)
    assert engine.access("acme").state is State.Validated
    assert engine.proceed("acme").state is State.StoreIntegration
    clock.advance(days=366)  # past the key's expiry
    assert engine.access("acme").reason is Reason.expired
    clock.advance(days=-366)
    key_id = engine.status("acme").key_id
    assert key_id is not None
    engine.portal.revoke_key(key_id)
    clock.advance(seconds=1)
    assert engine.access("acme").reason is Reason.invalid


def _stored(engine: Engine) -> dict[str, list[Any]]:
    """The rows of the event log's tables as the database holds them: SQLite's own values, PostgreSQL's text."""
    rows: dict[str, list[Any]] = {}
    with engine.database.read() as conn:
        for table in _TABLES:
            order = _ORDER[table.name]
            if engine.database.dialect == "sqlite":
                sql = f"SELECT * FROM {table.name} ORDER BY {order}"
                rows[table.name] = [tuple(row) for row in conn.connection.driver_connection.execute(sql)]
            else:
                sql = f"SELECT t::text FROM {table.name} AS t ORDER BY {order}"
                rows[table.name] = [row[0] for row in conn.exec_driver_sql(sql)]
    return rows


def test_the_command_path_stores_what_sqlalchemy_stores(
    db_url: str, second_url: str, clock: MovableClock, counted_ids: None
) -> None:
    """Every row the command path wrote, read back through the schema's types and written again by
    SQLAlchemy into an empty database, is stored exactly alike (SQLite: the same bytes)."""
    with Engine.open(db_url, clock=clock) as engine:
        _scenario(engine, clock)
        assert engine.verify().ok
        written = _stored(engine)
        # The authority's rows go along unchanged, so that verify can hold them to their events in the copy.
        with engine.database.read() as conn:
            typed = {
                table.name: [row._asdict() for row in conn.execute(sa.select(table))]
                for table in (accounts, api_keys, *_TABLES)
            }
    with Engine.open(second_url, clock=clock) as copy:
        with copy.database.write() as conn:
            for table in (accounts, api_keys, *_TABLES):
                conn.execute(sa.insert(table), typed[table.name])
        assert _stored(copy) == written
        assert copy.verify().ok
    assert len(written["events"]) == 2 + 15 + 3  # never-saved, then acme, and the authority's: an account, two keys


def test_an_empty_stream_loads_as_nothing(engine: Engine) -> None:
    with Storage(engine.database).write() as unit:
        loaded = unit.load("nobody", ("idem:x", "raw"))
    assert (loaded.head, loaded.config, loaded.saved_key, loaded.prior) == (None, None, None, None)


def test_append_returns_the_event_readers_read(engine: Engine) -> None:
    """The event append hands back is the one history and exports read: position, time and hashes included."""
    pending = PendingEvent("access", "Unverified", "Prompted", "missing", {"n": 1}, "ops", engine.now(), "idem:abc")
    with Storage(engine.database).write() as unit:
        recorded = unit.append("acme", None, pending)
    assert list(engine.events("acme")) == [recorded]
    with Storage(engine.database).read() as unit:
        assert unit.load("acme", ("idem:abc", "idem:abc")).prior == recorded
        assert unit.load("acme", ("idem:other", "raw")).prior is None
    assert engine.verify().ok


def test_a_stale_head_writes_nothing(engine: Engine) -> None:
    """Two writers that read the same head: the second append is refused, whether the stream is new or not."""
    storage = Storage(engine.database)
    pending = PendingEvent("access", "Unverified", "Prompted", "missing", {}, None, engine.now(), None)
    with storage.write() as unit:
        unit.append("acme", None, pending)
    with pytest.raises(ConcurrencyConflict, match="appended version 1 of acme first"), storage.write() as unit:
        unit.append("acme", None, pending)  # a second "first" event
    with storage.read() as unit:
        head = unit.load("acme").head
    assert head is not None and head.version == 1
    again = PendingEvent("access", "Prompted", "Prompted", "missing", {}, None, engine.now(), None)
    with storage.write() as unit:
        unit.append("acme", head, again)
    with pytest.raises(ConcurrencyConflict), storage.write() as unit:
        unit.append("acme", head, again)  # head is version 1; the stream is at 2
    assert [event.version for event in engine.events("acme")] == [1, 2]
    assert engine.verify().ok


def test_the_joined_read_brings_the_saved_key_and_its_record(engine: Engine, clock: MovableClock) -> None:
    """The saved key and the authority's record of it come with the head; a second save replaces the first."""
    key = drive_to(engine, "acme", State.Validated)
    assert key is not None
    storage = Storage(engine.database)
    with storage.read() as unit:
        loaded = unit.load("acme")
    assert loaded.head is not None and loaded.head.state == "Validated" and loaded.head.version == 6
    assert loaded.config is not None and loaded.saved_key is not None
    assert loaded.saved_key.fingerprint == loaded.config.fingerprint
    assert loaded.saved_key.key_id == engine.status("acme").key_id
    assert loaded.saved_key.revoked_at is None and loaded.saved_key.expires_at > clock() + timedelta(days=364)
    put_saved_key(engine, "acme", "kt_" + "z" * 43)  # a key the authority never issued
    with storage.read() as unit:
        replaced = unit.load("acme")
    assert replaced.config is not None and replaced.config.hint == "zzzz"
    assert replaced.saved_key is None


def test_a_damaged_projection_is_refused_by_the_joined_read(engine: Engine) -> None:
    """A projection row not as keytrail writes it is named, not decided over."""
    engine.access("acme")
    with engine.database.write() as conn:
        if engine.database.dialect == "sqlite":
            conn.exec_driver_sql("UPDATE streams SET version = 'one' WHERE stream_id = 'acme'")
        else:
            conn.exec_driver_sql("UPDATE streams SET state = 'Nowhere' WHERE stream_id = 'acme'")
    with pytest.raises(CorruptProjection, match="acme"):
        engine.access("acme")
