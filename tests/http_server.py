"""A real ``keytrail serve`` process for the HTTP tests: a free loopback port, ready when /readyz says so.

No test client stands in for the server: every HTTP test talks over a socket to uvicorn in a
subprocess, whose stderr (the access log and the engine's logs) is kept for the secrets scan.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from keytrail.crypto import generate_secret_key

SCRIPT = Path(sys.executable).parent / "keytrail"
EMAIL = "ops@acme.test"
PASSWORD = "correct horse battery staple"
# Starting uvicorn and importing FastAPI takes a second or two here; a loaded machine may take far longer.
READY_WITHIN = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a server and of the CLI calls beside it: one encryption key, logs at info."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTRAIL_")}
    env.update(
        KEYTRAIL_SECRET_KEY=generate_secret_key(),
        KEYTRAIL_LOG_LEVEL="info",
        XDG_DATA_HOME=str(folder / "xdg"),
        **extra,
    )
    if "KEYTRAIL_REQUIRE_POSTGRES" in os.environ:
        env["KEYTRAIL_REQUIRE_POSTGRES"] = os.environ["KEYTRAIL_REQUIRE_POSTGRES"]
    return env


@dataclass
class Served:
    """One running server: its base URL, database, environment, process and log file."""

    url: str
    db_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The keytrail console script on the server's database, with the server's environment."""
        return subprocess.run(
            [str(SCRIPT), "--db", self.db_url, *args],
            check=False,
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )

    def token(self, name: str, scope: str) -> str:
        done = self.cli("token", "create", "--name", name, "--scope", scope, "--json")
        assert done.returncode == 0, done.stderr
        created = json.loads(done.stdout)
        assert created["name"] == name and created["scope"] == scope
        token: str = created["token"]
        self.tokens[name] = token
        return token

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def children(self) -> list[int]:
        """The worker processes uvicorn's supervisor started (with --workers N)."""
        found: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:  # gone already
                    continue
                if b"spawn_main" in command:  # not multiprocessing's resource tracker
                    found.append(int(pid))
        return found

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a hang is a failure: the assertion below reports it
                self.process.kill()
                self.process.wait()
                raise AssertionError("keytrail serve did not stop within 60 s of SIGTERM") from None
        return self.process.returncode


def wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"keytrail serve exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"keytrail serve was not ready within {READY_WITHIN} s: {log_path.read_text()[-2000:]}")


@contextmanager
def serve(db_url: str, folder: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Run ``keytrail serve`` on ``db_url`` until the block ends (then SIGTERM, and it must exit cleanly)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = env or server_env(folder)
    port = free_port()
    log_path = folder / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SCRIPT), "--db", db_url, "serve", "--port", str(port), "--workers", str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    served = Served(f"http://127.0.0.1:{port}", db_url, env, process, log_path)
    try:
        wait_ready(served.url, process, log_path)
        yield served
    finally:
        served.stop()
