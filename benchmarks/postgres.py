"""Workload 1 on PostgreSQL: ``access`` on integrated stores against raw ``psycopg`` doing the same SQL.

The server is ``KEYTRAIL_BENCH_POSTGRES_URL`` if set, else a throwaway cluster started here (the
test suite's: fsync off, so both sides measure statement and driver overhead, not the disk).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common import Clock, Contest, build_log, dump, stream_ids

from keytrail import Engine, State
from keytrail.pgcluster import PostgresCluster, PostgresUnavailable, scratch_database

_CANON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class RawPsycopg:
    """A hand-written psycopg program doing what one access does: the same reads and writes, one commit."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))

    def access(self, stream: str, now: datetime) -> None:
        from psycopg.types.json import Jsonb

        with self.conn.cursor() as cur:
            cur.execute("SELECT state, version, head_hash FROM streams WHERE stream_id = %s", (stream,))
            state, version, head_hash = cur.fetchone()  # type: ignore[misc]
            cur.execute("SELECT fingerprint, hint FROM store_config WHERE stream_id = %s", (stream,))
            fp, tail = cur.fetchone()  # type: ignore[misc]
            cur.execute("SELECT key_id, expires_at, revoked_at FROM api_keys WHERE fingerprint = %s", (fp,))
            key_id, expires_at, revoked_at = cur.fetchone()  # type: ignore[misc]
            valid = revoked_at is None and now < expires_at
            dest, reason = ("StoreIntegration", None) if valid else ("Prompted", "invalid")
            data = {"fingerprint": fp, "hint": tail, "key_id": key_id, "expires_at": expires_at.isoformat()}
            body = {
                "stream_id": stream,
                "version": version + 1,
                "trigger": "access",
                "source": state,
                "dest": dest,
                "reason": reason,
                "data": data,
                "actor": None,
                "occurred_at": now.isoformat(timespec="microseconds"),
                "idempotency_key": None,
                "schema_version": 1,
            }
            digest = hashlib.sha256((head_hash + _CANON.encode(body)).encode()).hexdigest()
            cur.execute(
                "INSERT INTO events (stream_id, version, trigger, source, dest, reason, data, actor, occurred_at, "
                "idempotency_key, schema_version, prev_hash, hash) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING position",
                (
                    stream,
                    version + 1,
                    "access",
                    state,
                    dest,
                    reason,
                    Jsonb(data),
                    None,
                    now,
                    None,
                    1,
                    head_hash,
                    digest,
                ),
            )
            cur.execute(
                "UPDATE streams SET state = %s, reason = %s, version = %s, head_hash = %s, updated_at = %s "
                "WHERE stream_id = %s AND version = %s",
                (dest, reason, version + 1, digest, now, stream, version),
            )
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def run(server: str, stores: int, calls: int, rounds: int) -> dict[str, Any]:
    with scratch_database(server) as kt_url, scratch_database(server) as raw_url:
        build_log(kt_url, stores)
        build_log(raw_url, stores)
        clock = Clock(datetime(2026, 6, 1, tzinfo=UTC))
        engine = Engine.open(kt_url, clock=clock)
        raw = RawPsycopg(raw_url)
        names = stream_ids(stores)
        kt_cycle, raw_cycle = itertools.cycle(names), itertools.cycle(names)

        def keytrail_access() -> int:
            for _ in range(calls):
                engine.access(next(kt_cycle))
            return calls

        def raw_access() -> int:
            for _ in range(calls):
                raw.access(next(raw_cycle), clock())
            return calls

        contest = Contest(
            f"PostgreSQL access, {stores:,} stores",
            {"keytrail access": keytrail_access, "raw psycopg": raw_access},
            rounds,
        ).run()
        result = contest.report("keytrail access", ["raw psycopg"], {"raw psycopg": 0.5})
        assert engine.state(names[0]) is State.StoreIntegration
        assert engine.verify().ok
        engine.close()
        raw.close()
    return result


def on_server(measure: Callable[[str], dict[str, Any]], what: str) -> dict[str, Any] | None:
    """``measure(server_url)`` on the given server or a throwaway cluster; None when there is no PostgreSQL."""
    given = os.environ.get("KEYTRAIL_BENCH_POSTGRES_URL")
    if given:
        return measure(given)
    try:
        cluster = PostgresCluster.start()
    except PostgresUnavailable as exc:
        print(f"\n## {what}: skipped ({exc})")
        return None
    try:
        os.environ.setdefault("XDG_DATA_HOME", tempfile.mkdtemp(prefix="keytrail-bench-"))
        return measure(cluster.url)
    finally:
        cluster.stop()


def bench(stores: int, calls: int, rounds: int) -> dict[str, Any] | None:
    """The PostgreSQL workload on the given server or a throwaway cluster; None when there is no PostgreSQL."""
    return on_server(lambda server: run(server, stores, calls, rounds), "PostgreSQL access")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("RESULT " + dump(bench(args.stores, args.calls, args.rounds)))


if __name__ == "__main__":
    main()
