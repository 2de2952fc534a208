"""Fixtures shared by keytrail's own suite: a clean environment, both backends, a movable clock.

The plugin's fixtures (keytrail_engine, keytrail_clock, ...) come from keytrail.testing,
loaded through its entry point as in any project that installs keytrail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from keytrail import Engine
from keytrail.pgcluster import PostgresCluster, PostgresUnavailable, scratch_database

START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


class MovableClock:
    """A clock the test moves by hand; the engine reads it for every event."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        self.now += delta if delta is not None else timedelta(**kwargs)
        return self.now

    def set(self, instant: datetime) -> datetime:
        """Jump to ``instant``, like the plugin's keytrail_clock."""
        self.now = instant
        return self.now


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No keytrail setting leaks in from the machine; server key files land in the test's folder."""
    for name in ("KEYTRAIL_SECRET_KEY", "KEYTRAIL_SECRET_KEY_FILE", "KEYTRAIL_DATABASE_URL", "KEYTRAIL_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server URL: KEYTRAIL_TEST_POSTGRES_URL, or a throwaway cluster started here."""
    given = os.environ.get("KEYTRAIL_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    try:
        cluster = PostgresCluster.start()
    except PostgresUnavailable as exc:
        if os.environ.get("KEYTRAIL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"KEYTRAIL_REQUIRE_POSTGRES=1 but PostgreSQL could not be started: {exc}")
        # A developer machine without PostgreSQL still runs every SQLite test; CI sets
        # KEYTRAIL_REQUIRE_POSTGRES=1 (see .ci/run), where this is the failure above instead.
        pytest.skip(f"PostgreSQL is not available here: {exc}")
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def keytrail_postgres_server(postgres_server: str) -> str:
    """The plugin's PostgreSQL opt-in (--keytrail-postgres) uses the suite's one server, never a second cluster."""
    return postgres_server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/keytrail.db"
        return
    server = request.getfixturevalue("postgres_server")
    with scratch_database(server) as url:
        yield url


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def engine(db_url: str, clock: MovableClock) -> Iterator[Engine]:
    opened = Engine.open(db_url, clock=clock)
    try:
        yield opened
    finally:
        opened.close()
