"""A throwaway PostgreSQL cluster on a free loopback port, for test suites.

initdb refuses to run as root, so as root the cluster runs as the ``postgres`` system user.
Nothing here is used by keytrail at run time.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresCluster", "PostgresUnavailable", "find_pg_bin", "scratch_database"]


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server programs are not on this machine, or the cluster would not start."""


def find_pg_bin() -> Path:
    """The folder holding initdb and pg_ctl."""
    candidates = [os.environ.get("KEYTRAIL_PG_BIN", ""), *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found and (Path(found).resolve().parent / "initdb").exists():
        return Path(found).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL server programs (initdb, pg_ctl) were not found; install the postgresql package."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres_user() -> tuple[Callable[[], None] | None, int | None, int | None]:
    if os.geteuid() != 0:
        return None, None, None
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "Running as root, and there is no postgres system user to run the cluster as."
        ) from None
    uid, gid = entry.pw_uid, entry.pw_gid

    def demote() -> None:
        os.setgid(gid)
        os.setuid(uid)

    return demote, uid, gid


@dataclass
class PostgresCluster:
    """A running cluster; ``url`` connects as the superuser to its ``postgres`` database."""

    base: Path
    port: int
    bin_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def start(cls) -> PostgresCluster:
        bin_dir = find_pg_bin()
        demote, uid, gid = _as_postgres_user()
        base = Path(tempfile.mkdtemp(prefix="keytrail-pg-"))
        if uid is not None and gid is not None:
            os.chown(base, uid, gid)
        data, port = base / "data", _free_port()
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            # demote (to the postgres user) must run in the child before exec.
            return subprocess.run(
                list(args),
                preexec_fn=demote,
                env=env,
                cwd=base,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        init = run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        if init.returncode != 0:
            shutil.rmtree(base, ignore_errors=True)
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-400:]}")
        options = (
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        started = run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(base / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        if started.returncode != 0:
            log = (base / "server.log").read_text(errors="replace")[-400:] if (base / "server.log").exists() else ""
            shutil.rmtree(base, ignore_errors=True)
            raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()[-300:]} {log}")
        return cls(base, port, bin_dir)

    def stop(self) -> None:
        demote, _, _ = _as_postgres_user()
        subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop"],
            preexec_fn=demote,
            capture_output=True,
            timeout=60,
            cwd=self.base,
            check=False,
        )
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server for one test; dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(server_url)
    name = "kt_" + uuid.uuid4().hex[:12]
    admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
