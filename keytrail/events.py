"""An event of the log, defined once: its columns, the hashed subset, canonical JSON, the one hash function.

Every writer (the event store's append, the engine's hot path) and every checker (verify,
replay, digests) builds the hash's input here and hashes it with :func:`event_hash`, so adding
a hashed column is an edit of this module (plus its SQL). The hash chain::

    hash = sha256(prev_hash + canonical JSON of the hashed fields)

Canonical JSON is sorted keys, no insignificant whitespace, UTF-8, and ``occurred_at`` as ISO
8601 UTC with microseconds, so that any auditor can recompute a hash with a few lines of code.
``position`` is left out: it is the database's order, checked separately by ``verify``. The
first event of a stream chains to :data:`GENESIS_HASH`.

Only the standard library is imported here: this is the bottom layer, under persistence,
the engine and every face.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from json import encoder as _json_encoder
from typing import Any

__all__ = [
    "EVENT_COLUMNS",
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "IDEMPOTENCY_PREFIX",
    "PendingEvent",
    "RecordedEvent",
    "canonical_json",
    "event_hash",
    "hashed_fields",
    "idempotency_digest",
    "iso_utc",
    "json_encoder",
]

GENESIS_HASH = "0" * 64
# The one list of hashed fields. A new one goes last: readers take the columns before it by
# position (see hashed_fields), and prev_hash and hash stay the row's last two.
HASHED_FIELDS = (
    "stream_id",
    "version",
    "trigger",
    "source",
    "dest",
    "reason",
    "data",
    "actor",
    "occurred_at",
    "idempotency_key",
    "schema_version",
)
# Every column of an event row, in the order exports, auditors and event rows (tuples) hold them.
EVENT_COLUMNS = ("position", *HASHED_FIELDS, "prev_hash", "hash")

# What the event log stores instead of a caller's idempotency key: exports and ``history --json``
# print the log, and a key printed there must not be replayable (see idempotency_digest).
IDEMPOTENCY_PREFIX = "idem:"


def hashed_fields(row: Sequence[Any]) -> dict[str, Any]:
    """The hash's input read off an event row: its values in :data:`EVENT_COLUMNS` order,
    ``occurred_at`` already ISO UTC text (see :func:`iso_utc`).

    A dict display rather than ``dict(zip(HASHED_FIELDS, ...))``: verify and digests run it on
    every row, and the display is three times faster. Checked against :data:`HASHED_FIELDS`
    when this module loads, so the two cannot drift apart.
    """
    return {
        "stream_id": row[1],
        "version": row[2],
        "trigger": row[3],
        "source": row[4],
        "dest": row[5],
        "reason": row[6],
        "data": row[7],
        "actor": row[8],
        "occurred_at": row[9],
        "idempotency_key": row[10],
        "schema_version": row[11],
    }


def idempotency_digest(idempotency_key: str, salt: str) -> str:
    """``idem:`` + HMAC-SHA256 of the caller's key under the database's own salt: what the
    ``idempotency_key`` column stores.

    Keyed, so that a guessable key (``req-1``) cannot be found back from an export by hashing
    guesses; prefixed, so a stored digest is recognisable, and an input that looks like one is
    never matched against the raw keys older versions stored.
    """
    mac = hmac.new(salt.encode("utf-8"), idempotency_key.encode("utf-8"), hashlib.sha256).hexdigest()
    return IDEMPOTENCY_PREFIX + mac


def iso_utc(instant: datetime) -> str:
    """``2026-11-26T22:07:03.000000+00:00``: one spelling per instant, the one the hash covers."""
    return instant.astimezone(UTC).isoformat(timespec="microseconds")


# json's C accelerator (None without it), typed loosely: typeshed does not describe it.
_c_make_encoder: Any = getattr(_json_encoder, "c_make_encoder", None)


def json_encoder(*, sort_keys: bool, separators: tuple[str, str], ensure_ascii: bool) -> Callable[[Any], str]:
    """``json.dumps`` with these options, as one function built once for the process.

    ``JSONEncoder.encode`` builds a new C encoder on every call, which costs about as much as
    the encoding itself; this builds it once. Without the C accelerator, the pure-Python encoder.
    """
    if _c_make_encoder is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(sort_keys=sort_keys, separators=separators, ensure_ascii=ensure_ascii).encode

    def default(value: Any) -> Any:
        raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")

    strings = _json_encoder.encode_basestring_ascii if ensure_ascii else _json_encoder.encode_basestring
    # No circular-reference markers: what is hashed or checked is parsed JSON or plain dicts of strings.
    encoder = _c_make_encoder(None, default, strings, None, separators[1], separators[0], sort_keys, False, True)
    join = "".join

    def encode(value: Any) -> str:
        return join(encoder(value, 0))

    return encode


# One encoder for the process: json.dumps with options builds a new encoder on every call.
_CANONICAL = json_encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_sha256 = hashlib.sha256


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """The bytes hashed for one event, from its hashed fields (see :func:`hashed_fields`)."""
    return _CANONICAL(body).encode("utf-8")


def event_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """The hash of one event, chained to the previous one of its stream: the one hash function.

    ``body`` holds exactly the hashed fields, ``occurred_at`` as ISO UTC text: what
    :func:`hashed_fields`, :meth:`PendingEvent.hashed_fields` and
    :meth:`RecordedEvent.hashed_fields` build. TypeError or ValueError when a value cannot be
    carried by JSON or UTF-8 (a tampered row; keytrail never writes one).
    """
    return _sha256((prev_hash + _CANONICAL(body)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PendingEvent:
    """What the engine asks to append; the store adds the stream, version, hashes and position.

    ``account_id`` and ``key_id`` are not columns of the event: they move the stream's projection.
    """

    trigger: str
    source: str
    dest: str
    reason: str | None
    data: dict[str, Any]
    actor: str | None
    occurred_at: datetime
    idempotency_key: str | None
    account_id: str | None = None
    key_id: str | None = None

    def hashed_fields(self, stream_id: str, version: int, schema_version: int) -> dict[str, Any]:
        """The hash's input of this event as version ``version`` of ``stream_id``."""
        return hashed_fields(
            (
                None,
                stream_id,
                version,
                self.trigger,
                self.source,
                self.dest,
                self.reason,
                self.data,
                self.actor,
                iso_utc(self.occurred_at),
                self.idempotency_key,
                schema_version,
            )
        )


@dataclass(frozen=True)
class RecordedEvent:
    """One row of the event log, as auditors see it: its fields are :data:`EVENT_COLUMNS`, in order."""

    position: int
    stream_id: str
    version: int
    trigger: str
    source: str
    dest: str
    reason: str | None
    data: dict[str, Any] = field(repr=False)
    actor: str | None
    occurred_at: datetime
    idempotency_key: str | None
    schema_version: int
    prev_hash: str = field(repr=False)
    hash: str

    def audit_row(self) -> tuple[Any, ...]:
        """The event as a tuple in :data:`EVENT_COLUMNS` order, ``occurred_at`` as ISO UTC text:
        the row replay and verify fold."""
        return (
            self.position,
            self.stream_id,
            self.version,
            self.trigger,
            self.source,
            self.dest,
            self.reason,
            self.data,
            self.actor,
            iso_utc(self.occurred_at),
            self.idempotency_key,
            self.schema_version,
            self.prev_hash,
            self.hash,
        )

    def hashed_fields(self) -> dict[str, Any]:
        """The hash's input: ``event_hash(event.prev_hash, event.hashed_fields()) == event.hash``."""
        return hashed_fields(self.audit_row())

    def as_dict(self) -> dict[str, Any]:
        """Every column, times as ISO strings: the export format."""
        return {**vars(self), "occurred_at": iso_utc(self.occurred_at)}  # the fields are EVENT_COLUMNS, in order


def _check_definition() -> None:
    """The spellings above that speed or typing need agree with the one list, or keytrail does not load."""
    problems = []
    if hashed_fields(EVENT_COLUMNS) != {name: name for name in HASHED_FIELDS}:
        problems.append("hashed_fields() does not read exactly HASHED_FIELDS, each from its own column")
    if tuple(f.name for f in fields(RecordedEvent)) != EVENT_COLUMNS:
        problems.append("RecordedEvent's fields are not EVENT_COLUMNS, in order")
    if problems:
        raise RuntimeError("The event definition disagrees with itself: " + "; ".join(problems) + ".")


_check_definition()
