"""keytrail's pytest plugin: fixtures, a step driver and path assertions for onboarding tests.

Installing keytrail registers this module with pytest (the ``pytest11`` entry point), so
its fixtures are there in any project's tests; ``-p no:keytrail`` turns it off.
Since pytest imports it in every run of such a project, importing it loads no engine,
database driver or state machine, and hashes nothing: each fixture loads what it needs when a
test uses it.

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
onboarding went through (all of them, those ``from_step=k`` on, or the ``last=n``) and shows
expected and actual side by side when they differ. A failure inside either shows the user's
line, the sentence and the path, not keytrail's own frames. The path generators of
:mod:`keytrail.states.paths` are re-exported here: :func:`path_to` gives *a* shortest
sequence to a state (one way there), :func:`simple_paths` every way without loops, each
with its own readable test id (``path.id``), :func:`cover_transitions` a set that takes
every transition.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any

import pytest

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
from keytrail.testing.clock import DEFAULT_START, FrozenClock, frozen_clock
from keytrail.testing.driver import DRIVER_COMPANY as DRIVER_COMPANY  # not in __all__, but importable
from keytrail.testing.driver import DRIVER_EMAIL, DRIVER_PASSWORD, DriveError, Driver, drive
from keytrail.testing.report import assert_path, path_of

if TYPE_CHECKING:
    from keytrail.engine import Engine

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

# Shown where users meet them (a failure reads keytrail.testing.DriveError), as before the split.
for _public in (DriveError, Driver, FrozenClock):
    _public.__module__ = __name__
del _public

POSTGRES_ENV = "KEYTRAIL_TEST_POSTGRES_URL"


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
    from keytrail.engine import Engine  # the engine (SQLAlchemy, the machine) loads only for a test that uses it

    options = {"clock": keytrail_clock, **keytrail_engine_options}
    engine = Engine.open(keytrail_database_url, **options)
    try:
        yield engine
    finally:
        engine.close()
