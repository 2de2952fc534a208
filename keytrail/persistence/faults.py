"""Database URLs as messages show them, and driver errors as keytrail's: translated here and nowhere else."""

from __future__ import annotations

import sqlite3

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from keytrail.errors import (
    ConcurrencyConflict,
    DatabaseBusy,
    DatabaseUnavailable,
    KeytrailError,
    NotAKeytrailDatabase,
    ReadOnly,
    StorageError,
)

__all__ = ["SHOWN_LIMIT", "normalize_url", "redact_url", "translate_error"]

SHOWN_LIMIT = 160  # a path or URL in a message: whole as people write them, never a 100,000-character one


def normalize_url(url: str) -> str:
    """Accept the common spellings of a PostgreSQL URL and route them to psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"


def translate_error(exc: BaseException, where: str) -> KeytrailError:
    """Map a driver or SQLAlchemy error to keytrail's tree; ``where`` names the database for messages."""
    if isinstance(exc, KeytrailError):
        return exc
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else orig.__class__.__name__
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(orig, sqlite3.DatabaseError):
        lowered = text.lower()
        if "file is not a database" in lowered or "malformed" in lowered:
            return NotAKeytrailDatabase(
                f"{where} is not a keytrail database: SQLite says {text!r}. Nothing was written."
            )
        if "locked" in lowered or "busy" in lowered:
            return DatabaseBusy(
                f"{where} is locked by another writer and stayed locked past the busy timeout; nothing was written."
            )
        if "readonly" in lowered or "read-only" in lowered:
            return ReadOnly(f"{where} is read-only; nothing was written.")
        if "unable to open" in lowered:
            return DatabaseUnavailable(f"{where} cannot be opened: SQLite says {text!r}.")
        if isinstance(orig, sqlite3.IntegrityError):
            return ConcurrencyConflict(f"A concurrent writer changed {where} first ({text}); nothing was written.")
        return StorageError(f"{where} refused the operation: SQLite says {text!r}.")
    if sqlstate is not None:
        if sqlstate in ("40001", "40P01"):
            return ConcurrencyConflict(
                f"A concurrent transaction on {where} won (SQLSTATE {sqlstate}); nothing was written."
            )
        if sqlstate.startswith("23"):
            return ConcurrencyConflict(
                f"A concurrent writer changed {where} first (SQLSTATE {sqlstate}); nothing was written."
            )
        if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03", "53300"):
            return DatabaseUnavailable(f"{where} cannot be reached: {text}.")
        if sqlstate == "25006":
            return ReadOnly(f"{where} is read-only; nothing was written.")
        if sqlstate in ("55P03", "57014"):
            return DatabaseBusy(f"{where} did not answer in time (SQLSTATE {sqlstate}); nothing was written.")
        return StorageError(f"{where} refused the operation (SQLSTATE {sqlstate}): {text}.")
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable(f"The connection to {where} was lost: {text}.")
    if isinstance(exc, DBAPIError) and orig.__class__.__name__ == "OperationalError":
        return DatabaseUnavailable(f"{where} cannot be reached: {text}.")
    return StorageError(f"{where} failed: {exc.__class__.__name__}: {text}.")
