"""The engine's one command path: every command reads, decides and appends through :meth:`Runner._run`.

A command reads what it decides over in one statement of its write transaction (the stream's
projection, its saved key, the authority's record of that key, an earlier use of its
idempotency key), checks the trigger against the machine's compiled decision table, performs
its side effects in the key authority and the store configuration, and appends the event and
the new projection. Nothing is written when any step refuses.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from keytrail import inputs
from keytrail.crypto import SecretBox
from keytrail.engine.audit import carried_ids
from keytrail.engine.results import KeyOutcome, Outcome
from keytrail.errors import (
    ConcurrencyConflict,
    CorruptEvent,
    CorruptProjection,
    IdempotencyMismatch,
    IllegalTransition,
    InvalidInput,
    StorageError,
)
from keytrail.events import IDEMPOTENCY_PREFIX, idempotency_digest, iso_utc
from keytrail.logs import get_logger
from keytrail.persistence import Database, PendingEvent, RecordedEvent, SavedConfig, StreamHead
from keytrail.persistence.commands import Loaded
from keytrail.persistence.stored import shown
from keytrail.persistence.units import CommandUnit, Storage
from keytrail.portal import IssuedKey, KeyAuthority, KeyVerifier, SavedKey, TransactionalKeyVerifier, Verdict
from keytrail.states import Reason, State, Trigger, initial_state
from keytrail.states.machine import compiled

__all__ = ["Runner", "Step", "check_expected_version"]

_log = get_logger("keytrail.engine")
_VERIFYING = (Trigger.access, Trigger.proceed)
# The one compiled machine: every command's legality check and destination are lookups in it.
_DECISIONS = compiled()
# A stored state's State, by a dict lookup (an Enum call costs a page view a microsecond).
_STATES = {state.value: state for state in State}


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
class Step:
    """What a command's side effects produced, to be recorded in its event."""

    data: dict[str, Any] = field(default_factory=dict)
    verdict: Verdict | None = None
    issued: IssuedKey | None = None


def check_expected_version(expected_version: int | None) -> None:
    """``expected_version`` is a whole number of at least 0 (0: not started), or None."""
    if expected_version is not None and (
        type(expected_version) is not int or expected_version < 0  # bool is an int, not a version
    ):
        raise InvalidInput(f"expected_version must be a whole number of at least 0, not {expected_version!r}.")


class Runner:
    """The command path of :class:`~keytrail.engine.Engine`, which provides what is declared here."""

    _db: Database
    _storage: Storage
    _box: SecretBox
    _clock: Callable[[], datetime]
    _retries: int
    # Keys the digests of idempotency keys (see idempotency_digest); "" only where nothing can be written.
    _idempotency_salt: str
    portal: KeyAuthority
    verifier: KeyVerifier
    # The verifier last seen and, if it verifies inside the transaction, itself (see _in_transaction).
    _verifier_kind: tuple[KeyVerifier, TransactionalKeyVerifier | None] | None = None

    def _in_transaction(self) -> TransactionalKeyVerifier | None:
        """The verifier, when it is asked inside the command's transaction; None for a remote one.

        Asked once per verifier: an ``isinstance`` check against a runtime protocol costs more
        than the rest of a page view's decision.
        """
        verifier, kind = self._verifier_kind or (None, None)
        if verifier is not self.verifier:
            verifier = self.verifier
            kind = verifier if isinstance(verifier, TransactionalKeyVerifier) else None
            self._verifier_kind = (verifier, kind)
        return kind

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

    def _saved_key(self, config: SavedConfig | None) -> SavedKey | None:
        if config is None:
            return None
        box, stream = self._box, config.stream_id
        return SavedKey(
            config.fingerprint, config.hint, lambda: box.open(config.ciphertext, what=f"The saved key of {stream}")
        )

    def _verify_step(self, unit: CommandUnit, loaded: Loaded, now: datetime, verdict: Verdict | None = None) -> Step:
        """Ask the verifier in the transaction, unless a remote verdict was already fetched outside it.

        The embedded authority answers from the key record the command's joined read brought.
        """
        saved = self._saved_key(loaded.config)
        if verdict is None:
            verifier = self._in_transaction()
            assert verifier is not None
            verdict = verifier.verify_in(unit.authority, saved, now)
        if saved is None:
            return Step(verdict.event_data(None, None), verdict=verdict)
        return Step(verdict.event_data(saved.fingerprint, saved.hint), verdict=verdict)

    def _run(
        self,
        trigger: Trigger,
        stream: str,
        actor: str | None,
        idempotency_key: str | None,
        expected_version: int | None,
        step: Callable[[CommandUnit, Loaded, datetime], Step],
    ) -> Outcome:
        """Every command's one path: one write transaction that reads what the command decides over in
        one statement, lets the engine decide, and appends the event with its projection."""
        stream = inputs.check_stream_id(stream)
        actor = inputs.check_actor(actor)
        lookup = self._idempotency_lookup(idempotency_key)
        check_expected_version(expected_version)
        remote = trigger in _VERIFYING and self._in_transaction() is None

        def once() -> Outcome:
            now: datetime | None = None  # a remote verdict's instant; otherwise read inside the transaction
            active_step = step
            remote_fingerprint: str | None = None
            if remote:
                now = self._now()
                # A remote authority is asked outside the transaction, so the write lock is never
                # held across the network; the transaction then checks the saved key is unchanged.
                with self._storage.read() as unit:
                    loaded = unit.load(stream, lookup)
                    if loaded.prior is not None:
                        return self._replayed(trigger, loaded, unit, now)
                self._check_allowed(stream, loaded.head, trigger, expected_version)
                now = self._not_before(stream, now, loaded.head.updated_at if loaded.head else None)
                verdict = self.verifier.verify(self._saved_key(loaded.config), now)
                remote_fingerprint = loaded.config.fingerprint if loaded.config else None
                active_step = partial(self._verify_step, verdict=verdict)

            def in_transaction(unit: CommandUnit) -> tuple[Outcome, State | None]:
                """The command inside its write transaction: its outcome, and the state it left (None: replayed)."""
                nonlocal now
                loaded = unit.load(stream, lookup)  # locks the stream first: commands on one stream queue here
                if loaded.prior is not None:
                    return self._replayed(trigger, loaded, unit, now or self._now()), None
                head, config = loaded.head, loaded.config
                source = self._check_allowed(stream, head, trigger, expected_version)
                previous = head.updated_at if head else None
                if now is not None:  # remote
                    if remote_fingerprint != (config.fingerprint if config else None):
                        raise ConcurrencyConflict(f"The saved key of {stream} changed while it was being verified.")
                    if previous is not None and previous > now:  # the verdict was taken at an earlier instant
                        raise ConcurrencyConflict(f"{stream} moved on while its key was being verified.")
                else:  # the clock read in the transaction, so that a command that waited for it is dated when it ran
                    now = self._not_before(stream, self._now(), previous)
                done = active_step(unit, loaded, now)
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
                        None if lookup is None else lookup[0],
                        account_id,
                        key_id,
                    ),
                )
                if done.issued is None:  # the common case, built from what was decided rather than parsed back
                    return Outcome(stream, trigger, dest, reason, recorded.version, now), source
                return self._outcome(recorded, done.issued), source

            outcome, source = self._storage.commit(in_transaction)
            return outcome if source is None else _logged(outcome, source, actor)

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

    def _check_allowed(
        self, stream: str, head: StreamHead | None, trigger: Trigger, expected_version: int | None
    ) -> State:
        """The stream's state, once the trigger is allowed in it and the expected version (if any) is its version."""
        version = 0 if head is None else head.version
        if expected_version is not None and version != expected_version:
            raise ConcurrencyConflict(
                f"{stream} is at version {version}, not the expected version {expected_version}; nothing was written."
            )
        state = _STATES.get(head.state) if head is not None else initial_state()
        if state is None:
            assert head is not None
            raise CorruptProjection(stream, f"state is stored as {shown(head.state)}, which is not a state.")
        allowed = _DECISIONS.allowed[state]
        if trigger not in allowed:
            raise IllegalTransition(
                stream,
                state.value,
                trigger.value,
                [s.value for s in _DECISIONS.sources[trigger]],
                [t.value for t in allowed],
            )
        return state

    def _before_slow_work(
        self, trigger: Trigger, stream: str, idempotency_key: str | None, expected_version: int | None
    ) -> Outcome | None:
        """An earlier use's outcome, or the refusal of an illegal trigger or a stale expected version,
        before slow work (password hashing) or a recorded sign-in attempt; one read."""
        lookup = self._idempotency_lookup(idempotency_key)
        check_expected_version(expected_version)
        now = self._now()
        with self._storage.read() as unit:
            loaded = unit.load(stream, lookup)
            if loaded.prior is not None:
                return self._replayed(trigger, loaded, unit, now)
        self._check_allowed(stream, loaded.head, trigger, expected_version)
        return None

    def _idempotency_lookup(self, idempotency_key: str | None) -> tuple[str, str] | None:
        """How an idempotency key is stored: its digest first, then the raw key as versions before
        digests stored it (the digest again for a key shaped like a digest, so that a digest printed
        by an export cannot be sent back to replay the event it came from). None without a key."""
        idempotency_key = inputs.check_idempotency_key(idempotency_key)
        if idempotency_key is None:
            return None
        if not self._idempotency_salt:
            raise StorageError(
                f"{self._db.shown} lacks the tables and settings of this keytrail version (it could not be "
                "upgraded when opened, being read-only); idempotency keys cannot be used on it."
            )
        digest = idempotency_digest(idempotency_key, self._idempotency_salt)
        return digest, digest if idempotency_key.startswith(IDEMPOTENCY_PREFIX) else idempotency_key

    def _replayed(self, trigger: Trigger, loaded: Loaded, unit: CommandUnit, now: datetime) -> Outcome:
        """The first outcome again; a key again only if copy_key could hand it over at ``now``."""
        prior = loaded.prior
        assert prior is not None
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
            account_id = None if loaded.head is None else loaded.head.account_id
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
