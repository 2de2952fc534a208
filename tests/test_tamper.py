"""Integrity of the log against rows keytrail did not write as they stand (issue 9, items 1 to 3).

- A row counts only if its stored text is exactly what keytrail writes: another spelling of the
  same value (a time as an ISO week date or with a zone suffix, JSON with a duplicate member)
  fails ``verify`` and ``digest --check``, and a duplicate member is refused wherever it is read.
- Time never runs backwards within a stream: the engine stores the later of its clock and the
  previous event's time; ``verify`` reports a decrease; ``digest --check`` reports events added
  after the digest but dated before its newest event; ``replay --as-of`` cuts at the first event
  later than the instant, in version order.
- Malformed rows are problems naming the stream and version (exit 1), never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from keytrail import Engine, Reason, SavedKey, State, Verdict
from keytrail.cli import app
from keytrail.engine import reports
from keytrail.errors import CorruptEvent, CorruptProjection, IntegrityViolation
from keytrail.persistence.store import events_table
from tests.conftest import START, MovableClock
from tests.helpers import drive_to, rechain

runner = CliRunner()


def cli(db: str, *args: str) -> Result:
    return runner.invoke(app, ["--db", db, *args])


def _write(engine: Engine, statement: str, **params: Any) -> None:
    with engine.database.write() as conn:
        conn.execute(sa.text(statement), params)


def _stored(engine: Engine, column: str, stream: str, version: int) -> Any:
    """A column exactly as the database holds it (SQLite: the text, PostgreSQL: the driver's value)."""
    with engine.database.read() as conn:
        return conn.execute(
            sa.text(f"SELECT {column} FROM events WHERE stream_id = :s AND version = :v"), {"s": stream, "v": version}
        ).scalar_one()


def _kinds(problems: list[Any]) -> list[tuple[str, int, str]]:
    return [(p.stream, p.version, p.kind) for p in problems]


@pytest.fixture
def sqlite_engine(tmp_path: Path, clock: MovableClock) -> Any:
    with Engine.open(f"sqlite:///{tmp_path}/keytrail.db", clock=clock) as opened:
        yield opened


# -- item 1: one spelling per value ------------------------------------------------------------------


def _week_date(text: str) -> str:
    instant = datetime.fromisoformat(text)
    year, week, day = instant.isocalendar()
    return f"{year}-W{week:02d}-{day}T{text[11:]}"


RESPELLED_TIMES: dict[str, Callable[[str], str]] = {
    "iso week date": _week_date,
    "zone suffix replaced, not converted": lambda t: t + "+05:00",
    "utc suffix": lambda t: t + "+00:00",
    "T separator": lambda t: t.replace(" ", "T"),
    "no microseconds": lambda t: t[:19],
}


@pytest.mark.parametrize("respell", RESPELLED_TIMES.values(), ids=list(RESPELLED_TIMES))
def test_a_respelled_time_fails_verify_and_the_digest_check(
    sqlite_engine: Engine, respell: Callable[[str], str]
) -> None:
    """The same instant (or one Python reads as the same) in another spelling is not what keytrail wrote."""
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    kept = reports.digest(sqlite_engine)
    original = _stored(sqlite_engine, "occurred_at", "acme", 3)
    _write(sqlite_engine, "UPDATE events SET occurred_at = :t WHERE version = 3", t=respell(original))
    assert _kinds(sqlite_engine.verify().problems) == [("acme", 3, "spelling")]
    check = reports.check_digest(sqlite_engine, kept.token)
    assert not check.ok
    assert "acme" in check.message and "version 3" in check.message
    with pytest.raises(CorruptEvent, match="version 3 of acme"):
        reports.digest(sqlite_engine)
    url = sqlite_engine.database.url
    assert cli(url, "verify").exit_code == 1
    assert cli(url, "digest", "--check", kept.token).exit_code == 1


def _with_duplicate(text: str, member: str, value: str) -> str:
    """The stored JSON with a forged copy of ``member`` put first: Python keeps the last copy, SQLite the first."""
    return "{" + json.dumps(member) + ": " + json.dumps(value) + ", " + text[1:]


def test_a_duplicate_member_fails_verify_and_the_digest_check(sqlite_engine: Engine) -> None:
    """The issue's forgery: Python's view (last copy) hashes as before, plain SQL's (first copy) is forged."""
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    kept = reports.digest(sqlite_engine)
    original = _stored(sqlite_engine, "data", "acme", 3)
    forged = _with_duplicate(original, "fingerprint", "sha256:forged")
    _write(sqlite_engine, "UPDATE events SET data = :d WHERE version = 3", d=forged)
    with sqlite_engine.database.read() as conn:
        seen_by_sql = conn.execute(sa.text("SELECT json_extract(data, '$.fingerprint') FROM events WHERE version = 3"))
        assert seen_by_sql.scalar_one() == "sha256:forged"
    problems = sqlite_engine.verify().problems
    assert _kinds(problems) == [("acme", 3, "spelling")]
    assert "fingerprint" in problems[0].message
    check = reports.check_digest(sqlite_engine, kept.token)
    assert not check.ok and "version 3" in check.message
    assert cli(sqlite_engine.database.url, "digest", "--check", kept.token).exit_code == 1


@pytest.mark.parametrize("version", [3, 6], ids=["generate_key", "access"])
def test_a_duplicate_member_is_refused_wherever_data_is_read(sqlite_engine: Engine, version: int) -> None:
    """history, export and replay (where it reads data) name the row instead of picking one copy."""
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    original = _stored(sqlite_engine, "data", "acme", version)
    _write(
        sqlite_engine,
        "UPDATE events SET data = :d WHERE version = :v",
        d=_with_duplicate(original, "hint", "0000"),
        v=version,
    )
    with pytest.raises(CorruptEvent, match=f"version {version} of acme.*hint"):
        sqlite_engine.history("acme")
    with pytest.raises(CorruptEvent, match=f"version {version} of acme"):
        list(reports.export_rows(sqlite_engine))
    if version == 3:  # replay reads data only where a step carries ids (sign_in, register, keys)
        with pytest.raises(CorruptEvent, match="version 3 of acme"):
            sqlite_engine.replay("acme")


RESPELLED_DATA: dict[str, Callable[[dict[str, Any]], str]] = {
    "compact": lambda d: json.dumps(d, separators=(",", ":")),
    "trailing space": lambda d: json.dumps(d) + " ",
    "pretty-printed": lambda d: json.dumps(d, indent=2),
    "escaped letter": lambda d: json.dumps(d).replace('"hint"', '"\\u0068int"'),
}


@pytest.mark.parametrize("respell", RESPELLED_DATA.values(), ids=list(RESPELLED_DATA))
def test_respelled_data_fails_verify(sqlite_engine: Engine, respell: Callable[[dict[str, Any]], str]) -> None:
    """Only json.dumps of the value, byte for byte, is how keytrail stores data.

    (Member order is the one freedom left: keytrail writes members in the order its code builds
    them, which the stored text itself records, and every JSON reader agrees on each member.)
    """
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    value = json.loads(_stored(sqlite_engine, "data", "acme", 6))
    _write(sqlite_engine, "UPDATE events SET data = :d WHERE version = 6", d=respell(value))
    assert _kinds(sqlite_engine.verify().problems) == [("acme", 6, "spelling")]


def test_rows_as_keytrail_writes_them_pass(sqlite_engine: Engine, clock: MovableClock) -> None:
    """Both writers (the hot path and the generic one), non-ASCII text and whole seconds all verify and digest."""
    drive_to(sqlite_engine, "acme", State.Validated)
    clock.advance(seconds=1)
    sqlite_engine.access("acme", actor="opérateur")
    sqlite_engine.access("acme", idempotency_key="k-1")  # the generic path
    clock.advance(microseconds=1)
    sqlite_engine.proceed("acme")
    assert sqlite_engine.verify().ok
    kept = reports.digest(sqlite_engine)
    assert reports.check_digest(sqlite_engine, kept.token).ok


# -- item 2: time never runs backwards within a stream ----------------------------------------------------


def test_a_clock_that_steps_back_never_dates_an_event_before_its_predecessor(
    engine: Engine, clock: MovableClock
) -> None:
    """Both the generic path (sign_in) and the hot path (access) store the previous event's time, and log it."""
    drive_to(engine, "acme", State.Prompted)
    clock.set(START - timedelta(hours=1))
    with capture_logs() as logs:
        signed = engine.sign_in("acme", email="ops@acme.test", password="correct horse battery")
        again = engine.access("acme")
    assert signed.occurred_at == START and again.occurred_at == START
    times = [e.occurred_at for e in engine.history("acme")]
    assert times == sorted(times) == [START, START, START]
    stepped = [entry for entry in logs if entry["event"] == "clock_stepped_back"]
    assert len(stepped) == 2
    assert stepped[0]["log_level"] == "warning"
    assert (stepped[0]["stream"], stepped[0]["clock"], stepped[0]["used"]) == (
        "acme",
        (START - timedelta(hours=1)).isoformat(timespec="microseconds"),
        START.isoformat(timespec="microseconds"),
    )
    assert engine.verify().ok


def test_the_verdict_is_taken_at_the_recorded_time(engine: Engine, clock: MovableClock) -> None:
    """After an event dated past the key's expiry, a clock stepping back cannot make the key valid again."""
    drive_to(engine, "acme", State.StoreIntegration)
    expired_at = clock.advance(days=366)
    assert engine.access("acme").reason is Reason.expired
    clock.advance(days=-2)  # the key's lifetime is 365 days: this clock says it is still valid
    for command in (engine.access, lambda s: engine.access(s, idempotency_key="generic")):
        outcome = command("acme")
        assert (outcome.state, outcome.reason, outcome.occurred_at) == (State.Prompted, Reason.expired, expired_at)


class _AskedAt:
    """A remote-style verifier (asked outside the transaction) that remembers the instants it was asked at."""

    def __init__(self) -> None:
        self.asked: list[datetime] = []

    def verify(self, saved: SavedKey | None, at: datetime) -> Verdict:
        self.asked.append(at)
        return Verdict.missing()


def test_a_remote_verifier_is_asked_at_the_recorded_time(db_url: str, clock: MovableClock) -> None:
    """With a verifier outside the database, the instant it is asked about is the event's time too."""
    verifier = _AskedAt()
    with Engine.open(db_url, clock=clock, verifier=verifier) as engine:
        engine.access("acme")
        clock.set(START - timedelta(minutes=5))
        outcome = engine.access("acme")
    assert verifier.asked == [START, START]
    assert outcome.occurred_at == START


def _backdate(version: int, by: timedelta) -> Callable[[dict[str, Any]], None]:
    def change(row: dict[str, Any]) -> None:
        if row["version"] == version:
            row["occurred_at"] -= by

    return change


def test_verify_reports_time_running_backwards(engine: Engine, clock: MovableClock) -> None:
    """An event dated before its predecessor (a stepped-back clock, or a forger) is a problem, chain or no chain."""
    drive_to(engine, "acme", State.Prompted)
    clock.advance(hours=1)
    engine.sign_in("acme", email="ops@acme.test", password="correct horse battery")
    clock.advance(hours=1)
    engine.access("acme")
    rechain(engine, "acme", _backdate(3, timedelta(hours=3)))
    problems = engine.verify().problems
    assert _kinds(problems) == [("acme", 3, "time")]
    assert _kinds(engine.replay("acme").problems) == [("acme", 3, "time")]


def test_replay_as_of_cuts_at_the_first_later_event(engine: Engine, clock: MovableClock) -> None:
    """The issue's false "version 1 is missing": as_of now cuts in version order, and names the decrease."""
    engine.access("acme")  # v1 at START
    clock.advance(hours=1)
    engine.access("acme")  # v2 at START + 1h, backdated below to START - 1h
    rechain(engine, "acme", _backdate(2, timedelta(hours=2)))
    past = engine.replay("acme", as_of=START - timedelta(minutes=30))
    assert (past.state, past.version) == (State.Unverified, 0)
    assert _kinds(past.problems) == [("acme", 2, "time")]
    assert all(p.kind != "missing" for p in past.problems)
    # At START itself both events count: v2 is dated before START, and nothing later came before it.
    at_start = engine.replay("acme", as_of=START)
    assert (at_start.version, _kinds(at_start.problems)) == (2, [("acme", 2, "time")])


def test_digest_check_reports_events_added_later_but_dated_earlier(engine: Engine, clock: MovableClock) -> None:
    """An event appended after a kept digest, dated before the digest's newest event, changes a covered instant."""
    drive_to(engine, "acme", State.Prompted)
    clock.advance(hours=2)
    engine.access("acme")
    kept = reports.digest(engine)
    clock.set(START + timedelta(hours=1))  # another host, its clock behind
    engine.access("other")
    check = reports.check_digest(engine, kept.token)
    assert not check.ok
    assert "other" in check.message and "version 1" in check.message
    assert not reports.check_digest(engine, kept.digest).ok
    clock.set(START + timedelta(hours=3))
    engine.access("third")
    assert "other" in reports.check_digest(engine, kept.token).message  # the first one is named


def test_digest_check_still_passes_for_later_events(engine: Engine, clock: MovableClock) -> None:
    """Events dated at or after the digest's newest event are the log growing, as before."""
    drive_to(engine, "acme", State.Prompted)
    kept = reports.digest(engine)
    engine.access("other")  # the same instant
    clock.advance(seconds=1)
    engine.access("acme")
    assert reports.check_digest(engine, kept.token).ok


def test_cli_digest_check_exits_1_on_a_backdated_event(tmp_path: Path, clock: MovableClock) -> None:
    url = f"sqlite:///{tmp_path}/keytrail.db"
    with Engine.open(url, clock=clock) as engine:
        clock.advance(hours=1)
        engine.access("acme")
        kept = reports.digest(engine).token
        clock.set(START)
        engine.access("other")
    result = cli(url, "digest", "--check", kept)
    assert result.exit_code == 1
    assert "other" in result.stdout


# -- item 3: malformed rows are problems, never tracebacks ----------------------------------------------------

MALFORMED_EVENTS = {
    "version": "UPDATE events SET version = 'x' WHERE stream_id = 'acme' AND version = 3",
    "data": "UPDATE events SET data = 'not json' WHERE stream_id = 'acme' AND version = 3",
    "occurred_at": "UPDATE events SET occurred_at = 'yesterday' WHERE stream_id = 'acme' AND version = 3",
    "data blob": "UPDATE events SET data = X'00ff' WHERE stream_id = 'acme' AND version = 3",
    "actor blob": "UPDATE events SET actor = X'00ff' WHERE stream_id = 'acme' AND version = 3",
    "time as a number": "UPDATE events SET occurred_at = 12 WHERE stream_id = 'acme' AND version = 3",
}
READERS = {
    "verify": ["verify"],
    "verify acme": ["verify", "acme"],
    "replay": ["replay", "acme"],
    "replay --as-of": ["replay", "acme", "--as-of", "2030-01-01T00:00:00Z"],
    "digest": ["digest"],
    "digest --check": ["digest", "--check", "0:" + reports.DIGEST_SEED],
    "history": ["history", "acme"],
    "history --json": ["history", "acme", "--json"],
    "export": ["export"],
    "export csv": ["export", "--format", "csv"],
    "diagram --highlight": ["diagram", "--highlight", "acme"],
    "status": ["status"],
    "status acme": ["status", "acme"],
}


def _assert_named(result: Result, stream: str, *fragments: str) -> None:
    """Exit 1, no traceback, and the stream (and version) named on stdout (a problem) or stderr (an error)."""
    # The runner turns an uncaught exception into exit 1 too: only a clean exit counts.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    if result.stderr:  # an error: one line naming the row (one JSON object under --json)
        (line,) = result.stderr.strip().splitlines()
        if line.startswith("{"):
            error = json.loads(line)["error"]
            assert error["type"] == "CorruptEvent" and error["exit_code"] == 1, line
            line = "keytrail: " + error["message"]
        assert line.startswith("keytrail: ") and stream in line, line
        said = line
    else:  # a problem, listed on stdout
        said = result.stdout
        assert stream in said
    for fragment in fragments:
        assert fragment in said, said


@pytest.mark.parametrize("tamper", MALFORMED_EVENTS.values(), ids=list(MALFORMED_EVENTS))
@pytest.mark.parametrize("reader", READERS.values(), ids=list(READERS))
def test_a_malformed_event_is_named_by_every_reader(sqlite_engine: Engine, tamper: str, reader: list[str]) -> None:
    """Each auditor's command exits 1 naming the stream and version; the event-free ones (status) still work."""
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    (position,) = [event.position for event in sqlite_engine.events("acme") if event.version == 3]
    _write(sqlite_engine, tamper)
    result = cli(sqlite_engine.database.url, *reader)
    if reader[0] == "status":
        assert result.exit_code == 0, result.stderr  # the projection is fine
        return
    if reader[0] == "replay" and "actor" in tamper:
        assert result.exit_code == 0, result.stderr  # replay reads no actor and no hash
        return
    # Named by its version, or by its position where the version itself is what cannot be read.
    unreadable_version = "SET version" in tamper and reader[0] != "verify"
    _assert_named(result, "acme", str(position) if unreadable_version else "3")


MALFORMED_PROJECTIONS = {
    "garbage time": "UPDATE streams SET updated_at = 'garbage' WHERE stream_id = 'acme'",
    "respelled time": "UPDATE streams SET updated_at = updated_at || '+05:00' WHERE stream_id = 'acme'",
    "version": "UPDATE streams SET version = 'x' WHERE stream_id = 'acme'",
}


@pytest.mark.parametrize("tamper", MALFORMED_PROJECTIONS.values(), ids=list(MALFORMED_PROJECTIONS))
@pytest.mark.parametrize("reader", [["status"], ["status", "acme"], ["verify"], ["verify", "acme"]])
def test_a_malformed_projection_is_named(sqlite_engine: Engine, tamper: str, reader: list[str]) -> None:
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    _write(sqlite_engine, tamper)
    _assert_named(cli(sqlite_engine.database.url, *reader), "acme")


def test_a_malformed_projection_stops_a_command_cleanly(sqlite_engine: Engine) -> None:
    """The hot path reads the projection's time to keep time in order; a garbage one is an error, not a crash."""
    drive_to(sqlite_engine, "acme", State.StoreIntegration)
    _write(sqlite_engine, "UPDATE streams SET updated_at = 'garbage' WHERE stream_id = 'acme'")
    with pytest.raises(CorruptProjection, match="acme"):
        sqlite_engine.access("acme")


def test_verify_names_each_malformed_value(sqlite_engine: Engine) -> None:
    """Through the API: a problem per stream, with the version and a kind, and the rest of the log still checked."""
    for name in ("a-version", "b-data", "c-time", "d-fine"):
        drive_to(sqlite_engine, name, State.StoreIntegration)
    # The last version: SQLite sorts text after numbers, so a damaged earlier one would first show as missing.
    _write(sqlite_engine, "UPDATE events SET version = 'x' WHERE stream_id = 'a-version' AND version = 7")
    _write(sqlite_engine, "UPDATE events SET data = 'not json' WHERE stream_id = 'b-data' AND version = 2")
    _write(sqlite_engine, "UPDATE events SET occurred_at = 'yesterday' WHERE stream_id = 'c-time' AND version = 5")
    report = sqlite_engine.verify()
    assert _kinds(report.problems) == [
        ("a-version", 7, "malformed"),
        ("b-data", 2, "malformed"),
        ("c-time", 5, "malformed"),
    ]
    assert "'x'" in report.problems[0].message
    assert "not json" in report.problems[1].message
    assert "yesterday" in report.problems[2].message
    for name, named in (
        ("a-version", "a-version at position"),
        ("b-data", "version 2 of b-data"),
        ("c-time", "version 5 of c-time"),
    ):
        with pytest.raises(IntegrityViolation, match=named) as caught:
            sqlite_engine.history(name)
        assert caught.value.exit_code == 1


@pytest.mark.parametrize("value", [[1, 2], "a string", None], ids=["array", "string", "null"])
def test_data_that_is_not_an_object_is_named(engine: Engine, value: Any) -> None:
    """Expressible on both backends (jsonb holds any JSON value): verify, replay, history, export, digest."""
    drive_to(engine, "acme", State.StoreIntegration)
    kept = reports.digest(engine)
    with engine.database.write() as conn:
        where = sa.and_(events_table.c.stream_id == "acme", events_table.c.version == 3)
        conn.execute(sa.update(events_table).where(where).values(data=value))
    assert _kinds(engine.verify().problems) == [("acme", 3, "malformed")]
    for read in (
        lambda: engine.replay("acme"),
        lambda: engine.history("acme"),
        lambda: list(reports.export_rows(engine)),
        lambda: reports.digest(engine),
    ):
        with pytest.raises(CorruptEvent, match="version 3 of acme"):
            read()
    assert not reports.check_digest(engine, kept.token).ok


def test_an_unknown_trigger_in_history_is_an_integrity_error(engine: Engine) -> None:
    """A row naming a trigger keytrail does not know is the log's fault (exit 1), not the database's (exit 3)."""
    drive_to(engine, "acme", State.Prompted)
    _write(engine, "UPDATE events SET trigger = 'teleport' WHERE stream_id = 'acme'")
    with pytest.raises(CorruptEvent, match="version 1 of acme"):
        engine.history("acme")
    assert _kinds(engine.verify().problems) == [("acme", 1, "hash")]


@pytest.mark.parametrize("command", [["verify"], ["replay", "acme"], ["history", "acme"], ["digest"]])
def test_the_real_process_prints_no_traceback(tmp_path: Path, command: list[str]) -> None:
    """The console script, not the test runner: a scan stopped by a damaged row leaves no
    "Exception ignored in generator" traceback on stderr (its cursor is closed with its connection)."""
    url = f"sqlite:///{tmp_path}/keytrail.db"
    with Engine.open(url) as engine:
        drive_to(engine, "acme", State.StoreIntegration)
        _write(engine, "UPDATE events SET version = 'x' WHERE stream_id = 'acme' AND version = 7")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "keytrail"), "--db", url, *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert "acme" in done.stdout + done.stderr
