"""Workload 1 (and 5): ``access`` on stores already in StoreIntegration, one durable commit per call.

Baselines, in the same process and interleaved rounds:
- raw ``sqlite3`` doing the same reads and writes (projection, saved key's fingerprint, the key,
  the chained event, the projection update, commit) at the same ``synchronous`` setting;
- ``eventsourcing`` 9.5's SQLite persistence saving one event per call, its aggregates kept in
  memory (the library at its fastest; its own default durability).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import Clock, Contest, build_log, report_in_scratch, stream_ids

from keytrail import Engine, State

_CANON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_INSERT = (
    "INSERT INTO events (stream_id, version, trigger, source, dest, reason, data, actor, occurred_at, "
    "idempotency_key, schema_version, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class RawSqlite:
    """What a hand-written sqlite3 program does for one access: the same reads and writes, nothing else."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 5000")
        self.db.execute(f"PRAGMA synchronous = {synchronous}")
        self.db.execute("PRAGMA foreign_keys = ON")

    def access(self, stream: str, now: datetime) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            state, version, head_hash = db.execute(
                "SELECT state, version, head_hash FROM streams WHERE stream_id = ?", (stream,)
            ).fetchone()
            fp, tail = db.execute(
                "SELECT fingerprint, hint FROM store_config WHERE stream_id = ?", (stream,)
            ).fetchone()
            key_id, expires_at, revoked_at = db.execute(
                "SELECT key_id, expires_at, revoked_at FROM api_keys WHERE fingerprint = ?", (fp,)
            ).fetchone()
            stored_now = now.replace(tzinfo=None).isoformat(" ", "microseconds")
            valid = revoked_at is None and stored_now < expires_at
            dest = "StoreIntegration" if valid else "Prompted"
            reason = None if valid else "invalid"
            expires = expires_at.replace(" ", "T") + "+00:00"
            data = {"fingerprint": fp, "hint": tail, "key_id": key_id, "expires_at": expires}
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
            digest = hashlib.sha256(head_hash.encode() + _CANON.encode(body).encode()).hexdigest()
            db.execute(
                _INSERT,
                (
                    stream,
                    version + 1,
                    "access",
                    state,
                    dest,
                    reason,
                    json.dumps(data),
                    None,
                    stored_now,
                    None,
                    1,
                    head_hash,
                    digest,
                ),
            )
            db.execute(
                "UPDATE streams SET state = ?, reason = ?, version = ?, head_hash = ?, updated_at = ? "
                "WHERE stream_id = ? AND version = ?",
                (dest, reason, version + 1, digest, stored_now, stream, version),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()


_STORE_CLASS: list[Any] = []


def _store_class() -> Any:
    """The aggregate class, defined once per process: eventsourcing registers each class by its topic,
    and a second class of the same name (a second call of eventsourcing_app) would be refused."""
    if _STORE_CLASS:
        return _STORE_CLASS[0]
    from eventsourcing.domain import Aggregate, event

    class Store(Aggregate):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            self.name = name
            self.state = "StoreIntegration"

        @event("Accessed")  # type: ignore[misc]
        def access(self, fingerprint: str, at: str) -> None:
            self.state = "StoreIntegration"

    _STORE_CLASS.append(Store)
    return Store


def eventsourcing_app(path: Path, streams: int) -> tuple[Any, list[Any]]:
    """An eventsourcing application on SQLite with one aggregate per store, kept in memory."""
    from eventsourcing.application import Application

    Store = _store_class()  # noqa: N806 (a class)
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})
    aggregates = [Store(f"store-{i}") for i in range(streams)]
    for chunk in range(0, streams, 500):
        app.save(*aggregates[chunk : chunk + 500])
    return app, aggregates


def run(
    stores: int,
    calls: int,
    rounds: int,
    durability: str,
    workdir: Path,
    *,
    with_es: bool = True,
    template: Path | None = None,
) -> dict[str, Any]:
    path = workdir / f"access-{stores}-{durability}.db"
    raw_path = workdir / f"access-raw-{stores}-{durability}.db"
    template = template or workdir / f"template-{stores}.db"
    if not template.exists():  # one build per size, shared by both durability settings
        build_log(f"sqlite:///{template}", stores)
    shutil.copy(template, path)  # the WAL was checkpointed when the builder closed
    shutil.copy(template, raw_path)
    clock = Clock(datetime(2026, 6, 1, tzinfo=UTC))
    engine = Engine.open(f"sqlite:///{path}", clock=clock, durability=durability)  # type: ignore[arg-type]
    raw = RawSqlite(raw_path, "FULL" if durability == "full" else "NORMAL")
    names = stream_ids(stores)
    # Visit stores in a scattered order, as page views of many stores would.
    order = names[::7] + [n for i, n in enumerate(names) if i % 7]
    kt_cycle, raw_cycle = itertools.cycle(order), itertools.cycle(order)

    def keytrail_access() -> int:
        for _ in range(calls):
            engine.access(next(kt_cycle))
        return calls

    def raw_access() -> int:
        for _ in range(calls):
            raw.access(next(raw_cycle), clock())
        return calls

    contenders = {"keytrail access": keytrail_access, "raw sqlite3": raw_access}
    app = None
    if with_es:
        app, aggregates = eventsourcing_app(workdir / f"es-{stores}-{durability}.db", min(stores, 5000))
        es_cycle = itertools.cycle(aggregates)

        def es_save() -> int:
            for _ in range(calls):
                agg = next(es_cycle)
                agg.access("sha256:" + "0" * 64, "2026-06-01T00:00:00.000000+00:00")
                app.save(agg)
            return calls

        contenders["eventsourcing 9.5 save"] = es_save
    label = f"access, {stores:,} stores, durability={durability}"
    contest = Contest(label, contenders, rounds).run()
    targets = {"raw sqlite3": 0.6, "eventsourcing 9.5 save": 1.2} if durability == "full" else {}
    result = contest.report("keytrail access", list(contenders)[1:], targets)
    assert engine.state(names[0]) is State.StoreIntegration
    assert engine.verify().ok, "the benchmark's log must still verify"
    engine.close()
    raw.close()
    for used in (path, raw_path):
        used.unlink()
    result["stores"] = stores
    result["durability"] = durability
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    parser.add_argument("--no-es", action="store_true", help="skip the eventsourcing baseline")
    parser.add_argument("--template", type=Path, help="a log of --stores onboarded stores to copy (built when missing)")
    args = parser.parse_args()
    report_in_scratch(
        lambda workdir: run(
            args.stores,
            args.calls,
            args.rounds,
            args.durability,
            workdir,
            with_es=not args.no_es,
            template=args.template,
        )
    )


if __name__ == "__main__":
    main()
