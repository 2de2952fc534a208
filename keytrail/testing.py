"""keytrail's pytest plugin: fixtures, a step driver and path assertions for onboarding tests.

Installing keytrail registers this module with pytest (the ``pytest11`` entry point), so
its fixtures are there in any project's tests; ``-p no:keytrail`` turns it off.

Fixtures:

- ``keytrail_clock``: a :class:`FrozenClock`: time frozen with freezegun, moved by hand with
  ``advance(days=31)`` or ``set(instant)``.
- ``keytrail_engine``: a fresh :class:`~keytrail.Engine` on a temporary SQLite file, whose
  clock is ``keytrail_clock``. With a PostgreSQL server configured (``--keytrail-postgres``,
  the ``keytrail_postgres`` ini option, or ``KEYTRAIL_TEST_POSTGRES_URL``), every test that
  uses it runs on both databases.
- ``keytrail_engine_options``: keyword arguments for ``Engine.open`` (override it, e.g. to
  shorten ``key_lifetime``).

Helpers: :func:`drive` runs a readable list of steps (triggers, and the environment steps
that make keys revoked, expired or never issued); :func:`assert_path` checks the states an
onboarding went through and shows expected and actual side by side when they differ. The
path generators of :mod:`keytrail.states.paths` are re-exported here.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from keytrail.engine import Engine, OnboardingStatus, Outcome
from keytrail.errors import UnknownOnboarding
from keytrail.states import State, Trigger, initial_state
from keytrail.states.paths import (
    Env,
    Paste,
    Path,
    Step,
    Transition,
    Verification,
    cover_transitions,
    parse_step,
    path_to,
    shortest_paths,
    simple_paths,
    walk,
)

if TYPE_CHECKING:
    from keytrail.engine import Event

__all__ = [
    "DEFAULT_START",
    "DRIVER_EMAIL",
    "DRIVER_PASSWORD",
    "DriveError",
    "Driver",
    "Env",
    "FrozenClock",
    "Paste",
    "Path",
    "Step",
    "Transition",
    "Verification",
    "assert_path",
    "cover_transitions",
    "drive",
    "frozen_clock",
    "parse_step",
    "path_of",
    "path_to",
    "shortest_paths",
    "simple_paths",
    "walk",
]

DEFAULT_START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
DRIVER_EMAIL = "admin@merchant.test"
DRIVER_PASSWORD = "keytrail-driver-password"  # noqa: S105 - a test account's password, by design public
DRIVER_COMPANY = "Merchant"
KEY_DESCRIPTION = "Amazon Sales Channel"
MASK = "********"
POSTGRES_ENV = "KEYTRAIL_TEST_POSTGRES_URL"


# -- time -------------------------------------------------------------------------------------


class FrozenClock:
    """Frozen time (freezegun) as an engine clock: calling it returns now, aware UTC; only the test moves it."""

    def __init__(self, frozen: Any) -> None:
        self._frozen = frozen

    def __call__(self) -> datetime:
        return self.now

    def __repr__(self) -> str:
        return f"FrozenClock({self.now.isoformat()})"

    @property
    def now(self) -> datetime:
        """The frozen instant."""
        instant: datetime = self._frozen()
        return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move time forward by ``delta`` or by ``timedelta`` keywords (``advance(days=31)``); returns the new now."""
        if (delta is None) == (not kwargs):
            raise TypeError("advance() takes a timedelta or timedelta keywords such as days=31, not both or neither.")
        step = delta if delta is not None else timedelta(**kwargs)
        if not isinstance(step, timedelta):
            raise TypeError(f"advance() takes a timedelta, not {type(step).__name__}.")
        self._frozen.tick(step)
        return self.now

    def set(self, instant: datetime | str) -> datetime:
        """Jump to ``instant`` (aware, or an ISO 8601 string with its offset), forward or back; returns it."""
        when = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"set() needs a timezone-aware instant, not {when.isoformat()}: keytrail keeps UTC times.")
        self._frozen.move_to(when.astimezone(UTC))
        return self.now


@contextmanager
def frozen_clock(start: datetime | str = DEFAULT_START) -> Iterator[FrozenClock]:
    """Freeze time at ``start`` (freezegun) for the ``with`` block; what ``keytrail_clock`` uses."""
    try:
        from freezegun import freeze_time
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError("keytrail_clock and frozen_clock need freezegun: pip install freezegun") from None
    when = datetime.fromisoformat(start) if isinstance(start, str) else start
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"frozen_clock() needs a timezone-aware start, not {when.isoformat()}.")
    with freeze_time(when.astimezone(UTC)) as frozen:
        yield FrozenClock(frozen)


class _Advancing(Protocol):
    def advance(self, delta: timedelta) -> object: ...


# -- reading an onboarding ----------------------------------------------------------------------


def _history(engine: Engine, stream: str) -> list[Event]:
    try:
        return engine.history(stream)
    except UnknownOnboarding:
        return []


def path_of(engine: Engine, stream: str) -> list[State]:
    """The states the onboarding went through, starting with Unverified (just that for an unknown onboarding)."""
    return [initial_state(), *(event.dest for event in _history(engine, stream))]


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _side_by_side(
    expected: Sequence[State] | None, events: Sequence[Event], mark: int | None = None
) -> tuple[int | None, str]:
    """A table of expected and actual states with the first difference marked, and the events that led there.

    Without ``expected``, just the actual path, with row ``mark`` marked.
    """
    actual = [initial_state(), *(e.dest for e in events)]
    first = mark
    if expected is not None:
        first = next((i for i, (a, b) in enumerate(zip(expected, actual, strict=False)) if a is not b), None)
        if first is None and len(expected) != len(actual):
            first = min(len(expected), len(actual))
    want = list(expected or [])
    rows: list[tuple[str, ...]] = [("", "step", "expected", "actual", "trigger", "reason", "at")]
    for i in range(max(len(want), len(actual))):
        event = events[i - 1] if 0 < i <= len(events) else None
        rows.append(
            (
                ">" if i == first else "",
                str(i),
                want[i].value if i < len(want) else "-",
                actual[i].value if i < len(actual) else "-",
                "(start)" if i == 0 else (event.trigger.value if event else ""),
                event.reason.value if event and event.reason else "",
                _when(event.occurred_at) if event else "",
            )
        )
    if expected is None:
        rows = [row[:2] + row[3:] for row in rows]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return first, "\n".join(lines)


def assert_path(engine: Engine, stream: str, expected: Iterable[State | str]) -> None:
    """Pass when the onboarding went through exactly ``expected`` (Unverified first); else show both, side by side."""
    __tracebackhide__ = True
    want = [State(s) for s in expected]
    events = _history(engine, stream)
    first, table = _side_by_side(want, events)
    if first is None:
        return
    message = [
        f"The onboarding {stream!r} did not go through the expected states; the first difference is at step {first}."
    ]
    if want and want[0] is not initial_state():
        message.append(f"(A path starts at {initial_state().value}, the state before the first event.)")
    raise AssertionError("\n".join([*message, "", table]))


# -- driving ----------------------------------------------------------------------------------


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
        clock: _Advancing | None = None,
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
        parsed = [parse_step(s) for s in (steps.steps if isinstance(steps, Path) else steps)]
        outcomes: list[Outcome] = []
        for number, step in enumerate(parsed, 1):
            try:
                outcome = self.step(stream, step)
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
                events = _history(self.engine, stream)
                _, table = _side_by_side(None, events, mark=len(events))
                raise DriveError(
                    f"Step {number} of {len(parsed)}, {str(step)!r}, led {stream!r} to {got}.\n\n"
                    f"What the onboarding went through:\n{table}"
                )
        return outcomes


def drive(
    engine: Engine,
    stream: str,
    steps: Iterable[str | Trigger | Env | Step] | Path,
    *,
    clock: _Advancing | None = None,
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


# -- the pytest plugin ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keytrail", "keytrail onboarding tests")
    group.addoption(
        "--keytrail-postgres",
        metavar="URL",
        default=None,
        help=(
            "also run keytrail_engine tests on PostgreSQL: a server URL whose user may CREATE DATABASE, or 'start' "
            f"for a throwaway local cluster (needs initdb and pg_ctl). Default: ini keytrail_postgres, then ${POSTGRES_ENV}."
        ),
    )
    parser.addini("keytrail_postgres", "PostgreSQL server URL (or 'start') for keytrail_engine tests", default="")


def _postgres_setting(config: pytest.Config) -> str:
    option = config.getoption("keytrail_postgres", default=None)
    ini = config.getini("keytrail_postgres")
    return str(option or ini or os.environ.get(POSTGRES_ENV, "")).strip()


def _parametrized_by_test(metafunc: pytest.Metafunc, name: str) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        listed = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if name in listed:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With PostgreSQL configured, tests using keytrail_engine run once per database."""
    if "keytrail_backend" not in metafunc.fixturenames or _parametrized_by_test(metafunc, "keytrail_backend"):
        return
    if _postgres_setting(metafunc.config):
        metafunc.parametrize("keytrail_backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session")
def keytrail_postgres_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """The configured PostgreSQL server URL, or a throwaway cluster started for the session ('start')."""
    setting = _postgres_setting(pytestconfig)
    if not setting:
        pytest.fail(f"No PostgreSQL server is configured: pass --keytrail-postgres=URL or set {POSTGRES_ENV}.")
    if setting != "start":
        yield setting
        return
    from keytrail.pgcluster import PostgresCluster, PostgresUnavailable

    try:
        cluster = PostgresCluster.start()
    except PostgresUnavailable as exc:
        pytest.fail(f"--keytrail-postgres=start could not start PostgreSQL: {exc}")
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def keytrail_backend(request: pytest.FixtureRequest) -> str:
    """The database keytrail_engine runs on: 'sqlite', or 'postgresql' when the test is parametrized so."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def keytrail_database_url(
    keytrail_backend: str, tmp_path: FilePath, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh, empty database: a SQLite file in tmp_path, or a scratch database on the PostgreSQL server."""
    if keytrail_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'keytrail.db'}"
        return
    from keytrail.pgcluster import scratch_database

    server = request.getfixturevalue("keytrail_postgres_server")
    # A server database keeps its encryption key file in the data folder: keep it in tmp_path.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with scratch_database(server) as url:
        yield url


@pytest.fixture
def keytrail_engine_options() -> dict[str, Any]:
    """Keyword arguments for Engine.open; override this fixture to change them (e.g. key_lifetime)."""
    return {}


@pytest.fixture
def keytrail_clock() -> Iterator[FrozenClock]:
    """Time frozen at 2026-01-01 09:00 UTC (freezegun) for the test; move it with advance() or set()."""
    with frozen_clock() as clock:
        yield clock


@pytest.fixture
def keytrail_engine(
    keytrail_database_url: str, keytrail_clock: FrozenClock, keytrail_engine_options: dict[str, Any]
) -> Iterator[Engine]:
    """A fresh engine on an empty database, whose clock is keytrail_clock; closed after the test."""
    options = {"clock": keytrail_clock, **keytrail_engine_options}
    engine = Engine.open(keytrail_database_url, **options)
    try:
        yield engine
    finally:
        engine.close()
