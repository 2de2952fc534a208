"""Workload 4 (and 5): verify and export of a big log, events/s and peak RSS, against a raw re-hash.

Each measurement runs in a fresh child process, so its peak RSS (``ru_maxrss``) is its own:
- ``keytrail verify``: ``Engine.verify()`` (chains, versions, legality, projections);
- ``keytrail export``: ``Engine.events()`` written as JSON lines (``RecordedEvent.as_dict``) to /dev/null;
- ``raw re-hash``: a hand-written sqlite3 scan in (stream_id, version) order that parses ``data``,
  rebuilds the canonical JSON and recomputes every sha256 chain, checking nothing else;
- ``raw export``: the same scan dumping each row as a JSON line.
The log is built fast (bulk inserts of correctly chained rows), not through engine commands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import build_log, report_in_scratch

_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_SCAN = (
    "SELECT position, stream_id, version, trigger, source, dest, reason, data, actor, occurred_at, "
    "idempotency_key, schema_version, prev_hash, hash FROM events ORDER BY stream_id, version"
)


def raw_rehash(path: str) -> int:
    db = sqlite3.connect(path)
    count = bad = 0
    stream, head = None, "0" * 64
    for row in db.execute(_SCAN):
        _pos, sid, version, trigger, source, dest, reason, data, actor, occurred, idem, sv, prev, digest = row
        if sid != stream:
            stream, head = sid, "0" * 64
        body = {
            "stream_id": sid,
            "version": version,
            "trigger": trigger,
            "source": source,
            "dest": dest,
            "reason": reason,
            "data": json.loads(data),
            "actor": actor,
            "occurred_at": occurred[:10] + "T" + occurred[11:] + "+00:00",
            "idempotency_key": idem,
            "schema_version": sv,
        }
        if prev != head or hashlib.sha256((prev + _ENCODE(body)).encode()).hexdigest() != digest:
            bad += 1
        head = digest
        count += 1
    assert bad == 0
    return count


def raw_export(path: str) -> int:
    db = sqlite3.connect(path)
    names = [c.split(".")[-1] for c in _SCAN[7 : _SCAN.index(" FROM")].split(", ")]
    count = 0
    with open("/dev/null", "w") as out:
        for row in db.execute(_SCAN):
            record = dict(zip(names, row, strict=True))
            record["data"] = json.loads(record["data"])
            record["occurred_at"] = record["occurred_at"].replace(" ", "T") + "+00:00"
            out.write(json.dumps(record) + "\n")
            count += 1
    return count


def keytrail_verify(path: str) -> int:
    from keytrail import Engine

    with Engine.open(f"sqlite:///{path}", create=False) as engine:
        report = engine.verify()
    assert report.ok, report.problems[:3]
    return report.events


def keytrail_export(path: str) -> int:
    from keytrail import Engine

    count = 0
    with Engine.open(f"sqlite:///{path}", create=False) as engine, open("/dev/null", "w") as out:
        for event in engine.events():
            out.write(json.dumps(event.as_dict()) + "\n")
            count += 1
    return count


CHILDREN = {
    "keytrail verify": keytrail_verify,
    "raw re-hash": raw_rehash,
    "keytrail export": keytrail_export,
    "raw export": raw_export,
}


def child(kind: str, path: str) -> None:
    t0 = time.perf_counter()
    count = CHILDREN[kind](path)
    elapsed = time.perf_counter() - t0
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
    print(json.dumps({"events": count, "seconds": elapsed, "peak_mb": peak_kb / 1024}))


def measure(kind: str, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(stores: int, accesses: int, rounds: int, workdir: Path, kinds: list[str] | None = None) -> dict[str, Any]:
    path = workdir / f"verify-{stores}.db"
    t0 = time.perf_counter()
    events = build_log(f"sqlite:///{path}", stores, accesses=accesses)
    built = time.perf_counter() - t0
    print(f"\n## verify and export, {events:,} events in {stores:,} streams ({rounds} interleaved rounds, medians)")
    print(
        f"  (log built in {built:.1f} s, {events / built:,.0f} events/s; database {path.stat().st_size / 2**20:.0f} MB)"
    )
    kinds = kinds or list(CHILDREN)
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for r in range(rounds):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            samples[kind].append(measure(kind, path))
    result: dict[str, Any] = {"workload": f"verify/export {events} events", "events": events}
    for kind in kinds:
        rate = statistics.median(s["events"] / s["seconds"] for s in samples[kind])
        peak = max(s["peak_mb"] for s in samples[kind])
        print(f"  {kind:<44} {rate:>11,.0f} events/s   peak RSS {peak:6.1f} MB")
        result[kind] = {"events/s": rate, "peak_mb": peak}
    for mine, base, target in (("keytrail verify", "raw re-hash", 0.7), ("keytrail export", "raw export", None)):
        if mine in samples and base in samples:
            ratio = statistics.median(
                (a["events"] / a["seconds"]) / (b["events"] / b["seconds"])
                for a, b in zip(samples[mine], samples[base], strict=True)
            )
            verdict = "" if target is None else f"  target >= {target}x: " + ("MET" if ratio >= target else "MISSED")
            print(f"  {mine} / {base}: {ratio:.2f}x{verdict}")
            result[f"{mine} / {base}"] = ratio
    if "keytrail verify" in result and events >= 1_000_000:
        peak = result["keytrail verify"]["peak_mb"]
        print(
            f"  keytrail verify peak RSS at {events:,} events: {peak:.1f} MB  target < 150 MB: "
            + ("MET" if peak < 150 else "MISSED")
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=10_000)
    parser.add_argument("--accesses", type=int, default=3, help="page views per store after onboarding")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    report_in_scratch(lambda workdir: run(args.stores, args.accesses, args.rounds, workdir))


if __name__ == "__main__":
    main()
