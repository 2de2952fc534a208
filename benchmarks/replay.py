"""Workload 3: replay of every stream, and status reads of many stores.

- ``keytrail replay``: ``Engine.replay(stream)`` for every stream (each a read transaction,
  rebuilding state from events alone and checking every step against the machine);
- ``raw scan``: one raw sqlite3 scan of the same rows in (stream_id, version) order with
  ``json.loads`` of ``data`` (the target: keytrail >= 0.5x of it);
- ``raw per-stream scan``: the same, one query per stream, as a per-stream replay must do;
- status: ``Engine.status(stream)`` for every store against a raw ``SELECT`` of the projection row.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

from common import Contest, build_log, report_in_scratch, stream_ids

from keytrail import Engine, State

_COLUMNS = (
    "position, stream_id, version, trigger, source, dest, reason, data, actor, occurred_at, "
    "idempotency_key, schema_version, prev_hash, hash"
)


def run(stores: int, accesses: int, rounds: int, workdir: Path) -> dict[str, Any]:
    path = workdir / "replay.db"
    events = build_log(f"sqlite:///{path}", stores, accesses=accesses)
    engine = Engine.open(f"sqlite:///{path}", create=False)
    raw = sqlite3.connect(path)
    names = stream_ids(stores)

    def keytrail_replay() -> int:
        count = 0
        for name in names:
            replay = engine.replay(name)
            count += replay.version
        assert replay.state is State.StoreIntegration
        assert not replay.problems
        return count

    def raw_scan() -> int:
        count = 0
        for row in raw.execute(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id NOT LIKE '@%' ORDER BY stream_id, version"
        ):
            json.loads(row[7])
            count += 1
        return count

    def raw_per_stream() -> int:
        count = 0
        for name in names:
            for row in raw.execute(f"SELECT {_COLUMNS} FROM events WHERE stream_id = ? ORDER BY version", (name,)):
                json.loads(row[7])
                count += 1
        return count

    label = f"replay of every stream, {events:,} events in {stores:,} streams (events/s)"
    replay = Contest(
        label,
        {"keytrail replay": keytrail_replay, "raw scan": raw_scan, "raw per-stream scan": raw_per_stream},
        rounds,
    ).run()
    result = replay.report("keytrail replay", ["raw scan", "raw per-stream scan"], {"raw scan": 0.5})

    def keytrail_status() -> int:
        for name in names:
            engine.status(name)
        return stores

    def raw_status() -> int:
        for name in names:
            raw.execute(
                "SELECT stream_id, state, reason, version, head_hash, account_id, key_id, updated_at "
                "FROM streams WHERE stream_id = ?",
                (name,),
            ).fetchone()
        return stores

    status = Contest(
        f"status of {stores:,} stores (reads/s)",
        {"keytrail status": keytrail_status, "raw sqlite3": raw_status},
        rounds,
    ).run()
    result["status"] = status.report("keytrail status", ["raw sqlite3"])
    engine.close()
    raw.close()
    result["events"] = events
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--accesses", type=int, default=23, help="page views per store after onboarding")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    report_in_scratch(lambda workdir: run(args.stores, args.accesses, args.rounds, workdir))


if __name__ == "__main__":
    main()
