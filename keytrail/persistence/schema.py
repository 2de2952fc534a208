"""The schema's checks and changes: refuse foreign or mismatched databases untouched, create, migrate on request."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from keytrail.errors import (
    ConcurrencyConflict,
    DatabaseUnavailable,
    InvalidInput,
    NotAKeytrailDatabase,
    SchemaMismatch,
    StorageError,
    UnknownDatabase,
)
from keytrail.inputs import clipped
from keytrail.persistence.faults import SHOWN_LIMIT, translate_error
from keytrail.persistence.tables import DATABASE_SCHEMA, KeytrailTable, MetaRow

__all__ = ["APPLICATION", "Schema", "SchemaStatus"]

APPLICATION = "keytrail"
_meta = MetaRow.__table__  # type: ignore[attr-defined]
_VERSION_TABLE = "keytrail_alembic_version"  # migrations.VERSION_TABLE, without importing alembic


@dataclass(frozen=True)
class SchemaStatus:
    """What :meth:`Database.inspect_schema` found."""

    exists: bool
    meta: dict[str, str]
    tables: frozenset[str] = frozenset()


class Schema:
    """The schema side of :class:`~keytrail.persistence.database.Database`, which provides what is declared here."""

    engine: Engine
    dialect: str
    shown: str
    sqlite_path: Path | None
    in_memory: bool
    _busy_timeout: float

    read_only: bool
    sqlite_uri: Callable[[Path], str]
    read: Callable[[], AbstractContextManager[Connection]]
    write: Callable[[], AbstractContextManager[Connection]]

    def _check_sqlite_file(self, create: bool) -> None:
        if self.sqlite_path is None:
            return
        try:
            self._check_sqlite_path(self.sqlite_path, create)
        except OSError as exc:  # a name too long for the filesystem, say
            raise InvalidInput(f"{self.shown} cannot be opened: {exc.strerror or exc.__class__.__name__}.") from None

    def _check_sqlite_path(self, path: Path, create: bool) -> None:
        shown = clipped(str(path), SHOWN_LIMIT)
        if not path.exists():
            if not create:
                raise UnknownDatabase(f"There is no keytrail database at {shown}: the file does not exist.")
            if not path.parent.is_dir():
                raise InvalidInput(
                    f"Cannot create {shown}: the folder {clipped(str(path.parent), SHOWN_LIMIT)} does not exist."
                )
            # Owner-only from the start (SQLite would make it 0644), and its -wal, -shm and
            # -journal files, which SQLite creates with the database file's mode, with it.
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
            except FileExistsError:
                pass  # another process created it first
            except OSError as exc:
                raise DatabaseUnavailable(f"{shown} cannot be created: {exc.strerror}.") from None
            return
        if path.is_dir():
            raise NotAKeytrailDatabase(f"{shown} is a folder, not a keytrail database.")
        # Asked of SQLite itself (which never writes to a file that is no database), not by reading the file here: closing any descriptor
        # of a file drops every POSIX lock this process holds on it, and so the locks of another
        # engine of this process on the same database (SQLite keeps its own descriptors open for that).
        try:
            probe = sqlite3.connect(self.sqlite_uri(path), uri=True, timeout=self._busy_timeout)
            try:
                probe.execute("PRAGMA schema_version").fetchone()
            finally:
                probe.close()
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc).lower():
                raise NotAKeytrailDatabase(
                    f"{shown} is not a keytrail database (not even an SQLite file); it was left untouched."
                ) from None
            raise DatabaseUnavailable(f"{shown} cannot be read: SQLite says {str(exc)!r}.") from None

    def inspect_schema(self, *, create: bool) -> SchemaStatus:
        """Whether the keytrail schema is there, refusing foreign or mismatched databases untouched."""
        self._check_sqlite_file(create)
        with self.read() as conn:
            names = set(sa.inspect(conn).get_table_names()) - {_VERSION_TABLE}  # migrated down to nothing
            if not names:
                if not create:
                    raise UnknownDatabase(f"{self.shown} holds no keytrail database yet; nothing was created.")
                return SchemaStatus(exists=False, meta={})
            if _meta.name not in names:
                self._foreign(names)
            meta = {row.name: row.value for row in conn.execute(sa.select(_meta.c.name, _meta.c.value))}
        self._check_meta(meta)
        return SchemaStatus(exists=True, meta=meta, tables=frozenset(names))

    def ping(self) -> str:
        """The schema version the database records, read in one short transaction (a readiness probe)."""
        with self.read() as conn:
            found = conn.execute(sa.select(_meta.c.value).where(_meta.c.name == "schema_version")).scalar()
        if found is None:
            raise NotAKeytrailDatabase(f"{self.shown} holds no keytrail schema version.")
        return str(found)

    def add_meta(self, defaults: dict[str, str]) -> dict[str, str]:
        """Add the metadata rows of ``defaults`` the database lacks (never a table, never a change); the metadata after.

        A racing opener's rows win.
        """
        try:
            with self.write() as conn:
                meta = {row.name: row.value for row in conn.execute(sa.select(_meta.c.name, _meta.c.value))}
                added = {name: value for name, value in defaults.items() if name not in meta}
                if added:
                    conn.execute(sa.insert(_meta), [{"name": k, "value": v} for k, v in added.items()])
                return {**meta, **added}
        except ConcurrencyConflict:
            return self.inspect_schema(create=False).meta

    def revision(self) -> str | None:
        """The database's schema revision (see :mod:`~keytrail.persistence.migrations`); None when it is empty."""
        from keytrail.persistence import migrations  # alembic: imported only when asked for

        self._check_sqlite_file(create=False)
        with self.read() as conn:
            return migrations.current(conn)

    def migrate(self, target: str = "head", *, down: bool = False) -> tuple[str | None, str | None]:
        """Migrate the schema up to ``target`` ("head" or a revision), or with ``down`` down to it
        ("base": nothing left), in one transaction; the revisions before and after.

        Only an empty database or a keytrail one (checked first, untouched otherwise); a target
        on the wrong side of the current revision is refused.
        """
        from keytrail.persistence import migrations

        self._check_sqlite_file(create=False)
        with self.read() as conn:
            names = set(sa.inspect(conn).get_table_names()) - {_VERSION_TABLE}
            if names and _meta.name not in names:
                self._foreign(names)
            if _meta.name in names:
                meta = {row.name: row.value for row in conn.execute(sa.select(_meta.c.name, _meta.c.value))}
                self._check_application(meta)
        with self.write() as conn:
            before = migrations.current(conn)
            wanted = migrations.HEAD if target == "head" else target
            if before is not None and before != wanted and (target != "base") and (int(wanted) < int(before)) != down:
                direction = "down" if down else "up"
                raise InvalidInput(
                    f"{self.shown} is at revision {before}: migrating {direction} to {wanted} is not possible."
                )
            if down:
                migrations.downgrade(conn, target)
            elif before != wanted:
                migrations.upgrade(conn, target)
            return before, migrations.current(conn)

    def _foreign(self, names: set[str]) -> None:
        listed = ", ".join(sorted(names)[:5])
        raise NotAKeytrailDatabase(
            f"{self.shown} is not a keytrail database: it has other tables ({listed}) and no keytrail_meta; "
            "it was left untouched."
        )

    def _check_application(self, meta: dict[str, str]) -> None:
        if meta.get("application") != APPLICATION:
            raise NotAKeytrailDatabase(
                f"{self.shown} has a keytrail_meta table that keytrail did not write; it was left untouched."
            )

    def _check_meta(self, meta: dict[str, str]) -> None:
        """Refuse another application's table, and a schema older or newer than this keytrail's (never migrated here)."""
        self._check_application(meta)
        found = meta.get("schema_version", "?")
        if found == str(DATABASE_SCHEMA):
            return
        if found.isdigit() and int(found) < DATABASE_SCHEMA:
            raise SchemaMismatch(
                f"{self.shown} has keytrail schema version {found}, older than this keytrail's {DATABASE_SCHEMA}; "
                "it was left untouched. Back it up, then run `keytrail db upgrade` on it "
                "(with --db or KEYTRAIL_DATABASE_URL naming it), and open it again."
            )
        newer = found.isdigit() and int(found) > DATABASE_SCHEMA
        raise SchemaMismatch(
            f"{self.shown} has keytrail schema version {found}, but this keytrail reads version {DATABASE_SCHEMA}"
            + ("; upgrade keytrail to open it." if newer else "; it was left untouched.")
        )

    def _use_wal(self, raw: Any) -> None:
        """Switch a new SQLite file to WAL, waiting out processes that create the same database at once.

        SQLite answers "database is locked" to this pragma at once, without its busy handler,
        while another connection holds the file: so wait here, up to the busy timeout.
        """
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.005
        while True:
            try:
                raw.cursor().execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def create_schema(self, meta: dict[str, str]) -> dict[str, str]:
        """Create every table and the metadata rows in one transaction; a racing creator's schema wins."""
        if self.dialect == "sqlite" and not self.in_memory:
            raw = self.engine.raw_connection()  # persistent, and must be set outside a transaction
            try:
                self._use_wal(raw)
            except sqlite3.Error as exc:
                raise translate_error(exc, self.shown) from exc
            finally:
                raw.close()
        try:
            from keytrail.persistence import migrations

            with self.write() as conn:
                if _meta.name in sa.inspect(conn).get_table_names():
                    existing = {row.name: row.value for row in conn.execute(sa.select(_meta.c.name, _meta.c.value))}
                    self._check_meta(existing)
                    return existing
                KeytrailTable.metadata.create_all(conn)
                migrations.stamp_head(conn)  # created from the models, which are the newest revision's
                full = {"application": APPLICATION, "schema_version": str(DATABASE_SCHEMA), **meta}
                conn.execute(sa.insert(_meta), [{"name": k, "value": v} for k, v in full.items()])
                return full
        except (ConcurrencyConflict, StorageError):
            # Another process created the schema between our check and our write.
            status = self.inspect_schema(create=False)
            return status.meta
