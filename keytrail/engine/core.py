"""The engine: opens a keytrail database and puts its parts together.

The commands are in :mod:`keytrail.engine.commands`, the one path they all take in
:mod:`keytrail.engine.runner`, the reads in :mod:`keytrail.engine.reads` and the operator's
actions in :mod:`keytrail.engine.admin`; this module holds what ties them to one database.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from keytrail import inputs
from keytrail.crypto import DeferredBox, SecretBox
from keytrail.engine.admin import Admin
from keytrail.engine.commands import Commands
from keytrail.engine.following import Following
from keytrail.engine.lifecycle import database_files, secret_keys_for, system_clock
from keytrail.engine.reads import Reads
from keytrail.errors import InvalidInput
from keytrail.logs import get_logger
from keytrail.persistence import Database, Durability
from keytrail.persistence.group import CommitStats
from keytrail.persistence.units import Storage
from keytrail.portal import KeyAuthority, KeyVerifier

__all__ = ["Clock", "Engine", "database_files", "system_clock"]

Clock = Callable[[], datetime]
_log = get_logger("keytrail.engine")
# The keytrail_meta row holding the key of idempotency digests.
_SALT = "idempotency_salt"


class Engine(Commands, Reads, Following):
    """Drives onboardings through the machine and keeps their event log. Open with :meth:`Engine.open`."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        clock: Clock,
        key_lifetime: timedelta,
        session_lifetime: timedelta,
        max_failed_sign_ins: int,
        lockout: timedelta,
        verifier: KeyVerifier | None,
        retries: int,
        idempotency_salt: str = "",
        group_commit: bool = False,
        max_batch: int = 64,
    ) -> None:
        self._db = db
        # Keys the digests of idempotency keys (see idempotency_digest); "" only where nothing can be written.
        self._idempotency_salt = idempotency_salt
        self._box = box
        self._clock = clock
        self._storage = Storage(db, group_commit=group_commit, max_batch=max_batch)
        self._retries = retries
        self.portal = KeyAuthority(
            self._storage.authority,
            box,
            self._now,
            key_lifetime=key_lifetime,
            session_lifetime=session_lifetime,
            max_failed_sign_ins=max_failed_sign_ins,
            lockout=lockout,
        )
        self.verifier: KeyVerifier = verifier if verifier is not None else self.portal
        self._admin = Admin(
            self, self._storage, box=lambda: self._box, use_box=self._use_box, saved_key=self._saved_key
        )

    @classmethod
    def open(
        cls,
        url: str,
        *,
        key_lifetime: timedelta = timedelta(days=365),
        clock: Clock | None = None,
        session_lifetime: timedelta = timedelta(hours=8),
        max_failed_sign_ins: int = 5,
        lockout: timedelta = timedelta(minutes=15),
        verifier: KeyVerifier | None = None,
        create: bool = True,
        durability: Durability = "full",
        busy_timeout: float = 5.0,
        retries: int = 3,
        group_commit: bool | None = None,
        max_batch: int = 64,
        read_only: bool = False,
    ) -> Engine:
        """Open (and, when ``create``, first create) a keytrail database.

        The encryption key comes from ``KEYTRAIL_SECRET_KEY`` or ``KEYTRAIL_SECRET_KEY_FILE``;
        without either, a key file is created beside a new SQLite database (or in the user's
        data folder for a server database) with owner-only permissions. An existing database's
        key is looked for only when a command first seals or decrypts: reading and auditing
        need none.

        ``read_only``: the auditor's open. Nothing is created or upgraded, every write is refused
        with :class:`~keytrail.errors.ReadOnly`, SQLite opens the file ``mode=ro`` (creating no
        -wal or -shm file) and PostgreSQL runs every transaction READ ONLY.

        ``group_commit``: commands of this engine's threads that arrive while a commit is in
        progress share the next one (one sync of the log for up to ``max_batch`` commands, each
        in its own savepoint; a caller alone waits for no one). None, the default, turns it on
        for a SQLite file, whose writers queue for one lock anyway, and off for PostgreSQL, where
        each thread has its own connection and the server already groups commits (and for an
        in-memory database, one connection whose users take turns).
        """
        for name, span in (
            ("key_lifetime", key_lifetime),
            ("session_lifetime", session_lifetime),
            ("lockout", lockout),
        ):
            inputs.check_span(name, span)
        inputs.check_count("max_failed_sign_ins", max_failed_sign_ins, least=1, most=1_000_000)
        inputs.check_count("retries", retries, least=0, most=1000)
        inputs.check_seconds("busy_timeout", busy_timeout)
        inputs.check_count("max_batch", max_batch, least=1, most=10_000)
        if group_commit is not None and type(group_commit) is not bool:
            raise InvalidInput(f"group_commit must be True, False or None, not {group_commit!r}.")
        db = Database(url, busy_timeout=busy_timeout, durability=durability, read_only=read_only)
        if group_commit and db.in_memory:
            db.dispose()
            raise InvalidInput(
                "Group commit needs a database file or a server: an in-memory SQLite database is one shared "
                "connection, whose users take turns already."
            )
        try:
            status = db.inspect_schema(create=create and not read_only)
            box: SecretBox
            if status.exists and ("secret_check" in status.meta or read_only):
                box = DeferredBox(_keys_loader(db, status.meta.get("secret_check", "")))
                meta = status.meta
            elif status.exists:
                # Made by `keytrail db upgrade` on an empty database: nothing is sealed in it yet.
                box = SecretBox(*secret_keys_for(db, new_database=True))
                meta = db.add_meta({"secret_check": box.check_token(), _SALT: secrets.token_hex(32)})
                box.confirm(meta.get("secret_check", ""))
            else:
                box = SecretBox(*secret_keys_for(db, new_database=True))
                meta = db.create_schema({"secret_check": box.check_token(), _SALT: secrets.token_hex(32)})
                box.confirm(meta.get("secret_check", ""))
        except BaseException:
            db.dispose()
            raise
        engine = cls(
            db,
            box,
            clock=clock or system_clock,
            key_lifetime=key_lifetime,
            session_lifetime=session_lifetime,
            max_failed_sign_ins=max_failed_sign_ins,
            lockout=lockout,
            verifier=verifier,
            retries=retries,
            idempotency_salt=meta.get(_SALT, ""),
            group_commit=not read_only
            and ((db.dialect == "sqlite" and not db.in_memory) if group_commit is None else group_commit),
            max_batch=max_batch,
        )
        _log.debug("engine_opened", database=db.shown)
        return engine

    def __repr__(self) -> str:
        return f"Engine({self._db.shown!r})"

    @property
    def read_only(self) -> bool:
        """Whether the engine was opened ``read_only`` (every write refused with ReadOnly)."""
        return self._db.read_only

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections; the engine cannot be used afterwards."""
        self._db.close()

    @property
    def admin(self) -> Admin:
        """Operator actions outside the flow: rotate the encryption key, write and read the saved configuration."""
        return self._admin

    @property
    def commit_stats(self) -> CommitStats | None:
        """Group commit's counts (commits, commands, the largest batch); None when it is off."""
        group = self._storage.group
        return None if group is None else group.stats

    @property
    def clock(self) -> Clock:
        """The clock the engine was opened with (the pytest toolkit moves a ``FrozenClock`` through it)."""
        return self._clock

    def _use_box(self, box: SecretBox) -> None:
        """Seal and open with ``box`` from now on, in the commands and in the authority alike (key rotation)."""
        self._box = box
        self.portal.use_box(box)

    @property
    def database(self) -> Database:
        return self._db

    def now(self) -> datetime:
        """The engine's clock, read the way commands read it (aware, UTC)."""
        return self._now()


def _keys_loader(db: Database, check: str) -> Callable[[], SecretBox]:
    """Find an existing database's keys, at first use, and check them against its sealed constant."""

    def load() -> SecretBox:
        box = SecretBox(*secret_keys_for(db, new_database=False))
        box.confirm(check)
        return box

    return load
