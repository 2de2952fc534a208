"""Group commit: ``access`` from many threads of one engine at durability full, with and without shared commits.

Contenders, in interleaved rounds on copies of one onboarded log:
- keytrail with group commit (the SQLite default) and without, from 1 thread and from
  ``--threads`` threads (each on its own stores, page views in a scattered order);
- raw sqlite3 committing one event per transaction from one thread (access.py's program):
  the rate one writer reaches when every event waits for its own sync;
- ``eventsourcing`` 9.5 saving one event per call from the same number of threads.

The figures to read: 1 thread with / without (a caller alone must be no slower), N threads
with / without (what sharing a commit buys), and N threads with group commit / raw sqlite3's
commit-per-event rate. On PostgreSQL (``--postgres URL``, or run.py's server), the same N-thread
comparison, where each thread has its own connection and the server groups commits itself.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from access import RawSqlite, eventsourcing_app
from common import Clock, Contest, build_log, report_in_scratch, stream_ids

from keytrail import Engine, State


def _threaded(engine: Engine, names: list[str], threads: int, calls: int) -> Callable[[], int]:
    """A contender: ``threads`` threads, each doing ``calls // threads`` page views on its own stores."""
    share = max(1, calls // threads)
    parts = [names[n::threads] for n in range(threads)]
    cycles = [itertools.cycle(part) for part in parts]

    def go() -> int:
        def work(n: int) -> None:
            cycle = cycles[n]
            for _ in range(share):
                engine.access(next(cycle))

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return share * threads

    return go


def run(stores: int, calls: int, rounds: int, threads: int, workdir: Path) -> dict[str, Any]:
    template = workdir / f"template-{stores}.db"
    if not template.exists():
        build_log(f"sqlite:///{template}", stores)
    names = stream_ids(stores)
    engines: dict[str, Engine] = {}
    contenders: dict[str, Callable[[], int]] = {}
    for grouped in (True, False):
        for count in (1, threads):
            label = f"{count} thread{'s' * (count > 1)}, group commit {'on' if grouped else 'off'}"
            path = workdir / f"gc-{count}-{grouped}.db"
            shutil.copy(template, path)
            clock = Clock(datetime(2026, 6, 1, tzinfo=UTC))
            engine = Engine.open(f"sqlite:///{path}", clock=clock, durability="full", group_commit=grouped)
            engines[label] = engine
            contenders[label] = _threaded(engine, names, count, calls)
    raw_path = workdir / "gc-raw.db"
    shutil.copy(template, raw_path)
    raw = RawSqlite(raw_path, "FULL")
    raw_clock = Clock(datetime(2026, 6, 1, tzinfo=UTC))
    raw_cycle = itertools.cycle(names)

    def raw_access() -> int:
        for _ in range(calls):
            raw.access(next(raw_cycle), raw_clock())
        return calls

    contenders["raw sqlite3, one commit per event, 1 thread"] = raw_access
    app, aggregates = eventsourcing_app(workdir / "gc-es.db", min(stores, 5000))
    es_parts = [itertools.cycle(aggregates[n::threads]) for n in range(threads)]

    def es_threads() -> int:
        share = max(1, calls // threads)

        def work(n: int) -> None:
            for _ in range(share):
                aggregate = next(es_parts[n])
                aggregate.access("sha256:" + "0" * 64, "2026-06-01T00:00:00.000000+00:00")
                app.save(aggregate)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return share * threads

    es_label = f"eventsourcing 9.5 save, {threads} threads"
    contenders[es_label] = es_threads
    many_on, many_off = f"{threads} threads, group commit on", f"{threads} threads, group commit off"
    contest = Contest(f"group commit: access at durability=full, {stores:,} stores", contenders, rounds).run()
    result = contest.report(
        many_on,
        [many_off, "raw sqlite3, one commit per event, 1 thread", es_label],
        {"raw sqlite3, one commit per event, 1 thread": 3.0, es_label: 4.0},
    )
    alone = contest.ratio("1 thread, group commit on", "1 thread, group commit off")
    print(f"  1 thread, group commit on / off: {alone:.2f}x (a caller alone must be no slower: ~1.0x)")
    result["alone on/off"] = alone
    stats = engines[many_on].commit_stats
    if stats is not None:
        mean = stats.commands / max(1, stats.commits)
        print(
            f"  {many_on}: {stats.commands:,} commands in {stats.commits:,} commits (mean batch {mean:.1f}, largest {stats.largest})"
        )
        result["mean batch"] = mean
    for engine in engines.values():
        assert engine.state(names[0]) is State.StoreIntegration
        assert engine.verify().ok, "the benchmark's log must still verify"
        engine.close()
    raw.close()
    return result


def run_postgres(server: str, stores: int, calls: int, rounds: int, threads: int) -> dict[str, Any]:
    """PostgreSQL: N threads of one engine with and without group commit (each off-batch thread has its own connection)."""
    from keytrail.pgcluster import scratch_database

    with scratch_database(server) as on_url, scratch_database(server) as off_url:
        contenders: dict[str, Callable[[], int]] = {}
        engines = []
        for url, grouped in ((on_url, True), (off_url, False)):
            build_log(url, stores)
            engine = Engine.open(url, clock=Clock(datetime(2026, 6, 1, tzinfo=UTC)), group_commit=grouped)
            engines.append(engine)
            contenders[f"PostgreSQL, {threads} threads, group commit {'on' if grouped else 'off'}"] = _threaded(
                engine, stream_ids(stores), threads, calls
            )
        contest = Contest(f"group commit on PostgreSQL: access, {threads} threads", contenders, rounds).run()
        names = list(contenders)
        result = contest.report(names[0], [names[1]])
        for engine in engines:
            assert engine.verify().ok
            engine.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=800, help="page views per contender per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--postgres", default=os.environ.get("KEYTRAIL_BENCH_POSTGRES_URL"), help="a server URL")
    args = parser.parse_args()

    def measure(workdir: Path) -> dict[str, Any]:
        result = run(args.stores, args.calls, args.rounds, args.threads, workdir)
        if args.postgres:
            result["postgres"] = run_postgres(args.postgres, args.stores, args.calls, args.rounds, args.threads)
        return result

    report_in_scratch(measure)


if __name__ == "__main__":
    main()
