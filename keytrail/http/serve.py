"""``keytrail serve``: uvicorn over :func:`~keytrail.http.create_app`, in one process or ``--workers N``.

The database is opened (and created) once before any worker starts, so a bad URL or a
missing encryption key is one clear error, and the workers find the schema and the key
file ready. Workers get the URL through the environment and build their own app (each its
own engine). SIGTERM (and Ctrl-C) stop accepting connections and let the requests in flight
finish, up to ``DRAIN_SECONDS``; a command is one database transaction, so whatever is cut
is rolled back whole, never written half.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile

from fastapi import FastAPI

from keytrail.engine import Engine
from keytrail.errors import InvalidInput
from keytrail.http.app import create_app
from keytrail.logs import configure_logging

__all__ = ["DRAIN_SECONDS", "app_from_environment", "serve"]

SERVE_URL = "KEYTRAIL_SERVE_DATABASE_URL"
DRAIN_SECONDS = 30


def _drained(signum: int, frame: object) -> None:
    raise SystemExit(0)


def app_from_environment() -> FastAPI:
    """The app of one worker: the database URL that ``serve`` put in the environment."""
    configure_logging(level=os.environ.get("KEYTRAIL_LOG_LEVEL") or "info")
    return create_app(os.environ[SERVE_URL])


def serve(url: str, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Run the service until SIGTERM or Ctrl-C. ``workers`` > 1 needs PostgreSQL (SQLite has one writer)."""
    import uvicorn

    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        raise InvalidInput(f"--workers must be from 1 to 64, not {workers!r}.")
    with Engine.open(url) as engine:  # created here once, before any worker races to create it
        dialect, shown = engine.database.dialect, engine.database.shown
    if workers > 1 and dialect != "postgresql":
        raise InvalidInput(
            f"--workers {workers} needs a PostgreSQL database: SQLite ({shown}) has one writer at a time, so extra "
            "worker processes would only queue for it. Run one worker (its commands share durable commits), or use "
            "postgresql+psycopg://..."
        )
    os.environ[SERVE_URL] = url
    shared_metrics = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shared_metrics = tempfile.mkdtemp(prefix="keytrail-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared_metrics
    print(
        f"keytrail: serving {shown} on http://{host}:{port} with {workers} worker{'s' if workers > 1 else ''}; "
        "stop with Ctrl-C or SIGTERM.",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn drains, then raises the SIGTERM it caught again with the handler it found: this one, so a
    # drained stop exits 0, as service managers expect, rather than dying of the signal.
    signal.signal(signal.SIGTERM, _drained)
    try:
        uvicorn.run(
            "keytrail.http.serve:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,  # keytrail's own access log has the request id and never a header's value
            server_header=False,
            timeout_graceful_shutdown=DRAIN_SECONDS,
        )
    finally:
        if shared_metrics is not None:
            shutil.rmtree(shared_metrics, ignore_errors=True)
