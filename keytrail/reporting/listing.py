"""The list of onboardings (``/ui/``): state, reason, last change and key expiry, sorted and searched on the server.

Sorting and searching are query parameters (``?sort=-updated&q=acme``) so that plain links and
a GET form do them: the page needs no JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from keytrail.errors import InvalidInput
from keytrail.events import iso_utc
from keytrail.reporting.model import shown_time

if TYPE_CHECKING:
    from keytrail.engine import Engine

__all__ = ["COLUMNS", "MAX_ROWS", "IndexRow", "IndexView", "SortLink", "build_index"]

# (sort key, column heading)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("stream", "Onboarding"),
    ("state", "State"),
    ("reason", "Reason"),
    ("version", "Events"),
    ("updated", "Last change (UTC)"),
    ("expires", "Key expires (UTC)"),
)
_KEYS = {key for key, _ in COLUMNS}
# A page an auditor reads, not an export: past this many rows, the search narrows it.
MAX_ROWS = 500
_MAX_QUERY = 128


@dataclass(frozen=True)
class IndexRow:
    """One onboarding's line: ``link`` is relative to ``/ui/``."""

    stream: str
    link: str
    state: str
    reason: str
    version: int
    updated_at: str
    updated_iso: str
    key_status: str
    expires_at: str
    expires_iso: str


@dataclass(frozen=True)
class SortLink:
    """A column heading: its link sorts by it (the other way when it is the sort already)."""

    key: str
    title: str
    href: str
    aria_sort: str  # "ascending", "descending" or "none"


@dataclass(frozen=True)
class IndexView:
    """The page: the rows shown, how many matched, and the headings' links."""

    rows: list[IndexRow]
    matched: int
    total: int
    query: str
    sort: str
    columns: list[SortLink]
    generated_at: str

    @property
    def cut(self) -> bool:
        return self.matched > len(self.rows)


def _sort_key(row: IndexRow, key: str) -> tuple[int, str]:
    """The value a column sorts by (a number, else text: ISO times sort as text)."""
    if key == "version":
        return row.version, ""
    text = {
        "stream": row.stream,
        "state": row.state,
        "reason": row.reason,
        "updated": row.updated_iso,
        "expires": row.expires_iso,
    }[key]
    return 0, text


def _check(sort: str, query: str) -> tuple[str, bool, str]:
    key, descending = (sort[1:], True) if sort.startswith("-") else (sort, False)
    if key not in _KEYS:
        raise InvalidInput(
            f"{sort[:40]!r} is not a column to sort by; use one of {', '.join(sorted(_KEYS))}, with - for descending."
        )
    if len(query) > _MAX_QUERY:
        raise InvalidInput(f"A search is at most {_MAX_QUERY} characters, not {len(query)}.")
    return key, descending, query.strip()


def build_index(engine: Engine, *, sort: str = "stream", query: str = "") -> IndexView:
    """Every onboarding whose id, state, reason or key status contains ``query`` (any case), sorted by ``sort``."""
    key, descending, needle = _check(sort, query)
    now = engine.now()
    keys: dict[str, tuple[str, datetime | None]] = {}
    for saved, verdict in engine.admin.saved_key_verdicts(now):
        said = "valid" if verdict.valid else ("unknown" if verdict.reason is None else verdict.reason.value)
        keys[saved.stream] = (said, verdict.expires_at)
    rows: list[IndexRow] = []
    total = 0
    for status in engine.streams():
        total += 1
        key_status, expires = keys.get(status.stream, ("missing", None))
        row = IndexRow(
            status.stream,
            "onboardings/" + quote(status.stream, safe=""),
            status.state.value,
            "" if status.reason is None else status.reason.value,
            status.version,
            shown_time(status.updated_at),
            "" if status.updated_at is None else iso_utc(status.updated_at),
            key_status,
            shown_time(expires),
            "" if expires is None else iso_utc(expires),
        )
        haystack = " ".join((row.stream, row.state, row.reason, row.key_status)).casefold()
        if needle.casefold() in haystack:
            rows.append(row)
    # Empty values (no reason, no key) last, whichever the direction.
    present = sorted(
        (r for r in rows if _sort_key(r, key) != (0, "")), key=lambda r: _sort_key(r, key), reverse=descending
    )
    ordered = present + [r for r in rows if _sort_key(r, key) == (0, "")]
    columns = []
    for column, title in COLUMNS:
        current = column == key
        wanted = f"-{column}" if current and not descending else column
        params = {"sort": wanted, **({"q": needle} if needle else {})}
        columns.append(
            SortLink(
                column,
                title,
                "?" + urlencode(params),
                ("descending" if descending else "ascending") if current else "none",
            )
        )
    return IndexView(ordered[:MAX_ROWS], len(ordered), total, needle, sort, columns, shown_time(now))
