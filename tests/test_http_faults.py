"""The HTTP service under load and faults: concurrent clients, several workers, SIGKILL, SIGTERM.

Each run drives ``access`` from 32 keep-alive clients on a few shared onboardings and keeps
every acknowledged (200) answer; afterwards the log must hold each of them, no two answers
may claim one version of a stream (a fork), and ``verify`` must pass.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from keytrail.pgcluster import scratch_database
from tests.http_server import SCRIPT, Served, serve, server_env

CLIENTS = 32


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    with scratch_database(postgres_server) as url:
        yield url


class Load:
    """32 clients driving access on shared streams; what the server acknowledged, and what failed in transit."""

    def __init__(self, served: Served, token: str, streams: list[str], per_client: int) -> None:
        self.served, self.token, self.streams, self.per_client = served, token, streams, per_client
        self.acknowledged: list[tuple[str, int]] = []
        self.refused: list[str] = []
        self.lost_in_transit = 0
        self._lock = threading.Lock()

    def client(self, index: int) -> None:
        with self.served.client(self.token) as client:
            for n in range(self.per_client):
                stream = self.streams[(index + n) % len(self.streams)]
                try:
                    response = client.post(f"/v1/onboardings/{stream}/access")
                except httpx.TransportError:  # the worker died with the request: it was never acknowledged
                    with self._lock:
                        self.lost_in_transit += 1
                    continue
                with self._lock:
                    if response.status_code == 200:
                        self.acknowledged.append((stream, response.json()["version"]))
                    else:
                        self.refused.append(f"{response.status_code} {response.text[:200]}")

    def run(self) -> Load:
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(self.client, range(CLIENTS)))
        return self


def check_log(served: Served, token: str, load: Load) -> None:
    """Nothing acknowledged is missing, nothing forked, and the chains verify."""
    with served.client(token) as client:
        verified = client.get("/v1/verify").json()
        assert verified["ok"], verified["problems"]
        logged: set[tuple[str, int]] = set()
        for stream in load.streams:
            events = client.get(f"/v1/onboardings/{stream}/events").json()["events"]
            versions = [event["version"] for event in events]
            assert versions == list(range(1, len(versions) + 1)), stream
            logged.update((stream, version) for version in versions)
    assert len(set(load.acknowledged)) == len(load.acknowledged), "two answers claimed one version: a fork"
    assert set(load.acknowledged) <= logged, "an acknowledged command is missing from the log"


def test_one_sqlite_process_and_32_clients_lose_and_fork_nothing(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path}/keytrail.db", tmp_path) as served:
        token = served.token("load", "admin")
        load = Load(served, token, [f"shared-{n}" for n in range(4)], per_client=10).run()
        assert load.refused == [] and load.lost_in_transit == 0
        assert len(load.acknowledged) == CLIENTS * 10
        check_log(served, token, load)
        with served.client(token) as client:
            events = sum(len(client.get(f"/v1/onboardings/{s}/events").json()["events"]) for s in load.streams)
        assert events == CLIENTS * 10


@pytest.mark.postgres
def test_four_postgres_workers_and_32_clients_lose_and_fork_nothing(pg_url: str, tmp_path: Path) -> None:
    with serve(pg_url, tmp_path, workers=4) as served:
        assert len(served.children()) == 4
        token = served.token("load", "admin")
        load = Load(served, token, [f"shared-{n}" for n in range(4)], per_client=10).run()
        assert load.refused == [] and load.lost_in_transit == 0
        assert len(load.acknowledged) == CLIENTS * 10
        check_log(served, token, load)
        # Whichever worker answers /metrics, it counts the requests of all four.
        line = 'keytrail_http_requests_total{method="POST",route="/v1/onboardings/{stream}/access",status="200"} '
        for _ in range(4):
            text = httpx.get(served.url + "/metrics").text
            assert f"{line}{float(CLIENTS * 10)}" in text, [row for row in text.splitlines() if "access" in row]


@pytest.mark.postgres
def test_a_worker_killed_mid_load_loses_nothing_acknowledged(pg_url: str, tmp_path: Path) -> None:
    with serve(pg_url, tmp_path, workers=4) as served:
        token = served.token("load", "admin")
        load = Load(served, token, [f"shared-{n}" for n in range(4)], per_client=40)
        runner = threading.Thread(target=load.run)
        runner.start()
        while len(load.acknowledged) < 100 and runner.is_alive():
            time.sleep(0.01)
        victim = served.children()[0]
        os.kill(victim, signal.SIGKILL)
        runner.join()
        assert load.refused == []
        assert load.acknowledged, "the load acknowledged nothing"
        check_log(served, token, load)


def test_a_sqlite_server_killed_mid_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/keytrail.db"
    env = server_env(tmp_path)
    with serve(db_url, tmp_path, env=env) as served:
        token = served.token("load", "admin")
        load = Load(served, token, [f"shared-{n}" for n in range(4)], per_client=40)
        runner = threading.Thread(target=load.run)
        runner.start()
        while len(load.acknowledged) < 100 and runner.is_alive():
            time.sleep(0.01)
        served.process.kill()
        runner.join()
    assert load.acknowledged and load.lost_in_transit > 0
    with serve(db_url, tmp_path, env=env) as again:
        check_log(again, token, load)


def test_sigterm_lets_requests_in_flight_finish(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path}/keytrail.db", tmp_path) as served:
        token = served.token("load", "admin")
        load = Load(served, token, [f"shared-{n}" for n in range(4)], per_client=40)
        runner = threading.Thread(target=load.run)
        runner.start()
        while len(load.acknowledged) < 50 and runner.is_alive():
            time.sleep(0.01)
        assert served.stop() == 0
        runner.join()
        log = served.log()
    assert "Traceback" not in log and "request_failed" not in log
    env = served.env
    with serve(served.db_url, tmp_path, env=env) as again:
        check_log(again, token, load)


def test_workers_need_postgresql(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SCRIPT), "--db", f"sqlite:///{tmp_path}/k.db", "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        env=server_env(tmp_path),
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("keytrail: --workers 2 needs a PostgreSQL database") and done.stderr.count("\n") == 1
