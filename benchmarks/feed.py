"""The feed: catch-up reads, follow latency, and what following costs the writers on PostgreSQL.

1. Catch-up: ``engine.feed`` paging (1,000 a page) through the whole log, against one raw ordered
   scan of the same rows in the same run (sqlite3 with ``json.loads``; psycopg), target >= 0.5x.
2. Follow latency: a writer at 1,000 accesses/s (on SQLite at durability "normal"), a follower
   in another process; from the writer's commit returning to the follower's handler, p50 and p99.
3. PostgreSQL write path: 4 writer threads while 2 followers (other processes) follow the log,
   the gap-free ``engine.follow`` against the same loop reading ``position > checkpoint`` (the
   design without the settled horizon); target: at most 10% slower. The gap-free order adds no
   statement to the write path (see keytrail.persistence.feed): its cost is the readers' lock
   table reads, which the writers share the server (and here the 2 cores) with. The writers
   alone are shown too.

``python benchmarks/feed.py [--events N] [--rounds R]``; ``run.py`` runs it with smaller sizes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Clock, Contest, build_log, report_in_scratch, stream_ids

from keytrail import Engine

_SPAWN = multiprocessing.get_context("spawn")
_COLUMNS = (
    "position, stream_id, version, trigger, source, dest, reason, data, actor, occurred_at, "
    "idempotency_key, schema_version, prev_hash, hash"
)


def _feed_all(engine: Engine) -> int:
    after, seen = 0, 0
    while True:
        page = engine.feed(after, 1000)
        if not page.events:
            return seen
        seen += len(page.events)
        after = page.next


def _raw_scan(url: str) -> Callable[[], int]:
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")

        def scan() -> int:
            conn = sqlite3.connect(path)
            try:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY position")
                return sum(1 for row in rows if json.loads(row[7]) is not None)
            finally:
                conn.close()

        return scan

    def scan_pg() -> int:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn, conn.cursor("scan") as cur:
            cur.itersize = 2000
            cur.execute(f"SELECT {_COLUMNS} FROM events ORDER BY position")
            return sum(1 for _ in cur)

    return scan_pg


def catch_up(url: str, events: int, rounds: int, label: str) -> dict[str, Any]:
    """Feed paging vs one raw ordered scan, on a log of about ``events`` events."""
    build_log(url, max(1, events // 10), accesses=3)
    with Engine.open(url, create=False) as engine:
        contest = Contest(
            f"feed catch-up, {label}",
            {"keytrail feed (1,000 a page)": lambda: _feed_all(engine), "raw ordered scan": _raw_scan(url)},
            rounds,
        ).run()
    return contest.report("keytrail feed (1,000 a page)", ["raw ordered scan"], {"raw ordered scan": 0.5})


def _follower(url: str, after: int, count: int, out: str) -> None:
    """Follow from ``after`` until ``count`` events arrived; note when each arrived (the monotonic clock)."""
    seen: dict[str, float] = {}
    with Engine.open(url, create=False) as engine:
        for event in engine.follow(after):
            seen[f"{event.stream}/{event.version}"] = time.perf_counter()
            if len(seen) >= count:
                break
    Path(out).write_text(json.dumps(seen))


def follow_latency(url: str, rate: int, seconds: float, workdir: Path, label: str) -> dict[str, Any]:
    """Commit-to-handler latency of a follower process while one writer runs at ``rate`` accesses/s."""
    # durability "normal" on SQLite: one writer thread at durability "full" cannot hold 1,000 commits/s here.
    engine = Engine.open(url, clock=Clock(datetime(2026, 6, 1, tzinfo=UTC)), durability="normal")
    streams = [f"follow-{n}" for n in range(50)]
    for stream in streams:
        engine.access(stream)
    start = _feed_all_last(engine)
    count = int(rate * seconds)
    out = workdir / f"follow-{label.replace(' ', '-')}.json"
    follower = _SPAWN.Process(target=_follower, args=(engine.database.url, start, count, str(out)))
    follower.start()
    time.sleep(2.0)  # the follower process imports keytrail and catches up first
    committed: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(count):
        due = t0 + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        outcome = engine.access(streams[i % len(streams)])
        committed[f"{outcome.stream}/{outcome.version}"] = time.perf_counter()
    achieved = count / (time.perf_counter() - t0)
    follower.join(timeout=120)
    engine.close()
    seen = json.loads(out.read_text())
    latencies = sorted(max(0.0, seen[key] - at) * 1000 for key, at in committed.items())
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\n## follow latency, {label}: {achieved:,.0f} events/s written, {len(latencies)} followed")
    print(f"  commit to handler: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return {"workload": f"follow latency {label}", "rate": achieved, "p50_ms": p50, "p99_ms": p99}


def _feed_all_last(engine: Engine) -> int:
    after = 0
    while True:
        page = engine.feed(after, 10_000)
        if not page.events:
            return after
        after = page.next


def _poller(url: str, naive: bool) -> None:
    """A follower that handles nothing, until its process is terminated: ``engine.follow``, or with
    ``naive`` the same loop reading ``position > checkpoint`` as committed now (no settled horizon)."""
    from keytrail.engine import Event

    with Engine.open(url, create=False) as engine:
        after = _feed_all_last(engine)
        if not naive:
            for _ in engine.follow(after):
                pass
        pages = engine._storage.feed  # noqa: SLF001 (the baseline reads pages without the horizon)
        while True:
            events = pages.page(after, 500, 2**62, Event.from_row)
            if events:
                after = events[-1].position
            time.sleep(0.002 if events and len(events) < 500 else 0.0 if events else 0.001)


def _writers(engine: Engine, streams: list[str], threads: int, calls: int) -> Callable[[], int]:
    def work() -> int:
        def one(offset: int) -> None:
            for i in range(calls):
                engine.access(streams[(offset * calls + i) % len(streams)])

        pool = [threading.Thread(target=one, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return threads * calls

    return work


def write_path(server: str, threads: int, calls: int, rounds: int) -> dict[str, Any]:
    """PostgreSQL writers alone, against the same writers while two follower processes poll the feed."""
    from keytrail.pgcluster import scratch_database

    with scratch_database(server) as url:
        build_log(url, 1000)
        engine = Engine.open(url, clock=Clock(datetime(2026, 6, 1, tzinfo=UTC)))
        streams = stream_ids(1000)
        alone = _writers(engine, streams, threads, calls)

        def followed(naive: bool) -> Callable[[], int]:
            def work() -> int:
                pollers = [_SPAWN.Process(target=_poller, args=(url, naive)) for _ in range(2)]
                for proc in pollers:
                    proc.start()
                time.sleep(2.0)  # started and caught up
                t0 = time.perf_counter()
                done = alone()
                elapsed = time.perf_counter() - t0
                for proc in pollers:
                    proc.terminate()
                    proc.join(timeout=60)
                return done, elapsed  # type: ignore[return-value]

            return work

        names = (
            f"{threads} writers + 2 gap-free followers",
            f"{threads} writers + 2 naive followers",
            f"{threads} writers alone",
        )
        contenders = {names[0]: followed(False), names[1]: followed(True), names[2]: alone}
        contest = Contest("PostgreSQL write path while followed", contenders, rounds).run()
        engine.close()
    return contest.report(names[0], [names[1], names[2]], {names[1]: 0.9})


def run(events: int, rounds: int, workdir: Path, *, postgres: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {
        "catch-up sqlite": catch_up(f"sqlite:///{workdir}/feed-catchup.db", events, rounds, "SQLite"),
        "follow sqlite": follow_latency(f"sqlite:///{workdir}/feed-follow.db", 1000, 3.0, workdir, "SQLite"),
    }
    if postgres:
        import postgres as pg_bench

        from keytrail.pgcluster import scratch_database

        def on_pg(server: str) -> dict[str, Any]:
            out: dict[str, Any] = {}
            with scratch_database(server) as url:
                out["catch-up"] = catch_up(url, events, rounds, "PostgreSQL")
            with scratch_database(server) as url:
                out["follow"] = follow_latency(url, 1000, 3.0, workdir, "PostgreSQL")
            out["write path"] = write_path(server, 4, 300, rounds)
            return out

        result["postgres"] = pg_bench.on_server(on_pg, "feed on PostgreSQL")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("KEYTRAIL_LOG_LEVEL", "warning")
    report_in_scratch(lambda workdir: run(args.events, args.rounds, workdir, postgres=not args.no_postgres))


if __name__ == "__main__":
    main()
