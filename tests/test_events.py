"""The event's one definition (keytrail.events): its columns, the hashed subset and the one hash function."""

from __future__ import annotations

import ast
import dataclasses
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from keytrail import Engine, State, events
from keytrail.events import (
    EVENT_COLUMNS,
    GENESIS_HASH,
    HASHED_FIELDS,
    PendingEvent,
    RecordedEvent,
    event_hash,
    hashed_fields,
    idempotency_digest,
    iso_utc,
)
from keytrail.persistence.store import events_table, streams_table

# Computed with keytrail's code before the event had one definition (persistence/hashing.py's
# chain_hash): databases written then hold these hashes, and must still verify.
_FIRST_HASH = "4744b1cd77978a56f81d8d71e504bd59eca3057e8dc0ad9b4bc02d9528834dd3"
_SECOND_HASH = "0c075cf6b85d0af9bd84848cb3e945b235ffdab8d4c7266262733b6ba7beaa20"
_FIRST_AT = datetime(2026, 11, 26, 22, 7, 3, tzinfo=UTC)
_SECOND_AT = datetime(2026, 11, 27, 1, 7, 3, 5, tzinfo=timezone(timedelta(hours=2)))
_SECOND_DATA = {"fingerprint": "sha256:ab", "hint": "…wxyz", "n": 3}


def _first() -> PendingEvent:
    return PendingEvent("access", "Unverified", "Prompted", "missing", {}, None, _FIRST_AT, None)


def _second() -> PendingEvent:
    return PendingEvent(
        "save_config", "Prompted", "ConfigSaved", None, _SECOND_DATA, "ops@éxample", _SECOND_AT, "idem:00ff"
    )


def test_the_hash_of_an_event_is_what_earlier_versions_wrote() -> None:
    """Same fields, same hex as before: non-ASCII text, a non-UTC clock and an idempotency digest included."""
    first = _first().hashed_fields("store-1", 1, 1)
    assert event_hash(GENESIS_HASH, first) == _FIRST_HASH
    second = _second().hashed_fields("store-1", 2, 1)
    assert second["occurred_at"] == "2026-11-26T23:07:03.000005+00:00"
    assert event_hash(_FIRST_HASH, second) == _SECOND_HASH


def test_the_idempotency_digest_is_what_earlier_versions_stored() -> None:
    """Retries of commands written before this version find their outcome: the digest of a key is unchanged."""
    assert (
        idempotency_digest("req-1", "salt") == "idem:d2c526de2d00e1fe0bb6cfac32804365cdc0c2a8078cf2d575e2eda420811cb0"
    )


def test_a_log_written_by_earlier_versions_still_verifies(engine: Engine) -> None:
    """Rows stored with the pinned hashes (as an older keytrail wrote them) verify, and replay to their state."""
    rows = [
        {**_first().hashed_fields("store-1", 1, 1), "prev_hash": GENESIS_HASH, "hash": _FIRST_HASH},
        {**_second().hashed_fields("store-1", 2, 1), "prev_hash": _FIRST_HASH, "hash": _SECOND_HASH},
    ]
    for row, at in zip(rows, (_FIRST_AT, _SECOND_AT), strict=True):
        row["occurred_at"] = at
    with engine.database.write() as conn:
        conn.execute(sa.insert(events_table), rows)
        conn.execute(
            sa.insert(streams_table),
            {
                "stream_id": "store-1",
                "state": "ConfigSaved",
                "reason": None,
                "version": 2,
                "head_hash": _SECOND_HASH,
                "updated_at": _SECOND_AT,
            },
        )
    report = engine.verify()
    assert (report.ok, report.events, report.problems) == (True, 2, [])
    assert engine.replay("store-1").state is State.ConfigSaved
    assert [e.hash for e in engine.events("store-1")] == [_FIRST_HASH, _SECOND_HASH]


def test_a_recorded_event_hashes_to_its_stored_hash(engine: Engine) -> None:
    """What an auditor does with a read event: the one hash function over its hashed fields gives its hash."""
    engine.access("acme", actor="ops@éxample", idempotency_key="req-1")
    engine.save_config("acme", key="kt_" + "k" * 43)
    recorded = list(engine.events("acme"))
    prev = GENESIS_HASH
    for event in recorded:
        assert (event.prev_hash, event_hash(event.prev_hash, event.hashed_fields())) == (prev, event.hash)
        assert event_hash(event.prev_hash, hashed_fields(event.audit_row())) == event.hash
        prev = event.hash
    assert recorded[0].as_dict()["occurred_at"] == iso_utc(recorded[0].occurred_at)
    assert list(recorded[0].as_dict()) == list(EVENT_COLUMNS)


def test_one_list_of_hashed_fields() -> None:
    """Every column but the position and the two hashes is hashed; the record and the hash input agree with the list."""
    assert ("position", *HASHED_FIELDS, "prev_hash", "hash") == EVENT_COLUMNS
    assert tuple(f.name for f in dataclasses.fields(RecordedEvent)) == EVENT_COLUMNS
    assert hashed_fields(EVENT_COLUMNS) == {name: name for name in HASHED_FIELDS}
    assert tuple(_first().hashed_fields("s", 1, 1)) == HASHED_FIELDS


def test_the_event_definition_imports_nothing_of_keytrail() -> None:
    """keytrail.events is the bottom layer: only the standard library."""
    tree = ast.parse(Path(events.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    outside = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}
    assert outside == set()
