"""Shared pieces of the benchmarks: timing in interleaved rounds, machine facts, fast log building.

Every figure is a median over rounds in which the contenders take turns, so that a burst of
load from other processes on this shared machine hits all of them alike; ratios are taken
within a round, then their median is reported.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# compare.py measures another checkout with these same benchmarks: KEYTRAIL_BENCH_TREE names its root.
TREE = Path(os.environ.get("KEYTRAIL_BENCH_TREE") or ROOT).resolve()
if str(TREE) not in sys.path:
    sys.path.insert(0, str(TREE))

# Benchmarks measure the engine, not the log renderer: info lines are filtered (warnings still print).
os.environ.setdefault("KEYTRAIL_LOG_LEVEL", "warning")
os.environ.setdefault("KEYTRAIL_SECRET_KEY", "Lawd5wEMcRZcJxuSpep92xKYEuR5m9c5ax8ODdYiE0A=")

import sqlalchemy as sa  # noqa: E402

try:  # the log builder writes rows itself; another tree (compare.py) may keep these elsewhere
    from keytrail.crypto import SecretBox, fingerprint, hint, load_secret_keys
    from keytrail.events import GENESIS_HASH, event_hash, iso_utc
    from keytrail.persistence.authority_store import accounts, api_keys
    from keytrail.persistence.store import config_table, events_table, sqlite_time, streams_table
    from keytrail.persistence.tables import SCHEMA_VERSION
except ImportError:  # pragma: no cover - only the public-API workloads (mix, onboarding) run then
    if TREE == ROOT:
        raise
try:  # a tree from before the authority's log writes no authority events (compare.py's older trees)
    from keytrail.portal.records import Account, ApiKey, AuthorityEvent

    AUTHORITY_LOG = True
except ImportError:  # pragma: no cover
    AUTHORITY_LOG = False

START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
ACCOUNT_ID = "acct_bench0000000000"
EMAIL = "ops@bench.test"


def machine_facts() -> dict[str, str]:
    """What the figures came from."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sa.__version__,
        "load average": " ".join(f"{x:.2f}" for x in load),
    }


class Clock:
    """A clock that moves one millisecond per reading: distinct, increasing event times."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1000)
        return self.now


@dataclass
class Contest:
    """Interleaved rounds of several contenders; each call of a contender returns how many operations it did.

    A contender that leaves part of its work out of its figure returns (operations, seconds counted).
    """

    name: str
    contenders: dict[str, Callable[[], int | tuple[int, float]]]
    rounds: int = 5
    rates: dict[str, list[float]] = field(default_factory=dict)

    def run(self) -> Contest:
        names = list(self.contenders)
        for r in range(self.rounds):
            # Alternate the order so that neither side always runs first in a round.
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                t0 = time.perf_counter()
                done = self.contenders[name]()
                elapsed = time.perf_counter() - t0
                if isinstance(done, tuple):  # (operations, the seconds that count): a contender timed its own parts
                    done, elapsed = done
                self.rates.setdefault(name, []).append(done / elapsed)
        return self

    def median(self, name: str) -> float:
        return statistics.median(self.rates[name])

    def ratio(self, name: str, baseline: str) -> float:
        """The median over rounds of (name's rate / baseline's rate in the same round)."""
        return statistics.median(a / b for a, b in zip(self.rates[name], self.rates[baseline], strict=True))

    def report(self, subject: str, baselines: list[str], targets: dict[str, float] | None = None) -> dict[str, Any]:
        targets = targets or {}
        print(f"\n## {self.name}  ({self.rounds} interleaved rounds, medians)")
        for name in self.contenders:
            spread = f"{min(self.rates[name]):,.0f}-{max(self.rates[name]):,.0f}"
            print(f"  {name:<44} {self.median(name):>11,.0f} /s   (rounds {spread})")
        result: dict[str, Any] = {"workload": self.name, "rates": {n: self.median(n) for n in self.contenders}}
        for base in baselines:
            ratio = self.ratio(subject, base)
            target = targets.get(base)
            verdict = "" if target is None else (f"  target >= {target}x: " + ("MET" if ratio >= target else "MISSED"))
            print(f"  {subject} / {base}: {ratio:.2f}x{verdict}")
            result[f"ratio vs {base}"] = ratio
        return result


def secret_box() -> SecretBox:
    keys, source = load_secret_keys(None, create=False)
    return SecretBox(keys, source)


def _key_for(i: int) -> str:
    return f"kt_bench{i:035d}"[:46].ljust(46, "x")


def onboarded_rows(stream: str, i: int, at: datetime, accesses: int) -> Iterator[dict[str, Any]]:
    """The data of the seven steps of the source document, then ``accesses`` page views, as the engine writes them."""
    key = _key_for(i)
    fp, tail = fingerprint(key), hint(key)
    key_id = f"key_{i:016x}"
    expires = iso_utc(START + timedelta(days=3650))
    signed = {"account_id": ACCOUNT_ID, "email": EMAIL, "via": "password"}
    generated = {"key_id": key_id, "description": "Amazon Sales Channel", "fingerprint": fp, "hint": tail}
    generated["expires_at"] = expires
    verified = {"fingerprint": fp, "hint": tail, "key_id": key_id, "expires_at": expires}
    steps: list[tuple[str, str, str, str | None, dict[str, Any]]] = [
        ("access", "Unverified", "Prompted", "missing", {}),
        ("sign_in", "Prompted", "SignedIn", None, signed),
        ("generate_key", "SignedIn", "KeyGenerated", None, generated),
        ("copy_key", "KeyGenerated", "KeyCopied", None, {"key_id": key_id, "fingerprint": fp, "hint": tail}),
        ("save_config", "KeyCopied", "ConfigSaved", None, {"fingerprint": fp, "hint": tail, "kept": False}),
        ("access", "ConfigSaved", "Validated", None, verified),
        ("proceed", "Validated", "StoreIntegration", None, verified),
    ]
    steps += [("access", "StoreIntegration", "StoreIntegration", None, verified)] * accesses
    for n, (trigger, source, dest, reason, data) in enumerate(steps):
        yield {
            "stream_id": stream,
            "version": n + 1,
            "trigger": trigger,
            "source": source,
            "dest": dest,
            "reason": reason,
            "data": data,
            "actor": None,
            "occurred_at": at + timedelta(microseconds=n),
            "idempotency_key": None,
            "schema_version": SCHEMA_VERSION,
        }


def _authority_rows(event: AuthorityEvent) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first event of an authority entity's stream and its projection row, chained as the engine does."""
    from keytrail.states.authority import LIFECYCLES, AuthorityState, authority_stream

    stream = authority_stream(event.kind, event.entity_id)
    dest = next(end for action, start, end in LIFECYCLES[event.kind].steps if action.value == event.action)
    fields = {
        "stream_id": stream,
        "version": 1,
        "trigger": event.action,
        "source": AuthorityState.New.value,
        "dest": dest.value,
        "reason": None,
        "data": event.data,
        "actor": event.actor,
        "occurred_at": event.at,
        "idempotency_key": None,
        "schema_version": SCHEMA_VERSION,
    }
    digest = event_hash(GENESIS_HASH, {**fields, "occurred_at": iso_utc(event.at)})
    head = {
        "stream_id": stream,
        "state": dest.value,
        "reason": None,
        "version": 1,
        "head_hash": digest,
        "account_id": None,
        "key_id": None,
        "updated_at": event.at,
    }
    return {**fields, "prev_hash": GENESIS_HASH, "hash": digest}, head


def build_log(url: str, stores: int, *, accesses: int = 0, prefix: str = "store", batch: int = 20_000) -> int:
    """Fill a fresh keytrail database with ``stores`` onboarded stores, chained exactly as the engine chains.

    Rows go in with executemany through the same tables (so the same column formats), in a
    few big transactions: a million events in well under a minute, not a million commands.
    """
    from keytrail import Engine

    Engine.open(url).close()  # the schema and its metadata
    box = secret_box()
    engine = sa.create_engine(url)
    sealed = box.seal(_key_for(0))  # one ciphertext shape; only the engine's save_config path opens it
    count = 0
    with engine.begin() as conn:
        if conn.execute(sa.select(accounts.c.account_id)).first() is None:
            conn.execute(
                sa.insert(accounts),
                {
                    "account_id": ACCOUNT_ID,
                    "email": EMAIL,
                    "company": "Bench",
                    "password_hash": "scrypt$unused",
                    "failed_sign_ins": 0,
                    "created_at": START,
                },
            )
            if AUTHORITY_LOG:
                created = AuthorityEvent.account_created(Account(ACCOUNT_ID, EMAIL, "Bench", START), None, None)
                event, head = _authority_rows(created)
                conn.execute(sa.insert(events_table), event)
                conn.execute(sa.insert(streams_table), head)
                count += 1
    events: list[dict[str, Any]] = []
    heads: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []

    sqlite_path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None

    def flush() -> None:
        if sqlite_path is not None:
            _flush_sqlite(sqlite_path, keys, configs, events, heads)
        else:
            with engine.begin() as conn:
                if keys:
                    conn.execute(sa.insert(api_keys), keys)
                    conn.execute(sa.insert(config_table), configs)
                conn.execute(sa.insert(events_table), events)
                conn.execute(sa.insert(streams_table), heads)
        events.clear()
        heads.clear()
        keys.clear()
        configs.clear()

    for i in range(stores):
        stream = f"{prefix}-{i:07d}"
        at = START + timedelta(seconds=i)
        key = _key_for(i)
        key_id = f"key_{i:016x}"
        keys.append(
            {
                "key_id": key_id,
                "account_id": ACCOUNT_ID,
                "description": "Amazon Sales Channel",
                "fingerprint": fingerprint(key),
                "hint": hint(key),
                "ciphertext": sealed,
                "created_at": at,
                "expires_at": START + timedelta(days=3650),
                "revoked_at": None,
            }
        )
        if AUTHORITY_LOG:
            issued = ApiKey(*(keys[-1][name] for name in ApiKey.__dataclass_fields__))
            event, head = _authority_rows(AuthorityEvent.key_generated(issued, None, stream))
            events.append(event)
            heads.append(head)
            count += 1
        configs.append(
            {
                "stream_id": stream,
                "ciphertext": sealed,
                "fingerprint": fingerprint(key),
                "hint": hint(key),
                "saved_at": at,
            }
        )
        prev = GENESIS_HASH
        last: dict[str, Any] = {}
        for fields in onboarded_rows(stream, i, at, accesses):
            digest = event_hash(prev, {**fields, "occurred_at": iso_utc(fields["occurred_at"])})
            events.append({**fields, "prev_hash": prev, "hash": digest})
            prev, last = digest, fields
            count += 1
        heads.append(
            {
                "stream_id": stream,
                "state": "StoreIntegration",
                "reason": None,
                "version": last["version"],
                "head_hash": prev,
                "account_id": ACCOUNT_ID,
                "key_id": key_id,
                "updated_at": last["occurred_at"],
            }
        )
        if len(events) >= batch:
            flush()
    if events:
        flush()
    engine.dispose()
    return count


def _columns(table: sa.Table, rows: list[dict[str, Any]]) -> tuple[str, list[tuple[Any, ...]]]:
    """An INSERT for ``table`` and its rows as tuples, in SQLAlchemy's SQLite formats (the engine's own)."""
    names = list(rows[0])
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    out = []
    for row in rows:
        values = []
        for name in names:
            value = row[name]
            if isinstance(value, datetime):
                value = sqlite_time(value.astimezone(UTC))
            elif isinstance(value, dict):
                value = json.dumps(value)
            values.append(value)
        out.append(tuple(values))
    return sql, out


def _flush_sqlite(path: str, *batches: list[dict[str, Any]]) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("BEGIN IMMEDIATE")
    for table, rows in zip((api_keys, config_table, events_table, streams_table), batches, strict=True):
        if rows:
            sql, values = _columns(table, rows)
            db.executemany(sql, values)
    db.execute("COMMIT")
    db.close()


def stream_ids(stores: int, prefix: str = "store") -> list[str]:
    return [f"{prefix}-{i:07d}" for i in range(stores)]


def fmt(n: float) -> str:
    return f"{n:,.0f}"


def report_in_scratch(measure: Callable[[Path], dict[str, Any]]) -> None:
    """Run one workload in a scratch folder, print its RESULT line for run.py, and remove the folder."""
    import keytrail

    workdir = Path(tempfile.mkdtemp(prefix="keytrail-bench-"))
    try:
        # Which checkout was measured (compare.py checks it).
        print("RESULT " + dump({**measure(workdir), "keytrail_from": str(Path(keytrail.__file__).parent)}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def dump(result: dict[str, Any]) -> str:
    return json.dumps(result, default=str)
