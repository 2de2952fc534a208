"""The engine: drives one onboarding's transitions and appends each to the event log.

A command reads the stream's projection, checks the trigger against the machine table,
performs its side effects in the key authority and the store configuration, looks the
trigger up in the machine's compiled decision table, and appends the event and the new
projection, all in one database transaction. Nothing is written when any step refuses.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from keytrail import inputs
from keytrail.crypto import (
    SecretBox,
    fingerprint,
    hint,
)
from keytrail.engine.admin import Admin
from keytrail.engine.audit import carried_ids
from keytrail.engine.lifecycle import database_files, secret_keys_for, system_clock
from keytrail.engine.reads import Reads
from keytrail.engine.results import KeyOutcome, Outcome
from keytrail.errors import (
    ConcurrencyConflict,
    CorruptEvent,
    CorruptProjection,
    DatabaseBusy,
    DatabaseUnavailable,
    IdempotencyMismatch,
    IllegalTransition,
    InvalidInput,
    StorageError,
)
from keytrail.events import IDEMPOTENCY_PREFIX, event_hash, hashed_fields, idempotency_digest, iso_utc
from keytrail.logs import get_logger
from keytrail.persistence import (
    SCHEMA_VERSION,
    Database,
    Durability,
    PendingEvent,
    RecordedEvent,
    SavedConfig,
    StreamHead,
)
from keytrail.persistence.stored import shown
from keytrail.persistence.units import CommandUnit, Storage
from keytrail.portal import IssuedKey, KeyAuthority, KeyVerifier, SavedKey, TransactionalKeyVerifier, Verdict
from keytrail.portal.passwords import hash_password
from keytrail.states import Reason, State, Trigger, initial_state
from keytrail.states.machine import compiled

__all__ = ["Clock", "Engine", "database_files", "system_clock"]

Clock = Callable[[], datetime]
_log = get_logger("keytrail.engine")
_VERIFYING = (Trigger.access, Trigger.proceed)
# The one compiled machine: every command's legality check and destination are lookups in it.
_DECISIONS = compiled()
# The states (by stored spelling) each verifying trigger may fire from: the hot path's legality check.
_HOT_SOURCES = {trigger: frozenset(s.value for s in _DECISIONS.sources[trigger]) for trigger in _VERIFYING}


# The keytrail_meta row holding the key of idempotency digests (added to older databases on open).
_SALT = "idempotency_salt"
# A retry after a lost race waits up to 1 ms, then 2, 4, ... never more than 50 ms.
_RETRY_PAUSE = 0.001
_RETRY_PAUSE_CAP = 0.05

_T = TypeVar("_T")
_O = TypeVar("_O", bound=Outcome)


def _logged(outcome: _O, source: State, actor: str | None) -> _O:
    """Log a committed transition (never with a key or password), and hand the outcome on."""
    _log.info(
        "transition",
        stream=outcome.stream,
        trigger=outcome.trigger.value,
        source=source.value,
        dest=outcome.state.value,
        version=outcome.version,
        reason=None if outcome.reason is None else outcome.reason.value,
        actor=actor,
    )
    return outcome


@dataclass
class _Step:
    """What a command's side effects produced, to be recorded in its event."""

    data: dict[str, Any] = field(default_factory=dict)
    verdict: Verdict | None = None
    issued: IssuedKey | None = None


def _check_expected_version(expected_version: int | None) -> None:
    """``expected_version`` is a whole number of at least 0 (0: not started), or None."""
    if expected_version is not None and (
        type(expected_version) is not int or expected_version < 0  # bool is an int, not a version
    ):
        raise InvalidInput(f"expected_version must be a whole number of at least 0, not {expected_version!r}.")


class Engine(Reads):
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
    ) -> None:
        self._db = db
        # Keys the digests of idempotency keys (see idempotency_digest); "" only where nothing can be written.
        self._idempotency_salt = idempotency_salt
        self._box = box
        self._clock = clock
        self._storage = Storage(db)
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
    ) -> Engine:
        """Open (and, when ``create``, first create) a keytrail database.

        The encryption key comes from ``KEYTRAIL_SECRET_KEY`` or ``KEYTRAIL_SECRET_KEY_FILE``;
        without either, a key file is created beside a new SQLite database (or in the user's
        data folder for a server database) with owner-only permissions.
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
        db = Database(url, busy_timeout=busy_timeout, durability=durability)
        try:
            status = db.inspect_schema(create=create)
            box = SecretBox(*secret_keys_for(db, new_database=not status.exists))
            fresh = {"secret_check": box.check_token(), _SALT: secrets.token_hex(32)}
            meta = status.meta if status.exists else db.create_schema(fresh)
            box.confirm(meta.get("secret_check", ""))
            if status.exists and not db.schema_complete(status, _SALT):
                try:
                    meta = db.upgrade_schema({_SALT: fresh[_SALT]})
                except (DatabaseBusy, DatabaseUnavailable):
                    raise
                except StorageError as exc:  # a read-only database still reads; its writes are refused anyway
                    _log.warning("schema_not_upgraded", database=db.shown, error=str(exc))
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
        )
        _log.debug("engine_opened", database=db.shown)
        return engine

    def __repr__(self) -> str:
        return f"Engine({self._db.shown!r})"

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

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise InvalidInput("The engine's clock must return timezone-aware datetimes.")
        return now.astimezone(UTC)

    @staticmethod
    def _not_before(stream: str, now: datetime, previous: datetime | None) -> datetime:
        """The time of a stream's next event: the clock, or the previous event's time if the clock is behind it.

        Times within a stream never decrease, so that replay as of an instant cuts the stream in
        one place; a host whose clock stepped back records the previous time, and says so.
        """
        if previous is None or previous <= now:
            return now
        _log.warning("clock_stepped_back", stream=stream, clock=iso_utc(now), used=iso_utc(previous))
        return previous

    # -- the commands -------------------------------------------------------------------------

    def access(
        self,
        stream: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Open the Amazon Sales Channel: verify the saved key, then Validated (or stay integrated) or Prompted."""
        return self._run(Trigger.access, stream, actor, idempotency_key, expected_version, self._verify_step)

    def proceed(
        self,
        stream: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Go on to Store Integration, re-verifying the key at this instant."""
        return self._run(Trigger.proceed, stream, actor, idempotency_key, expected_version, self._verify_step)

    def sign_in(
        self,
        stream: str,
        *,
        email: str,
        password: str | None = None,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Sign in to the Commerce account; without a password, a live session is reused ("already signed in")."""
        stream = inputs.check_stream_id(stream)
        prior = self._prior_outcome(Trigger.sign_in, stream, idempotency_key)
        if prior is not None:
            return prior
        self._check_allowed_now(stream, Trigger.sign_in, expected_version)
        account = self.portal.authenticate(email, password, stream_id=stream, actor=inputs.check_actor(actor))
        via = "session" if password is None else "password"

        def step(unit: CommandUnit, head: StreamHead | None, config: SavedConfig | None, now: datetime) -> _Step:
            self.portal.signed_in_in(unit.authority, account, via=via, stream_id=stream, actor=actor, at=now)
            return _Step({"account_id": account.account_id, "email": account.email, "via": via})

        return self._run(Trigger.sign_in, stream, actor, idempotency_key, expected_version, step)

    def register(
        self,
        stream: str,
        *,
        email: str,
        password: str,
        company: str,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Register the company's account, then sign in with it."""
        stream = inputs.check_stream_id(stream)
        email, company = inputs.check_email(email), inputs.check_company(company)
        password = inputs.check_password(password)
        prior = self._prior_outcome(Trigger.register, stream, idempotency_key)
        if prior is not None:
            return prior
        self._check_allowed_now(stream, Trigger.register, expected_version)
        password_hash = hash_password(password)

        def step(unit: CommandUnit, head: StreamHead | None, config: SavedConfig | None, now: datetime) -> _Step:
            account = self.portal.create_account_in(unit.authority, email, password_hash, company, now)
            self.portal.signed_in_in(unit.authority, account, via="register", stream_id=stream, actor=actor, at=now)
            return _Step({"account_id": account.account_id, "email": email, "company": company})

        return self._run(Trigger.register, stream, actor, idempotency_key, expected_version, step)

    def generate_key(
        self,
        stream: str,
        *,
        description: str,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> KeyOutcome:
        """Create a new API key in the portal; the outcome carries the key (the only place it is shown)."""
        description = inputs.check_description(description)

        def step(unit: CommandUnit, head: StreamHead | None, config: SavedConfig | None, now: datetime) -> _Step:
            # SignedIn and every later state of a signed-in flow carry the account.
            assert head is not None
            assert head.account_id is not None
            self.portal.require_session_in(unit.authority, head.account_id, head.stream_id, now)
            issued = self.portal.generate_key_in(unit.authority, head.account_id, description, now)
            return _Step(
                {
                    "key_id": issued.key_id,
                    "description": description,
                    "fingerprint": issued.fingerprint,
                    "hint": issued.hint,
                    "expires_at": iso_utc(issued.expires_at),
                },
                issued=issued,
            )

        outcome = self._run(Trigger.generate_key, stream, actor, idempotency_key, expected_version, step)
        assert isinstance(outcome, KeyOutcome)
        return outcome

    def copy_key(
        self,
        stream: str,
        *,
        key_id: str | None = None,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> KeyOutcome:
        """The portal's "Copy": the key just generated, or an existing key of the account by ``key_id``."""
        if key_id is not None:
            key_id = inputs.check_key_id(key_id)

        def step(unit: CommandUnit, head: StreamHead | None, config: SavedConfig | None, now: datetime) -> _Step:
            assert head is not None
            assert head.account_id is not None
            self.portal.require_session_in(unit.authority, head.account_id, head.stream_id, now)
            chosen = key_id
            if chosen is None:
                if head.state != State.KeyGenerated.value or head.key_id is None:
                    raise InvalidInput(
                        f"{head.stream_id} is {head.state} with no key just generated; "
                        "pass key_id to copy an existing key of the account."
                    )
                chosen = head.key_id
            issued = self.portal.copy_key_in(unit.authority, head.account_id, chosen, now)
            return _Step(
                {"key_id": issued.key_id, "fingerprint": issued.fingerprint, "hint": issued.hint}, issued=issued
            )

        outcome = self._run(Trigger.copy_key, stream, actor, idempotency_key, expected_version, step)
        assert isinstance(outcome, KeyOutcome)
        return outcome

    def save_config(
        self,
        stream: str,
        *,
        key: str,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Paste the key into "Production Api key" and Save Config; asterisks only keep the saved key."""
        if not isinstance(key, str):
            raise InvalidInput(f"An API key must be a string, not a {type(key).__name__}.")
        keep = inputs.is_masked(key.strip())
        plaintext = None if keep else inputs.check_key(key)

        def step(unit: CommandUnit, head: StreamHead | None, config: SavedConfig | None, now: datetime) -> _Step:
            if plaintext is None:
                if config is None:
                    raise InvalidInput(f"{stream} has no saved key for the asterisks to keep; paste the key itself.")
                return _Step({"fingerprint": config.fingerprint, "hint": config.hint, "kept": True})
            digest, tail = fingerprint(plaintext), hint(plaintext)
            unit.save_config(stream, self._box.seal(plaintext), digest, tail, now)
            return _Step({"fingerprint": digest, "hint": tail, "kept": False})

        return self._run(Trigger.save_config, stream, actor, idempotency_key, expected_version, step)

    # -- the command runner ---------------------------------------------------------------------

    def _saved_key(self, config: SavedConfig | None) -> SavedKey | None:
        if config is None:
            return None
        box, stream = self._box, config.stream_id
        return SavedKey(
            config.fingerprint, config.hint, lambda: box.open(config.ciphertext, what=f"The saved key of {stream}")
        )

    def _verify_step(
        self,
        unit: CommandUnit,
        head: StreamHead | None,
        config: SavedConfig | None,
        now: datetime,
        verdict: Verdict | None = None,
    ) -> _Step:
        """Ask the verifier in the transaction, unless a remote verdict was already fetched outside it."""
        saved = self._saved_key(config)
        if verdict is None:
            assert isinstance(self.verifier, TransactionalKeyVerifier)
            verdict = self.verifier.verify_in(unit.authority, saved, now)
        if saved is None:
            return _Step(verdict.event_data(None, None), verdict=verdict)
        return _Step(verdict.event_data(saved.fingerprint, saved.hint), verdict=verdict)

    def _run(
        self,
        trigger: Trigger,
        stream: str,
        actor: str | None,
        idempotency_key: str | None,
        expected_version: int | None,
        step: Callable[[CommandUnit, StreamHead | None, SavedConfig | None, datetime], _Step],
    ) -> Outcome:
        stream = inputs.check_stream_id(stream)
        actor = inputs.check_actor(actor)
        idempotency_key = inputs.check_idempotency_key(idempotency_key)
        _check_expected_version(expected_version)
        if (
            idempotency_key is None
            and trigger in _VERIFYING
            and self._storage.has_hot_path
            and self.verifier is self.portal
            and type(self.portal) is KeyAuthority
        ):
            hot = self._run_hot(trigger, stream, actor, expected_version)
            if hot is not None:
                return hot
        remote = trigger in _VERIFYING and not isinstance(self.verifier, TransactionalKeyVerifier)

        def once() -> Outcome:
            now = self._now()
            active_step = step
            remote_fingerprint: str | None = None
            if remote:
                # A remote authority is asked outside the transaction, so the write lock is never
                # held across the network; the transaction then checks the saved key is unchanged.
                prior = self._prior_outcome(trigger, stream, idempotency_key)
                if prior is not None:
                    return prior
                with self._storage.read() as unit:
                    head, config = unit.read_head(stream)
                self._check_allowed(stream, head, trigger, expected_version)
                now = self._not_before(stream, now, head.updated_at if head else None)
                verdict = self.verifier.verify(self._saved_key(config), now)
                remote_fingerprint = config.fingerprint if config else None
                active_step = partial(self._verify_step, verdict=verdict)
            with self._storage.write() as unit:
                unit.lock_stream(stream)  # first: commands on one stream queue here
                if idempotency_key is not None:
                    prior_event = self._find_idempotent(unit, stream, idempotency_key)
                    if prior_event is not None:
                        return self._replayed(trigger, prior_event, unit, now)
                head, config = unit.read_head(stream)
                self._check_allowed(stream, head, trigger, expected_version)
                previous = head.updated_at if head else None
                if remote:
                    if remote_fingerprint != (config.fingerprint if config else None):
                        raise ConcurrencyConflict(f"The saved key of {stream} changed while it was being verified.")
                    if previous is not None and previous > now:  # the verdict was taken at an earlier instant
                        raise ConcurrencyConflict(f"{stream} moved on while its key was being verified.")
                else:
                    now = self._not_before(stream, now, previous)
                done = active_step(unit, head, config, now)
                source = State(head.state) if head else initial_state()
                dest = self._fire(trigger, source, done.verdict)
                reason = done.verdict.reason if done.verdict is not None and dest is State.Prompted else None
                account_id, key_id = carried_ids(trigger.value, done.data)
                recorded = unit.append(
                    stream,
                    head,
                    PendingEvent(
                        trigger.value,
                        source.value,
                        dest.value,
                        None if reason is None else reason.value,
                        done.data,
                        actor,
                        now,
                        None if idempotency_key is None else self._idempotency_digest(idempotency_key),
                        account_id,
                        key_id,
                    ),
                )
            return _logged(self._outcome(recorded, done.issued), source, actor)

        return self._with_retries(trigger, stream, expected_version, once)

    def _with_retries(self, trigger: Trigger, stream: str, expected_version: int | None, once: Callable[[], _T]) -> _T:
        """Run one attempt of a command; after a lost race, again against the fresh state.

        Commands on one stream queue on its lock, so a race is left only where there is nothing
        to lock yet (two first commands of a new stream) or where a remote verdict went stale.
        The retry waits a short random while, doubling, so racers that collided do not collide
        again in step. With ``expected_version`` the caller asked to know about races, so there
        is no retry.
        """
        for attempt in range(self._retries + 1):
            try:
                return once()
            except ConcurrencyConflict:
                if expected_version is not None or attempt == self._retries:
                    raise
                pause = random.uniform(0, min(_RETRY_PAUSE_CAP, _RETRY_PAUSE * 2**attempt))  # noqa: S311 (jitter, not a secret)
                _log.info(
                    "concurrency_retry",
                    stream=stream,
                    trigger=trigger.value,
                    attempt=attempt + 1,
                    pause_ms=round(pause * 1000, 2),
                )
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _fire(trigger: Trigger, source: State, verdict: Verdict | None) -> State:
        """Where the machine takes ``trigger`` from ``source``: one lookup in its compiled decision table.

        The table's only guards ask whether the saved key verifies, so ``verdict.valid`` (False
        without a verdict: the guarded triggers always have one) decides the destination. The
        caller has checked the trigger is allowed in ``source``, and the table answers every
        allowed trigger for both validities.
        """
        return _DECISIONS.dests[trigger, source, verdict is not None and verdict.valid]

    def _run_hot(
        self, trigger: Trigger, stream: str, actor: str | None, expected_version: int | None
    ) -> Outcome | None:
        """access or proceed of a tracked stream, with the embedded authority: the hot path.

        Same checks, same verdict, same machine, same rows and hashes as the generic path, in one
        write transaction of three statements on the driver's connection (the
        projection read joins the saved key and the authority's row for it; on PostgreSQL a lock
        of the projection row comes first). Returns None, having
        written nothing, when the stream has no projection yet: the generic path then runs.
        """

        def once() -> Outcome | None:
            now = self._now()
            with self._storage.hot_write() as unit:
                hot = unit.spelling
                row = unit.head_with_key(stream)  # first: commands on one stream queue on its lock
                if row is None:
                    return None
                state, version, head_hash, saved_fp, saved_hint, key_id, expires_stored, revoked_at, updated = row
                if type(version) is not int or type(state) is not str or type(head_hash) is not str:
                    raise CorruptProjection(
                        stream,
                        f"version, state or head_hash is stored as {shown(version)}, {shown(state)}, "
                        f"{shown(head_hash)}, not as keytrail writes them.",
                    )
                if state not in _HOT_SOURCES[trigger] or (expected_version is not None and version != expected_version):
                    self._check_allowed(
                        stream, StreamHead(stream, state, None, version, head_hash), trigger, expected_version
                    )
                try:
                    previous = hot.previous_time(updated)
                except ValueError as exc:
                    raise CorruptProjection(stream, str(exc)) from None
                now = self._not_before(stream, now, previous)
                # The embedded authority's verify_in, on the row the read already joined.
                if saved_fp is None:
                    verdict = Verdict.missing()
                else:
                    expires_at = None if expires_stored is None else hot.time_value(expires_stored)
                    verdict = Verdict.of_issued_key(key_id, expires_at, revoked_at is not None, now)
                data = verdict.event_data(saved_fp, saved_hint)
                source = State(state)
                dest = self._fire(trigger, source, verdict)
                reason = verdict.reason if dest is State.Prompted else None
                reason_value = None if reason is None else reason.value
                new_version = version + 1
                # The new row's columns in EVENT_COLUMNS order (no position yet), hashed as every writer and checker does.
                fields = hashed_fields(
                    (
                        None,
                        stream,
                        new_version,
                        trigger.value,
                        state,
                        dest.value,
                        reason_value,
                        data,
                        actor,
                        iso_utc(now),
                        None,
                        SCHEMA_VERSION,
                    )
                )
                digest = event_hash(head_hash, fields)
                stored_now = hot.time_param(now)
                unit.insert_event(
                    (
                        stream,
                        new_version,
                        trigger.value,
                        state,
                        dest.value,
                        reason_value,
                        hot.data_param(data),
                        actor,
                        stored_now,
                        SCHEMA_VERSION,
                        head_hash,
                        digest,
                    ),
                )
                moved = unit.move((dest.value, reason_value, new_version, digest, stored_now, stream, version))
                if moved != 1:
                    raise ConcurrencyConflict(
                        f"{stream} moved past version {version} while this command ran; nothing was written."
                    )
            return _logged(Outcome(stream, trigger, dest, reason, new_version, now), source, actor)

        return self._with_retries(trigger, stream, expected_version, once)

    def _check_allowed(
        self, stream: str, head: StreamHead | None, trigger: Trigger, expected_version: int | None
    ) -> None:
        version = 0 if head is None else head.version
        if expected_version is not None and version != expected_version:
            raise ConcurrencyConflict(
                f"{stream} is at version {version}, not the expected version {expected_version}; nothing was written."
            )
        try:
            state = State(head.state) if head is not None else initial_state()
        except ValueError:
            assert head is not None
            raise CorruptProjection(stream, f"state is stored as {shown(head.state)}, which is not a state.") from None
        allowed = _DECISIONS.allowed[state]
        if trigger not in allowed:
            raise IllegalTransition(
                stream,
                state.value,
                trigger.value,
                [s.value for s in _DECISIONS.sources[trigger]],
                [t.value for t in allowed],
            )

    def _check_allowed_now(self, stream: str, trigger: Trigger, expected_version: int | None) -> None:
        """Refuse an illegal trigger or a stale expected version before slow work (password hashing)
        or a recorded sign-in attempt."""
        _check_expected_version(expected_version)
        with self._storage.read() as unit:
            head, _ = unit.read_head(stream)
        self._check_allowed(stream, head, trigger, expected_version)

    def _prior_outcome(self, trigger: Trigger, stream: str, idempotency_key: str | None) -> Outcome | None:
        idempotency_key = inputs.check_idempotency_key(idempotency_key)
        if idempotency_key is None:
            return None
        now = self._now()
        with self._storage.read() as unit:
            prior = self._find_idempotent(unit, stream, idempotency_key)
            return None if prior is None else self._replayed(trigger, prior, unit, now)

    def _idempotency_digest(self, idempotency_key: str) -> str:
        if not self._idempotency_salt:
            raise StorageError(
                f"{self._db.shown} lacks the tables and settings of this keytrail version (it could not be "
                "upgraded when opened, being read-only); idempotency keys cannot be used on it."
            )
        return idempotency_digest(idempotency_key, self._idempotency_salt)

    def _find_idempotent(self, unit: CommandUnit, stream: str, idempotency_key: str) -> RecordedEvent | None:
        """The event of an earlier use of the caller's key: stored as its digest, or raw by older versions.

        A key shaped like a digest is looked up only as a digest, so a digest printed by an
        export cannot be sent back to replay the event it came from.
        """
        legacy = None if idempotency_key.startswith(IDEMPOTENCY_PREFIX) else idempotency_key
        return unit.find_idempotent(stream, self._idempotency_digest(idempotency_key), legacy=legacy)

    def _replayed(self, trigger: Trigger, prior: RecordedEvent, unit: CommandUnit, now: datetime) -> Outcome:
        """The first outcome again; a key again only if copy_key could hand it over at ``now``."""
        if prior.trigger != trigger.value:
            raise IdempotencyMismatch(
                f"The idempotency key was already used on {prior.stream_id} for {prior.trigger} "
                f"(version {prior.version}), not {trigger.value}."
            )
        issued = None
        if trigger in (Trigger.generate_key, Trigger.copy_key):
            key_id = prior.data.get("key_id")
            if type(key_id) is not str:
                raise CorruptEvent(
                    prior.stream_id,
                    prior.version,
                    f"data holds the key id {shown(key_id)}, not the id of the key this {prior.trigger} showed.",
                    position=prior.position,
                )
            head, _ = unit.read_head(prior.stream_id)
            account_id = None if head is None else head.account_id
            refusal = self.portal.reissue_refusal_in(
                unit.authority, key_id, prior.stream_id, now, account_id=account_id
            )
            if refusal is not None:
                raise type(refusal)(
                    f"The idempotency key was already used for {trigger.value} at version {prior.version} of "
                    f"{prior.stream_id}; the key cannot be shown again because {refusal}. Nothing was written."
                )
            issued = self.portal.reissue_in(unit.authority, key_id)
        return self._outcome(prior, issued, replayed=True)

    def _outcome(self, recorded: RecordedEvent, issued: IssuedKey | None, *, replayed: bool = False) -> Outcome:
        common: dict[str, Any] = {
            "stream": recorded.stream_id,
            "trigger": Trigger(recorded.trigger),
            "state": State(recorded.dest),
            "reason": None if recorded.reason is None else Reason(recorded.reason),
            "version": recorded.version,
            "occurred_at": recorded.occurred_at,
            "replayed": replayed,
        }
        if issued is not None:
            return KeyOutcome(
                **common, key=issued.key, key_id=issued.key_id, hint=issued.hint, expires_at=issued.expires_at
            )
        return Outcome(**common)
