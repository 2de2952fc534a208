"""``engine.admin``: what operators and test toolkits do outside the onboarding flow.

Rotating the encryption key, writing a store's configuration the way ``bin/magento
config:set`` does (no event: keytrail was not asked), and reading what is saved. Nothing
here returns a ciphertext; :class:`SavedKeyRecord` holds the saved key's fingerprint, hint
and time only. ``keytrail.testing`` and the reports use this surface, never the engine's
private attributes, so the engine's insides can change without breaking users' test suites.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from keytrail import inputs
from keytrail.crypto import SecretBox, fingerprint, hint, key_file_keys, key_file_of, parse_secret_key, write_key_file
from keytrail.errors import InvalidInput, SecretKeyError
from keytrail.events import iso_utc
from keytrail.logs import get_logger
from keytrail.persistence import SavedConfig
from keytrail.persistence.units import Storage
from keytrail.portal import SavedKey, Verdict
from keytrail.portal.records import AuthorityEvent

if TYPE_CHECKING:
    from keytrail.engine.core import Engine

__all__ = ["Admin", "SavedKeyRecord"]

_log = get_logger("keytrail.engine")


@dataclass(frozen=True)
class SavedKeyRecord:
    """The key saved in a store's configuration, as an operator may see it: never the key, never its ciphertext."""

    stream: str
    fingerprint: str
    hint: str
    saved_at: datetime

    @classmethod
    def of(cls, config: SavedConfig) -> SavedKeyRecord:
        """The record of a stored configuration row, its ciphertext left behind."""
        return cls(config.stream_id, config.fingerprint, config.hint, config.saved_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "fingerprint": self.fingerprint,
            "hint": self.hint,
            "saved_at": iso_utc(self.saved_at),
        }


class Admin:
    """Operator actions on an engine's database; reach it as ``engine.admin`` (the engine builds it).

    ``box`` and ``use_box`` read and replace the engine's encryption keys, so that a rotation
    switches every sealer of the engine at once; ``saved_key`` unseals a configuration row for
    the verifier, as commands do.
    """

    def __init__(
        self,
        engine: Engine,
        storage: Storage,
        *,
        box: Callable[[], SecretBox],
        use_box: Callable[[SecretBox], None],
        saved_key: Callable[[SavedConfig | None], SavedKey | None],
    ) -> None:
        self._engine = engine
        self._storage = storage
        self._box = box
        self._use_box = use_box
        self._saved_key = saved_key

    def __repr__(self) -> str:
        return f"Admin({self._engine.database.shown!r})"

    # -- the encryption key ---------------------------------------------------------------------

    def check_secret_key(self) -> str:
        """Find the encryption key and check it against the database now, not at the first seal or unseal.

        Returns where it came from (the variable's name or the key file), never the key; a
        missing or wrong key is the SecretKeyError a command needing it would get.
        """
        return self._box().source

    def rotate_secret_key(self, new_key: str, *, actor: str | None = None) -> int:
        """Re-seal every saved store key and every authority key under ``new_key``, in one transaction.

        ``new_key`` is a key as ``keytrail.crypto.generate_secret_key()`` makes it. When the
        current key came from a key file, the file is rewritten too: first holding both keys
        (so a crash at any moment leaves every secret openable), then, once the database has
        committed, only the new one. When it came from ``KEYTRAIL_SECRET_KEY``, put the new key
        there (first, if you keep the old one listed after it) before the next open. Stop other
        hosts sharing the database while rotating. Returns how many secrets were re-sealed.
        """
        self._engine.database.check_writable()  # before the key file is touched
        actor = inputs.check_actor(actor)
        fernet = parse_secret_key(new_key)
        new_key = new_key.strip()
        retiring = self._box()
        key_file = key_file_of(retiring.source)
        if key_file is not None:
            old_keys = key_file_keys(key_file)  # refuses a key file others may read, as opening does
            try:
                write_key_file(key_file, [new_key, *old_keys])
            except OSError as exc:
                raise SecretKeyError(
                    f"The key file {key_file} cannot be rewritten ({exc.__class__.__name__}); nothing was changed."
                ) from None
        rotating = retiring.with_new_key(fernet, retiring.source)
        # From here on the engine seals under the new key (and opens with both), so a command in
        # another thread cannot seal a secret under the key that is being retired.
        self._use_box(rotating)
        portal = self._engine.portal
        try:
            with self._storage.write() as unit:
                unit.lock_secrets()  # no save or key creation may slip in under the old key
                count = 0
                for stream_id, ciphertext in unit.sealed_configs():  # read in full first: each row is updated as we go
                    what = f"The saved key of {stream_id}"
                    unit.reseal_config(stream_id, rotating.rotate(ciphertext, what=what))
                    count += 1
                configs = count
                count += portal.reseal_keys_in(unit.authority, rotating)
                unit.set_secret_check(rotating.check_token())
                resealed = {"resealed_configs": configs, "resealed_keys": count - configs}
                rotated = AuthorityEvent(
                    "encryption", None, "encryption_key_rotated", resealed, actor, self._engine.now()
                )
                unit.authority.record(rotated)
        except BaseException:
            self._use_box(retiring)  # nothing was re-sealed: seal as before
            raise
        current = rotating.only_current()
        self._use_box(current)
        if key_file is not None:
            try:
                write_key_file(key_file, [new_key])
            except OSError as exc:  # both keys stay listed, newest first: everything still opens
                _log.warning("key_file_not_trimmed", path=str(key_file), error=exc.__class__.__name__)
        _log.info("secret_key_rotated", resealed=count, source=current.source)
        return count

    # -- the store configuration ----------------------------------------------------------------

    def put_saved_key(self, stream: str, key: str) -> SavedKeyRecord:
        """Save ``key`` in the store configuration of ``stream`` as ``bin/magento config:set`` would.

        No event is recorded and the onboarding need not exist: this is a store configured
        outside keytrail, which the next ``access`` finds. Returns what is now saved.
        """
        self._engine.database.check_writable()  # before the key is asked for to seal
        stream = inputs.check_stream_id(stream)
        if isinstance(key, str) and inputs.is_masked(key.strip()):
            raise InvalidInput(
                "Asterisks only keep a saved key on the configuration page; put_saved_key needs the key itself."
            )
        plaintext = inputs.check_key(key)
        record = SavedKeyRecord(stream, fingerprint(plaintext), hint(plaintext), self._engine.now())
        sealed = self._box().seal(plaintext)
        with self._storage.write() as unit:
            unit.save_config(stream, sealed, record.fingerprint, record.hint, record.saved_at)
        _log.info("saved_key_put", stream=stream, hint=record.hint)
        return record

    def saved_key(self, stream: str) -> SavedKeyRecord | None:
        """What the store configuration of ``stream`` holds, tracked by keytrail or not; None when nothing is saved."""
        stream = inputs.check_stream_id(stream)
        with self._storage.read() as unit:
            config = unit.load(stream).config
        return None if config is None else SavedKeyRecord.of(config)

    def saved_keys(self) -> Generator[SavedKeyRecord, None, None]:
        """Every saved configuration, ordered by onboarding id, streamed."""
        with self._storage.read() as unit, closing(unit.configs()) as configs:
            for config in configs:
                yield SavedKeyRecord.of(config)

    def saved_key_verdict(self, stream: str, at: datetime | None = None) -> tuple[SavedKeyRecord | None, Verdict]:
        """What ``stream``'s store configuration holds and what the engine's verifier says of it at ``at``.

        Like ``Engine.saved_key_status``, for a store keytrail may not track yet; nothing is written.
        """
        stream = inputs.check_stream_id(stream)
        with self._storage.read() as unit:
            config = unit.load(stream).config
        when = self._engine.now() if at is None else inputs.check_instant("at", at)
        record = None if config is None else SavedKeyRecord.of(config)
        return record, self._engine.verifier.verify(self._saved_key(config), when)

    def saved_key_verdicts(self, at: datetime | None = None) -> list[tuple[SavedKeyRecord, Verdict]]:
        """Every saved configuration with what the engine's verifier says of it at ``at`` (default: now).

        The configurations are read first, then verified one by one outside any transaction
        (the verifier may be remote); nothing is written.
        """
        with self._storage.read() as unit:
            configs = list(unit.configs())
        when = self._engine.now() if at is None else inputs.check_instant("at", at)
        verifier = self._engine.verifier
        return [(SavedKeyRecord.of(config), verifier.verify(self._saved_key(config), when)) for config in configs]

    # -- the log as stored ----------------------------------------------------------------------

    def log_rows(self) -> Generator[tuple[Any, ...], None, None]:
        """Every event row as stored, in ``position`` order, streamed: what the log digest hashes.

        Each row is ``(position, stream_id, version, trigger, source, dest, reason, data, actor,
        occurred_at, idempotency_key, schema_version, prev_hash, hash)``, ``occurred_at`` as ISO
        UTC text; a value not spelled as keytrail writes it comes as a
        :class:`~keytrail.persistence.stored.Flaw` in its place.

        Only the settled prefix of the global order is read (see :mod:`keytrail.persistence.feed`):
        an event that commits later always lands after it, so a digest taken while writers run is
        one a later check reproduces.
        """
        settled = self._storage.feed.horizon(wait=True)
        with self._storage.read() as unit, closing(unit.audit_rows_by_position(settled)) as rows:
            yield from rows
