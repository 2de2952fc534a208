"""Reading stored values back strictly: a row counts only if it is spelled exactly as keytrail writes it.

On SQLite every column is text or a number that anyone with the file can rewrite, and many
spellings parse to the same value: a time as an ISO week date or with a zone suffix, JSON with
its members reordered or repeated. The hash chain is computed over parsed values, so a
respelled row would still hash as before while plain SQL (``json_extract`` keeps the first copy
of a repeated member, Python the last; a zone suffix is compared as text) sees other facts.
keytrail writes exactly one spelling of each value (``YYYY-MM-DD HH:MM:SS.ffffff`` naive UTC
for times, ``json.dumps`` of the value for ``data``); this module checks a stored value is that
spelling, and says what is wrong when it is not. PostgreSQL's typed columns (``timestamptz``,
``jsonb``) keep no spelling, so there only the shape of ``data`` (an object) is checked.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keytrail.errors import CorruptEvent
from keytrail.events import EVENT_COLUMNS, RecordedEvent, json_encoder

__all__ = [
    "SQLITE_TIME_FORMAT",
    "SQLITE_TIME_SHAPE",
    "WELL_TYPED_ROWS",
    "Flaw",
    "checked_event",
    "column_flaw",
    "data_flaw",
    "is_sqlite_time",
    "read_sqlite_json",
    "read_sqlite_time",
    "shown",
    "sqlite_data",
    "strict_sqlite_event",
    "time_flaw",
    "well_typed",
]

SQLITE_TIME_FORMAT = "YYYY-MM-DD HH:MM:SS.ffffff (UTC)"
SQLITE_TIME_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}").fullmatch
_fromisoformat = datetime.fromisoformat
_loads = json.loads
# Exactly json.dumps(value) with its defaults, the way keytrail writes data on SQLite.
_dumps = json_encoder(sort_keys=False, separators=(", ", ": "), ensure_ascii=True)


@dataclass(frozen=True, slots=True)
class Flaw:
    """What is wrong with a stored value, carried in place of the value.

    ``kind`` is ``spelling`` (a value keytrail writes, spelled another way) or ``malformed``
    (not a value keytrail writes at all); ``message`` is a sentence naming the column.
    """

    kind: str
    message: str


def shown(value: Any) -> str:
    """A stored value in a message: its repr, cut when long (a tampered column can hold anything)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_sqlite_time(value: Any) -> bool:
    """Whether a stored SQLite time is spelled exactly as keytrail writes one."""
    if type(value) is not str or SQLITE_TIME_SHAPE(value) is None:
        return False
    try:
        _fromisoformat(value)
    except ValueError:  # the right shape, but no such instant (month 13, February 30)
        return False
    return True


def time_flaw(value: Any, column: str = "occurred_at") -> Flaw:
    """What is wrong with a stored SQLite time that :func:`is_sqlite_time` refused."""
    readable = True
    try:
        _fromisoformat(value)
    except (TypeError, ValueError):
        readable = False
    if readable:
        return Flaw(
            "spelling",
            f"{column} is stored as {shown(value)}, not as keytrail writes a time ({SQLITE_TIME_FORMAT}); "
            "another spelling can mean another instant to other readers.",
        )
    return Flaw("malformed", f"{column} is stored as {shown(value)}, which is not a time ({SQLITE_TIME_FORMAT}).")


def read_sqlite_time(value: Any, column: str = "occurred_at") -> datetime:
    """The aware UTC datetime of a stored SQLite time; ValueError (a sentence) unless spelled as keytrail writes it."""
    if not is_sqlite_time(value):
        raise ValueError(time_flaw(value, column).message)
    return _fromisoformat(value).replace(tzinfo=UTC)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _Duplicate(name)
            seen.add(name)
    return value


class _Duplicate(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


_strict_decode = json.JSONDecoder(object_pairs_hook=_no_duplicates).decode


def _duplicate_message(name: str) -> str:
    return (
        f"data holds the member {shown(name)} more than once; Python keeps the last copy and SQLite's "
        "json_extract the first, so readers disagree on its value."
    )


def data_flaw(value: Any) -> Flaw | None:
    """What is wrong with ``data`` as parsed (None: an object, as keytrail writes it)."""
    if type(value) is dict:
        return None
    kinds = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    what = "null" if value is None else kinds.get(type(value), f"a {type(value).__name__}")
    return Flaw("malformed", f"data is {what} ({shown(value)}), not a JSON object.")


def _read(text: Any) -> Any:
    """Parse stored JSON text, refusing repeated members; ValueError carries the sentence."""
    if type(text) is not str:
        raise ValueError(f"data is stored as {shown(text)}, not JSON text.")
    try:
        return _strict_decode(text)
    except _Duplicate as dup:
        raise ValueError(_duplicate_message(dup.name)) from None
    except (ValueError, RecursionError):
        raise ValueError(f"data is stored as {shown(text)}, which is not JSON.") from None


# An escaped UTF-16 surrogate: valid JSON text, but alone it is no character and cannot be written as UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]").search
_utf8_dumps = json_encoder(sort_keys=False, separators=(",", ":"), ensure_ascii=False)


def read_sqlite_json(text: Any) -> dict[str, Any]:
    """``data`` as SQLite stores it, for a reader (history, exports, replay): a JSON object
    without repeated members or lone surrogates, or ValueError naming what is wrong."""
    value = _read(text)
    flaw = data_flaw(value)
    if flaw is not None:
        raise ValueError(flaw.message)
    if _SURROGATE_ESCAPE(text) is not None:
        try:
            _utf8_dumps(value).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"data is stored as {shown(text)}, which holds a lone surrogate (\\ud800-\\udfff), not text."
            ) from None
    return value  # type: ignore[no-any-return]


def sqlite_data(text: Any) -> dict[str, Any] | Flaw:
    """``data`` for the hash chain (verify, digests): the parsed object when ``text`` is exactly
    ``json.dumps`` of it, else a :class:`Flaw`.

    Re-serialising catches every other spelling at once (whitespace, member order, escapes, and
    repeated members, whose text is longer than the value's); the strict parse runs only to
    name what is wrong.
    """
    if type(text) is not str:
        return Flaw("malformed", f"data is stored as {shown(text)}, not JSON text.")
    try:
        value = _loads(text)
    except (ValueError, RecursionError):
        return Flaw("malformed", f"data is stored as {shown(text)}, which is not JSON.")
    flaw = data_flaw(value)
    if flaw is not None:
        return flaw
    if _dumps(value) == text:
        return value  # type: ignore[no-any-return]
    try:
        _read(text)
    except ValueError as exc:
        return Flaw("spelling", str(exc))
    return Flaw(
        "spelling",
        "data is not stored as keytrail writes it (json.dumps of its value), so other readers may see other facts.",
    )


# Every column type an event row read off SQLite may have: integers, text, and NULL where allowed
# (reason, actor, idempotency_key). One set lookup per row instead of fourteen checks.
_NONE = type(None)
WELL_TYPED_ROWS = frozenset(
    (int, str, int, str, str, str, reason, str, actor, str, idem, int, str, str)
    for reason, actor, idem in itertools.product((str, _NONE), repeat=3)
)
_NULLABLE = frozenset(("reason", "actor", "idempotency_key"))
_INTEGERS = frozenset(("position", "version", "schema_version"))


def well_typed(row: tuple[Any, ...]) -> bool:
    """Whether every column of an SQLite event row has a type keytrail writes there."""
    return tuple(map(type, row)) in WELL_TYPED_ROWS


def column_flaw(row: tuple[Any, ...]) -> Flaw | None:
    """The first column of an SQLite event row whose type keytrail never writes there (None: all fine)."""
    for name, value in zip(EVENT_COLUMNS, row, strict=True):
        if name in _INTEGERS:
            if type(value) is not int:
                return Flaw("malformed", f"{name} is stored as {shown(value)}, not a whole number.")
        elif type(value) is not str and not (value is None and name in _NULLABLE):
            return Flaw("malformed", f"{name} is stored as {shown(value)}, not text.")
    return None


def checked_event(row: Any) -> RecordedEvent:
    """An event read off PostgreSQL for a reader: ``jsonb`` holds any JSON value, keytrail only objects."""
    flaw = data_flaw(row[7])
    if flaw is not None:
        raise CorruptEvent(row[1], row[2], flaw.message, position=row[0])
    return RecordedEvent(*row)


def strict_sqlite_event(row: Any) -> RecordedEvent:
    """An event read off SQLite for a reader, every column as keytrail writes it, or CorruptEvent naming it."""
    try:
        if not well_typed(row):
            flaw = column_flaw(row)
            raise ValueError(flaw.message if flaw is not None else "a column holds a value keytrail never writes.")
        data = read_sqlite_json(row[7])
        occurred = read_sqlite_time(row[9])
    except ValueError as exc:
        raise CorruptEvent(row[1], row[2], str(exc), position=row[0]) from None
    return RecordedEvent(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        data,
        row[8],
        occurred,
        row[10],
        row[11],
        row[12],
        row[13],
    )
