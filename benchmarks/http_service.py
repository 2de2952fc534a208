"""Workload 7 (benchmarks/http_service.py: not http.py, which would shadow the standard library's http package
for every module of this folder): ``access`` over HTTP, 32 concurrent keep-alive clients, onboarded stores, durability full.

``keytrail serve`` runs in a subprocess (one uvicorn worker on SQLite); 32 client threads, each
with its own keep-alive connection (``http.client``: the lightest client, so the clients cost
the shared two cores as little as possible), post ``access`` on scattered stores. Reported:
requests/s, p50 and p99 latency, and, in the same interleaved rounds, the ratio to
- the in-process engine driven by 32 threads at once (the same concurrency, no HTTP), and
- raw ``sqlite3`` committing one event per transaction (``access.RawSqlite``, one thread).
Clients and server share the machine, so the HTTP figure is a floor of what a separate client
host would see.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from access import RawSqlite
from common import Clock, Contest, build_log, report_in_scratch, stream_ids

from keytrail import Engine
from keytrail.engine.tokens import Tokens

CLIENTS = 32
_KEYTRAIL = Path(sys.executable).parent / "keytrail"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(url: str, workdir: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    log = (workdir / "serve.log").open("wb")
    command = [str(_KEYTRAIL), "--db", url, "serve", "--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(command, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                conn.close()
                return server, port
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"keytrail serve did not start: {(workdir / 'serve.log').read_text()[-1000:]}")


class HttpClients:
    """32 threads, one keep-alive connection each, posting access; every request's latency kept."""

    def __init__(self, port: int, token: str, order: list[str]) -> None:
        self.port, self.order = port, order
        self.headers = {"Authorization": f"Bearer {token}", "Content-Length": "0"}
        self.connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(CLIENTS)]
        self.latencies: list[float] = []
        self._lock = threading.Lock()
        self._cycle = itertools.cycle(order)

    def _client(self, index: int, calls: int) -> None:
        conn, mine = self.connections[index], []
        for _ in range(calls):
            with self._lock:
                stream = next(self._cycle)
            started = time.perf_counter()
            conn.request("POST", f"/v1/onboardings/{stream}/access", headers=self.headers)
            response = conn.getresponse()
            body = response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"access answered {response.status}: {body[:300]!r}")
        with self._lock:
            self.latencies.extend(mine)

    def round(self, calls: int) -> int:
        per_client = calls // CLIENTS
        for conn in self.connections:  # uvicorn closes a connection idle for 5 s: the other contenders' turn
            conn.close()  # (http.client connects again on the next request)
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda i: self._client(i, per_client), range(CLIENTS)))
        return per_client * CLIENTS

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


def _measure(
    label: str,
    served_url: str,
    engine_url: str,
    baseline: tuple[str, Callable[[], int]],
    *,
    workers: int,
    workdir: Path,
    stores: int,
    calls: int,
    rounds: int,
) -> dict[str, Any]:
    """HTTP clients on ``served_url`` against the in-process engine on ``engine_url`` and ``baseline``, interleaved."""
    with Engine.open(served_url) as opened:
        token = Tokens(opened).create("bench", "drive").token
    server, port = _start_server(served_url, workdir, workers)
    engine = Engine.open(engine_url)  # the system clock, as the server's: 32 threads read it
    names = stream_ids(stores)
    order = names[::7] + [n for i, n in enumerate(names) if i % 7]
    clients = HttpClients(port, token, order)
    engine_cycle, lock = itertools.cycle(order), threading.Lock()

    def in_process() -> int:
        per_thread = calls // CLIENTS

        def worker(_: int) -> None:
            for _ in range(per_thread):
                with lock:
                    stream = next(engine_cycle)
                engine.access(stream)

        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(worker, range(CLIENTS)))
        return per_thread * CLIENTS

    subject = f"keytrail over HTTP, 32 clients, {workers} worker{'s' if workers > 1 else ''}"
    try:
        clients.round(CLIENTS * 2)  # warm up: connections open, routes and statements prepared
        clients.latencies.clear()
        contenders = {
            subject: lambda: clients.round(calls),
            "in-process engine, 32 threads": in_process,
            baseline[0]: baseline[1],
        }
        contest = Contest(label, contenders, rounds).run()
        result = contest.report(subject, list(contenders)[1:], {baseline[0]: 1.0})
        ordered = sorted(clients.latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        print(f"  HTTP latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms (p99/p50 {p99 / p50:.1f}x; goal <= 10x)")
        result.update(stores=stores, clients=CLIENTS, workers=workers, p50_ms=p50, p99_ms=p99)
        assert engine.verify().ok, "the in-process log must still verify"
    finally:
        clients.close()
        server.terminate()
        server.wait(timeout=60)
        engine.close()
    with Engine.open(served_url) as check:
        assert check.verify().ok, "the served log must still verify"
    return result


def run(stores: int, calls: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """SQLite, durability full: one server process, against raw sqlite3 committing each event."""
    template = workdir / f"http-template-{stores}.db"
    build_log(f"sqlite:///{template}", stores)
    served, engine_path, raw_path = (workdir / f"http-{name}.db" for name in ("served", "engine", "raw"))
    for path in (served, engine_path, raw_path):
        shutil.copy(template, path)
    raw = RawSqlite(raw_path, "FULL")
    raw_clock = Clock(datetime(2026, 6, 1, tzinfo=UTC))
    raw_cycle = itertools.cycle(stream_ids(stores))

    def raw_sqlite() -> int:
        for _ in range(calls):
            raw.access(next(raw_cycle), raw_clock())
        return calls

    try:
        return _measure(
            f"access over HTTP, {stores:,} stores, SQLite durability=full",
            f"sqlite:///{served}",
            f"sqlite:///{engine_path}",
            ("raw sqlite3, commit per event", raw_sqlite),
            workers=1,
            workdir=workdir,
            stores=stores,
            calls=calls,
            rounds=rounds,
        )
    finally:
        raw.close()


def run_postgres(stores: int, calls: int, rounds: int, workdir: Path, workers: int = 4) -> dict[str, Any] | None:
    """PostgreSQL (KEYTRAIL_BENCH_POSTGRES_URL, else the suite's throwaway cluster, fsync off): N workers, raw psycopg."""
    from postgres import RawPsycopg

    from keytrail.pgcluster import PostgresCluster, PostgresUnavailable, scratch_database

    cluster = None
    server = os.environ.get("KEYTRAIL_BENCH_POSTGRES_URL")
    if not server:
        try:
            cluster = PostgresCluster.start()
        except PostgresUnavailable as exc:
            print(f"\n## access over HTTP on PostgreSQL: skipped ({exc})")
            return None
        server = cluster.url
    try:
        with (
            scratch_database(server) as served,
            scratch_database(server) as engine_url,
            scratch_database(server) as raw_url,
        ):
            for url in (served, engine_url, raw_url):
                build_log(url, stores)
            raw = RawPsycopg(raw_url)
            raw_clock = Clock(datetime(2026, 6, 1, tzinfo=UTC))
            raw_cycle = itertools.cycle(stream_ids(stores))

            def raw_psycopg() -> int:
                for _ in range(calls):
                    raw.access(next(raw_cycle), raw_clock())
                return calls

            try:
                return _measure(
                    f"access over HTTP, {stores:,} stores, PostgreSQL",
                    served,
                    engine_url,
                    ("raw psycopg, commit per event", raw_psycopg),
                    workers=workers,
                    workdir=workdir,
                    stores=stores,
                    calls=calls,
                    rounds=rounds,
                )
            finally:
                raw.close()
    finally:
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--calls", type=int, default=640, help="requests per round (a multiple of 32)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL with 4 workers instead of SQLite")
    args = parser.parse_args()
    measure = run_postgres if args.postgres else run
    report_in_scratch(lambda workdir: measure(args.stores, args.calls, args.rounds, workdir) or {})


if __name__ == "__main__":
    main()
