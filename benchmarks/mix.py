"""Workload 6: an onboarding-shaped mix of every command on new streams, against raw sqlite3 running the same SQL.

The mix. Each round onboards ``streams`` new stores, eight at a time with their commands
interleaved (as concurrent users' page loads arrive), each through the source document's flow
with the repeats real use has:

- ``access`` on the new stream (Prompted, key missing); on every third store a second page view
  while prompted;
- ``sign_in`` with the password; on every other store the user wanders back to the channel
  (``access``: Prompted again) and signs in again reusing the live session (no password);
- ``generate_key``, ``copy_key``, ``save_config``, ``access`` (Validated), ``proceed``;
- then 2 to 7 page-view ``access`` calls on the integrated store;
- every other store sends ``generate_key``, ``save_config`` and ``proceed`` with idempotency keys,
  and every fourth store retries each of them with the same key, as a client whose response was
  lost does (the retry writes nothing: it counts as a command, not an event).

The headline is events/s with the password sign-ins left out on both sides: a password sign-in
costs one password check (Argon2id) by design (tens of ms, more than the rest of an onboarding), so it
would measure the hash rather than the log. Each command is timed on its own, the password
sign-ins are added up apart and shown on their own line, and the per-command table shows
where the rest of the time goes.

The raw sqlite3 baseline is keytrail's own SQL, captured and replayed:

1. Capture: the whole mix (every round) runs once, untimed, through keytrail on a copy of the
   starting database, with ``sqlite3.connect`` wrapped so each connection the engine's driver
   opens is a ``sqlite3.Connection`` subclass recording every statement's text and parameters
   exactly as they reach sqlite3 (SQLAlchemy's statements and the engine's own driver-level
   ones alike), plus a trace callback for what sqlite3 runs without an ``execute`` call
   (``COMMIT`` from ``commit()``). The statements of each command are kept apart.
2. Replay: for each command, those statements with those parameters, on a plain
   ``sqlite3.connect(path, isolation_level=None)`` to another copy of the same starting
   database, with the engine's PRAGMAs (WAL, ``synchronous`` FULL or NORMAL as measured,
   ``foreign_keys``, ``busy_timeout``), in one transaction per command: ``BEGIN IMMEDIATE`` ...
   ``COMMIT`` when the command writes, ``BEGIN`` ... ``COMMIT`` when it only reads (an idempotent
   retry). keytrail's own transaction control and connect-time PRAGMAs are dropped and replaced
   by that one transaction, so where keytrail opens more than one transaction for a command the
   baseline does not; every result row is fetched.
3. The raw side does nothing else: no hashing, JSON, encryption, key generation or password hash. So
   the ratio is keytrail's speed over the speed of its SQL alone, a floor stricter than
   access.py's hand-written program (which also hashes and encodes each event).
4. Starting from the same database, the replay's reads return what keytrail's did and its
   writes succeed as keytrail's did; a statement that failed in the capture is replayed
   expecting the failure. At the end the replayed database and keytrail's timed one must hold
   the same number of events and the same stream heads (state, version), and keytrail's log
   must verify.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import Clock, Contest, report_in_scratch

from keytrail import Engine, State

EMAIL, PASSWORD = "ops@mix.test", "correct horse battery"
SCRYPT_LABEL = "sign_in (password)"
RETRY = "idempotent retry"
# keytrail's transaction control and connection setup: the baseline runs its own one transaction instead.
_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA)\b|\s*--", re.IGNORECASE)


@dataclass(frozen=True)
class Op:
    """One command of the mix: what it is, the label it is timed under, and whether it writes an event."""

    stream: str
    kind: str
    label: str
    idempotency_key: str | None = None
    writes_event: bool = True


def store_flow(stream: str, i: int) -> list[Op]:
    """One store's commands, with the repeats described in the module docstring."""
    ops = [Op(stream, "access", "access (new stream)")]
    if i % 3 == 0:
        ops.append(Op(stream, "access", "access (prompted again)"))
    ops.append(Op(stream, "sign_in_password", SCRYPT_LABEL))
    if i % 2 == 1:
        ops += [Op(stream, "access", "access (prompted again)"), Op(stream, "sign_in_session", "sign_in (session)")]
    for kind in ("generate_key", "copy_key", "save_config", "access", "proceed"):
        key = f"{stream}-{kind}" if i % 2 == 0 and kind in ("generate_key", "save_config", "proceed") else None
        label = "access (validates)" if kind == "access" else kind + (" (idempotency key)" if key else "")
        ops.append(Op(stream, kind, label, key))
        if key is not None and i % 4 == 0:
            ops.append(Op(stream, kind, RETRY, key, writes_event=False))
    ops += [Op(stream, "access", "access (page view)")] * (2 + i % 6)
    return ops


def mix_plan(round_no: int, streams: int, width: int = 8) -> list[Op]:
    """A round's commands: ``streams`` new stores, ``width`` at a time, their steps interleaved."""
    plan: list[Op] = []
    for start in range(0, streams, width):
        flows = [store_flow(f"mix-{round_no:02d}-{i:05d}", i) for i in range(start, min(start + width, streams))]
        for step in range(max(map(len, flows))):
            plan += [flow[step] for flow in flows if step < len(flow)]
    return plan


def perform(engine: Engine, op: Op, keys: dict[str, str]) -> None:
    """Send one command of the mix to keytrail."""
    stream, idem = op.stream, op.idempotency_key
    if op.kind == "access":
        engine.access(stream, idempotency_key=idem)
    elif op.kind == "sign_in_password":
        engine.sign_in(stream, email=EMAIL, password=PASSWORD, idempotency_key=idem)
    elif op.kind == "sign_in_session":
        engine.sign_in(stream, email=EMAIL, idempotency_key=idem)
    elif op.kind == "generate_key":
        key = engine.generate_key(stream, description="Amazon Sales Channel", idempotency_key=idem).key
        keys.setdefault(stream, key)
    elif op.kind == "copy_key":
        engine.copy_key(stream, idempotency_key=idem)
    elif op.kind == "save_config":
        engine.save_config(stream, key=keys[stream], idempotency_key=idem)
    elif op.kind == "proceed":
        assert engine.proceed(stream, idempotency_key=idem).state is State.StoreIntegration
    else:  # pragma: no cover
        raise AssertionError(op.kind)


# -- capture -------------------------------------------------------------------------------------


@dataclass
class Statement:
    sql: str
    params: Any  # a tuple or mapping, a list of them for executemany, None for what only the trace saw
    many: bool = False
    failed: bool = False


@dataclass
class Recorder:
    """Collects the statements of every connection made while installed (see the module docstring)."""

    statements: list[Statement] = field(default_factory=list)
    pending: Statement | None = None
    quiet: bool = False

    def trace(self, expanded: str) -> None:
        if self.quiet:  # executemany traces once per row; it was recorded once
            return
        if self.pending is not None:
            self.statements.append(self.pending)
            self.pending = None
        else:
            self.statements.append(Statement(expanded, None))

    def execute(self, run: Callable[[], Any], sql: str, params: Any) -> Any:
        params = dict(params) if isinstance(params, dict) else tuple(params)
        self.pending = Statement(sql, params)
        before = len(self.statements)
        try:
            return run()
        except sqlite3.Error:
            if len(self.statements) > before:
                self.statements[-1].failed = True
            raise
        finally:
            self.pending = None

    def execute_many(self, run: Callable[[list[Any]], Any], sql: str, rows: Iterable[Any]) -> Any:
        materialized = list(rows)
        self.statements.append(Statement(sql, materialized, many=True))
        self.quiet = True
        try:
            return run(materialized)
        finally:
            self.quiet = False

    def install(self) -> Callable[[], None]:
        """Route sqlite3.connect (which SQLAlchemy's pysqlite driver calls) through recording connections."""
        recorder = self

        class RecordingCursor(sqlite3.Cursor):
            def execute(self, sql: str, params: Any = (), /) -> Any:
                return recorder.execute(lambda: super(RecordingCursor, self).execute(sql, params), sql, params)

            def executemany(self, sql: str, rows: Iterable[Any], /) -> Any:
                return recorder.execute_many(lambda r: super(RecordingCursor, self).executemany(sql, r), sql, rows)

        class RecordingConnection(sqlite3.Connection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.set_trace_callback(recorder.trace)

            def cursor(self, factory: Any = RecordingCursor) -> Any:  # type: ignore[override]
                return super().cursor(factory)

            def execute(self, sql: str, params: Any = (), /) -> Any:
                return self.cursor().execute(sql, params)

            def executemany(self, sql: str, rows: Iterable[Any], /) -> Any:
                return self.cursor().executemany(sql, rows)

        real = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            kwargs.setdefault("factory", RecordingConnection)
            return real(*args, **kwargs)

        sqlite3.connect = sqlite3.dbapi2.connect = connect  # type: ignore[assignment]

        def uninstall() -> None:
            sqlite3.connect = sqlite3.dbapi2.connect = real

        return uninstall


@dataclass
class Captured:
    """One command's statements as keytrail sent them, and the transaction the baseline wraps them in."""

    label: str
    statements: list[Statement]
    transactions: int  # keytrail's own BEGINs for this command
    begin: str = ""
    writes_event: bool = True

    def __post_init__(self) -> None:
        writes = any(not s.sql.lstrip().upper().startswith("SELECT") for s in self.statements)
        self.begin = "BEGIN IMMEDIATE" if writes else "BEGIN"


def capture(template: Path, path: Path, plans: list[list[Op]]) -> list[list[Captured]]:
    """Run every round's plan through keytrail once on a copy of ``template``; each command's statements."""
    shutil.copy(template, path)
    recorder = Recorder()
    uninstall = recorder.install()
    try:
        engine = Engine.open(f"sqlite:///{path}", clock=Clock(), durability="normal")
        rounds = []
        keys: dict[str, str] = {}
        for plan in plans:
            commands = []
            for op in plan:
                recorder.statements.clear()
                perform(engine, op, keys)
                seen = list(recorder.statements)
                kept = [s for s in seen if not _CONTROL.match(s.sql)]
                begins = sum(1 for s in seen if s.sql.lstrip().upper().startswith("BEGIN"))
                commands.append(Captured(op.label, kept, begins, writes_event=op.writes_event))
            rounds.append(commands)
        engine.close()
    finally:
        uninstall()
    assert any(c.statements for r in rounds for c in r), "no statement was captured: did the driver change?"
    return rounds


# -- the contenders -----------------------------------------------------------------------------


@dataclass
class Tally:
    """Seconds per label, per round, for the per-command table."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, round_times: dict[str, float], round_counts: dict[str, int]) -> None:
        for label, spent in round_times.items():
            self.seconds.setdefault(label, []).append(spent / round_counts[label])
            self.counts[label] = round_counts[label]

    def per_command(self, label: str) -> float:
        return statistics.median(self.seconds[label])


def timed(ops: Iterator[tuple[str, bool, Callable[[], None]]], tally: Tally) -> tuple[int, float]:
    """Run and time each command; events and seconds with the password sign-ins left out."""
    spent: dict[str, float] = {}
    counts: dict[str, int] = {}
    events = 0
    clock = time.perf_counter
    for label, writes_event, run in ops:
        t0 = clock()
        run()
        took = clock() - t0
        spent[label] = spent.get(label, 0.0) + took
        counts[label] = counts.get(label, 0) + 1
        if writes_event and label != SCRYPT_LABEL:
            events += 1
    tally.add(spent, counts)
    counted = sum(t for label, t in spent.items() if label != SCRYPT_LABEL)
    return events, counted


def raw_connection(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 5000")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("PRAGMA foreign_keys = ON")
    return db


def replay_command(db: sqlite3.Connection, command: Captured) -> None:
    """One command of the baseline: keytrail's statements, in one transaction."""
    cursor = db.cursor()
    cursor.execute(command.begin)
    try:
        for s in command.statements:
            if s.many:
                cursor.executemany(s.sql, s.params)
            elif s.failed:
                try:
                    cursor.execute(s.sql, s.params or ()).fetchall()
                except sqlite3.Error:
                    pass
                else:  # pragma: no cover
                    raise AssertionError(f"replayed statement did not fail as captured: {s.sql}")
            else:
                cursor.execute(s.sql, s.params or ()).fetchall()
        cursor.execute("COMMIT")
    except BaseException:
        cursor.execute("ROLLBACK")
        raise


def heads(path: Path) -> tuple[int, list[tuple[Any, ...]]]:
    """The event count and every stream's state and version; keys' streams by state alone (key ids are random)."""
    db = sqlite3.connect(path)
    try:
        (events,) = db.execute("SELECT count(*) FROM events").fetchone()
        named = db.execute(
            "SELECT stream_id, state, version FROM streams WHERE stream_id NOT LIKE '@key:%' ORDER BY stream_id"
        ).fetchall()
        keys = db.execute(
            "SELECT state, version, count(*) FROM streams WHERE stream_id LIKE '@key:%' GROUP BY state, version "
            "ORDER BY state, version"
        ).fetchall()
        return events, named + keys
    finally:
        db.close()


def make_template(path: Path) -> None:
    """The starting database of every copy: a schema and the account the stores sign in to."""
    engine = Engine.open(f"sqlite:///{path}", clock=Clock())
    engine.portal.create_account(EMAIL, PASSWORD, company="Acme")
    engine.close()


def contest(
    durability: str, template: Path, captured: list[list[Captured]], plans: list[list[Op]], workdir: Path
) -> dict[str, Any]:
    kt_path, raw_path = workdir / f"mix-keytrail-{durability}.db", workdir / f"mix-raw-{durability}.db"
    shutil.copy(template, kt_path)
    shutil.copy(template, raw_path)
    engine = Engine.open(f"sqlite:///{kt_path}", clock=Clock(), durability=durability)  # type: ignore[arg-type]
    raw = raw_connection(raw_path, "FULL" if durability == "full" else "NORMAL")
    kt_rounds, raw_rounds = iter(plans), iter(captured)
    kt_tally, raw_tally = Tally(), Tally()
    keys: dict[str, str] = {}

    def keytrail_mix() -> tuple[int, float]:
        plan = next(kt_rounds)
        return timed(((op.label, op.writes_event, lambda op=op: perform(engine, op, keys)) for op in plan), kt_tally)

    def raw_mix() -> tuple[int, float]:
        commands = next(raw_rounds)
        return timed(((c.label, c.writes_event, lambda c=c: replay_command(raw, c)) for c in commands), raw_tally)

    rounds = len(plans)
    events = sum(op.writes_event and op.label != SCRYPT_LABEL for op in plans[0])
    label = (
        f"onboarding mix, {rounds} rounds of {len(plans[0]):,} commands ({events:,} events), durability={durability}"
    )
    result = Contest(label, {"keytrail mix": keytrail_mix, "raw sqlite3, same SQL": raw_mix}, rounds).run()
    report = result.report("keytrail mix", ["raw sqlite3, same SQL"])
    print("  (events/s with the password sign-ins left out on both sides: see their line below)")
    assert engine.verify().ok, "the mix's log must verify"
    engine.close()
    raw.close()
    assert heads(kt_path) == heads(raw_path), "the replay must end where keytrail ended"
    example = captured[0]
    shape: dict[str, tuple[int, int]] = {}
    for c in example:
        shape.setdefault(c.label, (len(c.statements), c.transactions))
    print(f"  {'per command':<32} {'keytrail':>10} {'raw':>9} {'ratio':>6}   keytrail's statements, transactions")
    table = {}
    for name in kt_tally.seconds:
        kt_us, raw_us = kt_tally.per_command(name) * 1e6, raw_tally.per_command(name) * 1e6
        stmts, txns = shape[name]
        print(
            f"  {name:<32} {kt_us:>8,.0f}us {raw_us:>7,.0f}us {raw_us / kt_us:>5.2f}x   {stmts} in {txns}"
            + ("  (password hash, left out)" if name == SCRYPT_LABEL else "")
        )
        table[name] = {"keytrail_us": kt_us, "raw_us": raw_us, "statements": stmts, "transactions": txns}
    for used in (kt_path, raw_path):
        used.unlink()
    report.update(durability=durability, per_command=table, commands_per_round=len(plans[0]), events_per_round=events)
    return report


def show_sql(plan: list[Op], captured: list[Captured]) -> None:
    """Print the captured statements of the first store's commands, so a reader can check what the baseline runs."""
    first = plan[0].stream
    print(f"\n## the statements the baseline replays for {first}, one transaction per command")
    for op, command in zip(plan, captured, strict=True):
        if op.stream == first:
            print(f"  {command.label}: {command.begin}; keytrail used {command.transactions} transaction(s)")
            for s in command.statements:
                shown = " ".join(s.sql.split())
                print(f"    {shown[:150]}{'...' if len(shown) > 150 else ''}" + ("  (failed, as captured)" * s.failed))


def run(
    streams: int,
    rounds: int,
    workdir: Path,
    durabilities: tuple[str, ...] = ("full", "normal"),
    *,
    sql: bool = False,
) -> dict[str, Any]:
    template = workdir / "mix-template.db"
    make_template(template)
    plans = [mix_plan(r, streams) for r in range(rounds)]
    captured = capture(template, workdir / "mix-capture.db", plans)
    if sql:
        show_sql(plans[0], captured[0])
    results = {d: contest(d, template, captured, plans, workdir) for d in durabilities}
    template.unlink()
    return {"streams": streams, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=40, help="new stores per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--durability", choices=["full", "normal", "both"], default="both")
    parser.add_argument("--show-sql", action="store_true", help="print the statements captured for one store")
    args = parser.parse_args()
    chosen = ("full", "normal") if args.durability == "both" else (args.durability,)
    report_in_scratch(lambda workdir: run(args.streams, args.rounds, workdir, chosen, sql=args.show_sql))


if __name__ == "__main__":
    main()
