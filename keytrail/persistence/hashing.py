"""The hash chain: ``hash = sha256(prev_hash + canonical JSON of the event)``.

Canonical JSON is sorted keys, no insignificant whitespace, UTF-8, and times as ISO 8601
UTC with microseconds, so that any auditor can recompute a hash with a few lines of code.
``position`` is left out: it is the database's order, checked separately by ``verify``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from json import encoder as _json_encoder
from typing import Any

# json's C accelerator (None without it), typed loosely: typeshed does not describe it.
_c_make_encoder: Any = getattr(_json_encoder, "c_make_encoder", None)

__all__ = [
    "EVENT_COLUMNS",
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "IDEMPOTENCY_PREFIX",
    "canonical_json",
    "chain_hash",
    "chain_hash_iso",
    "idempotency_digest",
    "iso_utc",
    "json_encoder",
]

GENESIS_HASH = "0" * 64
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
# Every column of an event row, in the order exports and auditors see them.
EVENT_COLUMNS = ("position", *HASHED_FIELDS, "prev_hash", "hash")


# What the event log stores instead of a caller's idempotency key: exports and ``history --json``
# print the log, and a key printed there must not be replayable (see idempotency_digest).
IDEMPOTENCY_PREFIX = "idem:"


def idempotency_digest(idempotency_key: str, salt: str) -> str:
    """``idem:`` + HMAC-SHA256 of the caller's key under the database's own salt.

    Keyed, so that a guessable key (``req-1``) cannot be found back from an export by hashing
    guesses; prefixed, so a stored digest is recognisable, and an input that looks like one is
    never matched against the raw keys older versions stored.
    """
    mac = hmac.new(salt.encode("utf-8"), idempotency_key.encode("utf-8"), hashlib.sha256).hexdigest()
    return IDEMPOTENCY_PREFIX + mac


def iso_utc(instant: datetime) -> str:
    """``2026-11-26T22:07:03.000000+00:00``: one spelling per instant."""
    return instant.astimezone(UTC).isoformat(timespec="microseconds")


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
_ENCODE = json_encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_sha256 = hashlib.sha256


def canonical_json(fields: dict[str, Any]) -> bytes:
    """The bytes that are hashed for one event."""
    body = {name: fields[name] for name in HASHED_FIELDS}
    body["occurred_at"] = iso_utc(body["occurred_at"])
    return _ENCODE(body).encode("utf-8")


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """The hash of one event, chained to the previous one of its stream."""
    return _sha256(prev_hash.encode("ascii") + canonical_json(fields)).hexdigest()


def chain_hash_iso(prev_hash: str, body: dict[str, Any]) -> str:
    """:func:`chain_hash` of a body that holds exactly the hashed fields, ``occurred_at`` already ISO UTC."""
    return _sha256((prev_hash + _ENCODE(body)).encode("utf-8")).hexdigest()
