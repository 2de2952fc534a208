"""The step driver: carries out a readable step list on a real engine, with real keys and moved time."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from keytrail.errors import KeytrailError, UnknownOnboarding
from keytrail.states import State, Trigger
from keytrail.states.paths import Env, Paste, Path, Step, Verification, parse_step
from keytrail.testing.clock import Advancing
from keytrail.testing.report import history_of, path_table

if TYPE_CHECKING:
    from keytrail.engine import Engine, OnboardingStatus, Outcome

__all__ = ["DRIVER_COMPANY", "DRIVER_EMAIL", "DRIVER_PASSWORD", "DriveError", "Driver", "drive"]

DRIVER_EMAIL = "admin@merchant.test"
DRIVER_PASSWORD = "keytrail-driver-password"  # noqa: S105 - a test account's password, by design public
DRIVER_COMPANY = "Merchant"
KEY_DESCRIPTION = "Amazon Sales Channel"
MASK = "********"


class DriveError(AssertionError):
    """A step cannot be carried out, or did not lead where the step list said."""


class Driver:
    """Carries out steps on an engine with real keys: real sign-ins, real revocation, moved time.

    ``sign_in`` signs in as the account the onboarding last signed in to or registered, else as
    ``email`` (created with ``password`` when missing); ``register`` creates a fresh account;
    ``copy_key`` copies the key in hand (the one just generated, or by its id from SignedIn);
    ``save_config`` pastes what the step says (the key in hand unless told otherwise).
    ``plaintexts`` collects every key and password the driver handled, for secrecy checks.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Advancing | None = None,
        email: str = DRIVER_EMAIL,
        password: str = DRIVER_PASSWORD,
        actor: str | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.email = email
        self.password = password
        self.actor = actor
        self.plaintexts: set[str] = {password}

    # The few reads and writes below reach past the engine's commands on purpose: they are what
    # happens outside keytrail (a config written by hand, the authority's own records).

    def _read(self, stream: str) -> OnboardingStatus | None:
        try:
            return self.engine.status(stream)
        except UnknownOnboarding:
            return None

    def _now(self) -> datetime:
        return self.engine.now()

    def _ensure_account(self) -> None:
        if self.engine.portal.find_account(self.email) is None:
            self.engine.portal.create_account(self.email, self.password, company=DRIVER_COMPANY)

    def _account_email(self, head: OnboardingStatus | None) -> str:
        if head is not None and head.account_id is not None:
            account = self.engine.portal.account(head.account_id)
            assert account is not None  # the account its events carry
            return account.email
        self._ensure_account()
        return self.email

    def _key_in_hand(self, stream: str, head: OnboardingStatus | None) -> str:
        if head is None or head.key_id is None:
            raise DriveError(f"{stream} has no key in hand: no key was generated or copied on it yet.")
        return self.engine.portal.reissue(head.key_id).key

    def _advance(self, delta: timedelta) -> None:
        clock = self.clock
        if clock is None:
            engine_clock: Any = self.engine.clock
            clock = engine_clock if callable(getattr(engine_clock, "advance", None)) else None
        if clock is None:
            raise DriveError(
                "Moving time needs a clock with advance(): open the engine with clock=keytrail_clock "
                "(keytrail_engine does) or pass clock= to drive()."
            )
        clock.advance(delta)

    def _environment(self, stream: str, env: Env) -> None:
        if env is Env.expire_keys:
            # Every key issued so far expires at or before now + key_lifetime.
            self._advance(self.engine.portal.key_lifetime)
        elif env is Env.revoke_saved_key:
            _, verdict = self.engine.admin.saved_key_verdict(stream)
            if verdict.key_id is None:
                raise DriveError(f"{stream} has no saved key the authority issued, so there is nothing to revoke.")
            self.engine.portal.revoke_key(verdict.key_id)
        else:
            # A live key saved in the store configuration without keytrail (bin/magento config:set).
            self._ensure_account()
            account = self.engine.portal.find_account(self.email)
            assert account is not None
            issued = self.engine.portal.generate_key(account.account_id, "Saved outside keytrail")
            self.plaintexts.add(issued.key)
            self.engine.admin.put_saved_key(stream, issued.key)

    def _paste(self, stream: str, head: OnboardingStatus | None, paste: Paste) -> str:
        if paste is Paste.asterisks:
            return MASK
        if paste is Paste.never_issued:
            key = "kt_never_issued_" + secrets.token_hex(12)
            self.plaintexts.add(key)
            return key
        return self._key_in_hand(stream, head)

    def _command(self, stream: str, step: Step, trigger: Trigger, options: dict[str, Any]) -> Outcome:
        engine = self.engine
        head = self._read(stream)
        if trigger is Trigger.sign_in:
            return engine.sign_in(stream, email=self._account_email(head), password=self.password, **options)
        if trigger is Trigger.register:
            email = f"registered-{uuid.uuid4().hex[:12]}@merchant.test"
            return engine.register(stream, email=email, password=self.password, company=DRIVER_COMPANY, **options)
        if trigger is Trigger.generate_key:
            return engine.generate_key(stream, description=KEY_DESCRIPTION, **options)
        if trigger is Trigger.copy_key:
            from_hand = head is not None and head.state is not State.KeyGenerated and head.key_id is not None
            key_id = head.key_id if from_hand and head is not None else None
            return engine.copy_key(stream, key_id=key_id, **options)
        if trigger is Trigger.save_config:
            return engine.save_config(stream, key=self._paste(stream, head, step.paste or Paste.key_in_hand), **options)
        command = getattr(engine, trigger.value)  # access, proceed, and triggers added later
        outcome: Outcome = command(stream, **options)
        return outcome

    def step(
        self, stream: str, step: str | Trigger | Env | Step, *, idempotency_key: str | None = None
    ) -> Outcome | None:
        """Carry out one step; returns the command's outcome (None for an environment step). Checks nothing."""
        parsed = parse_step(step)
        if isinstance(parsed.action, Env):
            self._environment(stream, parsed.action)
            return None
        options: dict[str, Any] = {"actor": self.actor, "idempotency_key": idempotency_key}
        outcome = self._command(stream, parsed, parsed.action, options)
        key = getattr(outcome, "key", None)
        if key:
            self.plaintexts.add(key)
        return outcome

    def run(self, stream: str, steps: Iterable[str | Trigger | Env | Step] | Path) -> list[Outcome]:
        """Carry out the steps in order, checking each ``-> State (outcome)``; returns the commands' outcomes."""
        __tracebackhide__ = True
        try:
            parsed = [parse_step(s) for s in (steps.steps if isinstance(steps, Path) else steps)]
        except (ValueError, TypeError) as exc:  # a step list that cannot be read: the sentence says why
            raise exc.with_traceback(None)  # noqa: B904 - the same exception, re-raised without its frames
        outcomes: list[Outcome] = []
        for number, step in enumerate(parsed, 1):
            try:
                outcome = self.step(stream, step)
            except (KeytrailError, DriveError) as exc:
                # An expected refusal (an illegal trigger, a wrong password, a step that cannot be carried
                # out): its sentence and the path say it all, so the report drops keytrail's own frames.
                exc.add_note(f"while driving {stream!r}: step {number} of {len(parsed)}, {str(step)!r}")
                exc.add_note(self._path_so_far(stream))
                raise exc.with_traceback(None)  # noqa: B904 - the same exception, re-raised without its frames
            except Exception as exc:
                exc.add_note(f"while driving {stream!r}: step {number} of {len(parsed)}, {str(step)!r}")
                raise
            if outcome is None:
                continue
            outcomes.append(outcome)
            if step.expect is None:
                continue
            reached = Verification.valid if outcome.reason is None else Verification(outcome.reason.value)
            if outcome.state is not step.expect or (step.outcome is not None and reached is not step.outcome):
                got = f"{outcome.state.value}" + (f" ({outcome.reason.value})" if outcome.reason else "")
                raise DriveError(
                    f"Step {number} of {len(parsed)}, {str(step)!r}, led {stream!r} to {got}.\n\n"
                    + self._path_so_far(stream)
                )
        return outcomes

    def _path_so_far(self, stream: str) -> str:
        try:
            events = history_of(self.engine, stream)
        except KeytrailError as exc:  # the database itself failed: the error says so, no table
            return f"(The path cannot be read: {exc})"
        _, table = path_table(None, events, mark=len(events))
        return f"What the onboarding went through:\n{table}"


def drive(
    engine: Engine,
    stream: str,
    steps: Iterable[str | Trigger | Env | Step] | Path,
    *,
    clock: Advancing | None = None,
    actor: str | None = None,
) -> list[Outcome]:
    """Run a readable list of steps on one onboarding; returns the outcomes of its commands, in order.

    Each step is a trigger (``"access"``), optionally with where it must lead
    (``"access -> Prompted (expired)"``), ``"save_config(never issued)"`` /
    ``"save_config(asterisks)"``, or an environment step: ``"revoke the saved key"``,
    ``"advance time past expiry"``, ``"save a live key outside keytrail"``. A generated
    :class:`~keytrail.states.paths.Path` runs as it is. Time moves on ``clock``, by default the
    engine's own clock when it has ``advance()`` (as ``keytrail_engine``'s does).
    """
    __tracebackhide__ = True
    return Driver(engine, clock=clock, actor=actor).run(stream, steps)
