"""Where an engine's database and encryption key live: the clock default and the key-file policy."""

from __future__ import annotations

import hashlib
import os
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet

from keytrail.crypto import SECRET_KEY_ENV, SECRET_KEY_FILE_ENV, load_secret_keys
from keytrail.errors import KeytrailError
from keytrail.persistence import Database
from keytrail.persistence.units import sqlite_file_of

__all__ = ["database_files", "secret_keys_for", "system_clock"]


def system_clock() -> datetime:
    """The default clock: now, in UTC (freezegun moves it)."""
    return datetime.now(UTC)


def _default_key_file(db: Database) -> Path | None:
    if db.in_memory:
        return None
    if db.sqlite_path is not None:
        return db.sqlite_path.with_name(db.sqlite_path.name + ".key")
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    name = hashlib.sha256(db.shown.encode("utf-8")).hexdigest()[:16]
    return data_home / "keytrail" / f"{name}.key"


def _sqlite_files(path: Path) -> dict[Path, str]:
    """A SQLite database file and the files SQLite keeps beside it, each with what it is."""
    files = {path: "the database"}
    for suffix in ("-wal", "-shm", "-journal"):
        files[path.with_name(path.name + suffix)] = f"the database's {suffix} file"
    return files


def database_files(url: str) -> dict[Path, str]:
    """The files that hold ``url``'s data and its encryption key, each with what it is, for a writer to avoid.

    A URL that names no file (a server database, an unparseable URL) yields only the key file, if any.
    """
    files: dict[Path, str] = {}
    named = os.environ.get(SECRET_KEY_FILE_ENV)
    if named:  # whatever the URL: a command that needs no database still must not write over it
        files[Path(named)] = "the database's encryption key file"
    try:
        db = Database(url)
    except KeytrailError:  # a URL keytrail refuses (a query, say) may still name a file SQLite would open
        with suppress(Exception):
            path = sqlite_file_of(url)
            if path is not None:
                files.update(_sqlite_files(path))
        return files
    try:
        if db.sqlite_path is not None:
            files.update(_sqlite_files(db.sqlite_path))
        key_file = None if named else _default_key_file(db)
        if key_file is not None:
            files[key_file] = "the database's encryption key file"
    finally:
        db.dispose()
    return files


def secret_keys_for(db: Database, *, new_database: bool) -> tuple[list[Fernet], str]:
    """The encryption keys for ``db``; an in-memory database dies with the process, so without a
    configured key it gets a throwaway one."""
    if db.in_memory and not (os.environ.get(SECRET_KEY_ENV) or os.environ.get(SECRET_KEY_FILE_ENV)):
        return [Fernet(Fernet.generate_key())], "an ephemeral key (in-memory database)"
    return load_secret_keys(_default_key_file(db), create=new_database)
