"""Random onboardings against the invariants of the log, with the path model as the oracle for every step.

A hypothesis state machine drives several onboardings at once: every trigger in every state
(illegal ones included), keys that are never issued, revoked or past their expiry, time
moving, and idempotency keys sent again. After every step: replay equals the projection,
every hash chain verifies, versions are dense, the model of :mod:`keytrail.states.paths`
agrees with the engine, and no plaintext key or password is anywhere in the database.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from keytrail import Engine, Outcome, State, Trigger
from keytrail.errors import AuthenticationFailed, IdempotencyMismatch, IllegalTransition, KeytrailError, KeyUnusable
from keytrail.pgcluster import scratch_database
from keytrail.states import allowed_triggers
from keytrail.states.paths import Env, Move, Paste, Step, World, moves
from keytrail.testing import DRIVER_COMPANY, DRIVER_EMAIL, DRIVER_PASSWORD, DriveError, Driver
from tests.conftest import MovableClock
from tests.helpers import snapshot

STREAMS = ("store-a", "store-b")
KEY_LIFETIME = timedelta(days=30)
# Small time steps add up to less than a key lifetime, so only the explicit expiry step expires keys.
SMALL_STEPS_BUDGET = timedelta(days=20)
COMMANDS = [Step(t) for t in Trigger if t is not Trigger.save_config] + [
    Step(Trigger.save_config, paste) for paste in Paste
]


class Onboardings(RuleBasedStateMachine):
    """Several onboardings on one fresh database per example: SQLite, or a scratch database on ``server``."""

    server: ClassVar[str | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.stack = ExitStack()
        url = self.stack.enter_context(_sqlite() if self.server is None else scratch_database(self.server))
        self.clock = MovableClock()
        self.engine = self.stack.enter_context(Engine.open(url, clock=self.clock, key_lifetime=KEY_LIFETIME))
        self.driver = Driver(self.engine, clock=self.clock)
        # The driver's account exists up front, so that no refused command can be what created it.
        self.engine.portal.create_account(DRIVER_EMAIL, DRIVER_PASSWORD, company=DRIVER_COMPANY)
        self.worlds: dict[str, World] = dict.fromkeys(STREAMS, World.initial())
        self.first_outcomes: dict[tuple[str, str], Outcome] = {}
        self.small_steps = timedelta(0)
        # When each onboarding's own password sign-in ends (the model only knows live or not).
        self.session_ends: dict[str, datetime] = {}

    def teardown(self) -> None:
        self.stack.close()

    def _refused(
        self,
        stream: str,
        step: Step,
        idempotency_key: str | None,
        error: type[Exception] | tuple[type[Exception], ...],
    ) -> None:
        """The command raises ``error`` and no row of any table changes."""
        event(f"refused: {error.__name__ if isinstance(error, type) else 'impossible with these keys'}")
        before = snapshot(self.engine)
        with pytest.raises(error):
            self.driver.step(stream, step, idempotency_key=idempotency_key)
        assert snapshot(self.engine) == before, f"{step} on {stream} was refused but wrote something"

    @rule(
        stream=st.sampled_from(STREAMS),
        step=st.sampled_from(COMMANDS),
        idempotency_key=st.sampled_from([None, None, "req-1", "req-2"]),
    )
    def command(self, stream: str, step: Step, idempotency_key: str | None) -> None:
        world = self.worlds[stream]
        trigger = step.trigger
        assert trigger is not None
        if step.paste is Paste.key_in_hand and world.hand is None:
            # The driver has no key to paste: it refuses before the engine is asked anything.
            self._refused(stream, step, idempotency_key, DriveError)
            return
        first = self.first_outcomes.get((stream, idempotency_key)) if idempotency_key else None
        if first is not None:
            if first.trigger is not trigger:
                self._refused(stream, step, idempotency_key, IdempotencyMismatch)
                return
            if not self._shown_again(stream, first):
                # A retry hands out no key that copy_key could not hand out now.
                self._refused(stream, step, idempotency_key, (KeyUnusable, AuthenticationFailed))
                return
            before = snapshot(self.engine)
            again = self.driver.step(stream, step, idempotency_key=idempotency_key)
            assert again is not None and again.replayed
            assert (again.version, again.state, again.reason) == (first.version, first.state, first.reason)
            assert snapshot(self.engine) == before, "a repeated idempotency key wrote something"
            event("replayed an idempotency key")
            return
        if trigger not in allowed_triggers(world.state):
            self._refused(stream, step, idempotency_key, IllegalTransition)
            return
        predicted = moves(world, step)
        if not predicted:  # legal here, but the keys make it impossible (nothing to copy, paste or keep)
            self._refused(stream, step, idempotency_key, (KeytrailError, DriveError))
            return
        self._take(stream, predicted[0], idempotency_key)

    def _shown_again(self, stream: str, first: Outcome) -> bool:
        """Whether a retry of ``first`` may show its key now: a live session of the key's account, a usable key."""
        key_id = getattr(first, "key_id", None)
        if key_id is None:
            return True
        key = self.engine.portal.key_info(key_id)
        signed_in_to = self.engine.status(stream).account_id
        usable = key.status(self.clock.now) == "active"
        return self.worlds[stream].session and key.account_id == signed_in_to and usable

    def _take(self, stream: str, move: Move, idempotency_key: str | None) -> None:
        """Carry out a step the model says can happen, and check it landed where the model said."""
        world, step = self.worlds[stream], move.step
        if step.action is Env.expire_keys:
            self.keys_expire()
            return
        outcome = self.driver.step(stream, step, idempotency_key=idempotency_key)
        self.worlds[stream] = move.world
        if isinstance(step.action, Env):
            event(f"environment: {step}")
            return
        assert outcome is not None and not outcome.replayed
        assert (outcome.state, outcome.reason) == (step.expect, move.outcome and move.outcome.reason), (
            f"{step.action} on {stream} in {world}: the model said {step}"
        )
        event(f"took {move.transition} ({move.outcome})" if move.outcome else "took an unguarded transition")
        if step.action in (Trigger.sign_in, Trigger.register):
            self.session_ends[stream] = self.clock.now + self.engine.portal.session_lifetime
        if idempotency_key is not None:
            self.first_outcomes[(stream, idempotency_key)] = outcome

    @rule(stream=st.sampled_from(STREAMS), data=st.data())
    def follow_the_flow(self, stream: str, data: st.DataObject) -> None:
        """A step the model says can happen here: the onboarding goes deep, not just refused."""
        options = moves(self.worlds[stream])
        move = data.draw(st.sampled_from(options), label="step")
        idempotency_key = None if isinstance(move.step.action, Env) else data.draw(st.sampled_from([None, "req-3"]))
        if idempotency_key is not None and (stream, idempotency_key) in self.first_outcomes:
            idempotency_key = None
        self._take(stream, move, idempotency_key)

    @rule(stream=st.sampled_from(STREAMS), data=st.data())
    def keep_going(self, stream: str, data: st.DataObject) -> None:
        """The same rule again, so that following the flow is drawn as often as everything else together."""
        self.follow_the_flow(stream, data)

    @rule()
    def keys_expire(self) -> None:
        """Time jumps past every key's expiry, for every onboarding at once."""
        self.driver.step(STREAMS[0], Step(Env.expire_keys))
        self.worlds = {stream: world.with_keys_expired() for stream, world in self.worlds.items()}
        self.small_steps = timedelta(0)

    @rule(minutes=st.integers(min_value=1, max_value=600))
    def time_passes(self, minutes: int) -> None:
        """A little time passes: sessions may end, no key expires."""
        if self.small_steps + timedelta(minutes=minutes) < SMALL_STEPS_BUDGET:
            self.clock.advance(minutes=minutes)
            self.small_steps += timedelta(minutes=minutes)
            for stream, ends in self.session_ends.items():
                if self.clock.now >= ends:
                    self.worlds[stream] = replace(self.worlds[stream], session=False)

    @invariant()
    def the_log_is_sound(self) -> None:
        report = self.engine.verify()
        assert report.ok, [str(p) for p in report.problems]
        for stream, world in self.worlds.items():
            events = self.engine.history(stream) if world.state is not State.Unverified else []
            if not events:
                assert [h.stream for h in self.engine.streams() if h.stream == stream] == []
                continue
            assert [e.version for e in events] == list(range(1, len(events) + 1))
            replay, head = self.engine.replay(stream), self.engine.status(stream)
            reason = None if replay.reason is None else replay.reason.value
            assert (replay.state.value, reason, replay.version, replay.head_hash) == (
                head.state,
                head.reason,
                head.version,
                head.head_hash,
            )
            assert replay.ok and replay.state is world.state

    @invariant()
    def no_plaintext_secret_in_the_database(self) -> None:
        rows = repr(snapshot(self.engine))
        leaked = [secret[-4:] for secret in self.driver.plaintexts if secret in rows]
        assert leaked == [], f"plaintext secrets ending in {leaked} are in the database"


@contextmanager
def _sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="keytrail-hypothesis-") as folder:
        yield f"sqlite:///{folder}/keytrail.db"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_random_onboardings_keep_every_invariant(backend: str, request: pytest.FixtureRequest) -> None:
    """Random commands, refusals, revocations, expiries and retries never break the log or surprise the model."""

    class OnBackend(Onboardings):
        server = None if backend == "sqlite" else request.getfixturevalue("postgres_server")

    run_state_machine_as_test(
        OnBackend,
        settings=settings(
            max_examples=30 if backend == "sqlite" else 8,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
