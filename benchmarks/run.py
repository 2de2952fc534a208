"""Run every keytrail benchmark against its same-run baselines: ``python benchmarks/run.py [--quick]``.

Workloads (see each module's docstring): 1 access hot path (SQLite at both durability settings,
PostgreSQL), group commit (16 threads of one engine), 2 full onboarding, 3 replay and status,
4 verify and export, 5 growth, 6 an
onboarding-shaped mix of every command on new streams against raw sqlite3 replaying the same
SQL (both durability settings), 7 access over HTTP from 32 keep-alive clients (``keytrail serve``)
against the in-process engine at the same concurrency and raw sqlite3, 8 start-up of ``keytrail --help``
and ``keytrail status`` against ``import typer, rich``, 9 the feed (catch-up, follow latency, the write
path while followed). Figures are medians over interleaved rounds; ratios are
medians of same-round ratios. ``--quick`` (what ``make bench`` runs) keeps to a few minutes;
the full run builds a 1,000,000-event log. To measure two checkouts against each other (before
and after a refactor), use ``benchmarks/compare.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import access
import feed
import group_commit
import http_service
import mix
import onboarding
import postgres
import replay
import startup
import verify
from common import dump, machine_facts

QUICK = {
    "access": {"stores": 1000, "calls": 400, "rounds": 7},
    "onboarding": {"stores": 15, "rounds": 3},
    "mix": {"streams": 16, "rounds": 5},
    "replay": {"stores": 1000, "accesses": 23, "rounds": 5},
    "verify": {"stores": 10_000, "accesses": 3, "rounds": 3},
    "growth_access": [10_000, 100_000],
    "growth_verify": [],
    "postgres": {"stores": 1000, "calls": 400, "rounds": 5},
    "group_commit": {"stores": 1000, "calls": 400, "rounds": 5, "threads": 16},
    "http": {"stores": 200, "calls": 640, "rounds": 3},
    "startup": {"rounds": 15},
    "feed": {"events": 100_000, "rounds": 3},
}
FULL = {
    "access": {"stores": 1000, "calls": 2000, "rounds": 7},
    "onboarding": {"stores": 50, "rounds": 5},
    "mix": {"streams": 40, "rounds": 7},
    "replay": {"stores": 5000, "accesses": 23, "rounds": 5},
    "verify": {"stores": 10_000, "accesses": 3, "rounds": 3},
    "growth_access": [10_000, 100_000],
    "growth_verify": [100_000],
    "postgres": {"stores": 1000, "calls": 1000, "rounds": 7},
    "group_commit": {"stores": 1000, "calls": 800, "rounds": 7, "threads": 16},
    "http": {"stores": 200, "calls": 1280, "rounds": 5},
    # Not in --quick: four workers take a while to start, and the cluster has fsync off (no durability).
    "http_postgres": {"stores": 200, "calls": 1280, "rounds": 5},
    "startup": {"rounds": 30},
    "feed": {"events": 1_000_000, "rounds": 3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the sizes `make bench` runs (a few minutes)")
    parser.add_argument("--only", nargs="*", default=None, help="workloads to run: " + ", ".join(QUICK))
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    sizes: dict[str, Any] = QUICK if args.quick else FULL
    only = set(args.only or sizes)
    facts = machine_facts()
    print("# keytrail benchmarks" + (" (--quick)" if args.quick else " (full)"))
    print("  " + ", ".join(f"{k}: {v}" for k, v in facts.items()))
    print("  logging: KEYTRAIL_LOG_LEVEL=warning (info lines filtered); SQLite WAL; figures are medians")
    results: dict[str, Any] = {"machine": facts, "quick": args.quick}
    workdir = Path(tempfile.mkdtemp(prefix="keytrail-bench-"))
    started = time.perf_counter()
    try:
        if "startup" in only:
            results["startup"] = startup.run(sizes["startup"]["rounds"], workdir)
        if "access" in only:
            a = sizes["access"]
            results["access full"] = access.run(a["stores"], a["calls"], a["rounds"], "full", workdir)
            results["access normal"] = access.run(
                a["stores"], a["calls"], a["rounds"], "normal", workdir, with_es=False
            )
        if "group_commit" in only:
            g = sizes["group_commit"]
            results["group commit"] = group_commit.run(g["stores"], g["calls"], g["rounds"], g["threads"], workdir)
            results["group commit postgres"] = postgres.on_server(
                lambda server: group_commit.run_postgres(server, g["stores"], g["calls"], g["rounds"], g["threads"]),
                "group commit on PostgreSQL",
            )
        if "feed" in only:
            results["feed"] = feed.run(sizes["feed"]["events"], sizes["feed"]["rounds"], workdir)
        if "postgres" in only:
            p = sizes["postgres"]
            results["postgres"] = postgres.bench(p["stores"], p["calls"], p["rounds"])
        if "http" in only:
            h = sizes["http"]
            results["http"] = http_service.run(h["stores"], h["calls"], h["rounds"], workdir)
        if "http_postgres" in sizes and ("http" in only or "http_postgres" in only):
            h = sizes["http_postgres"]
            results["http postgres"] = http_service.run_postgres(h["stores"], h["calls"], h["rounds"], workdir)
        if "onboarding" in only:
            o = sizes["onboarding"]
            results["onboarding"] = onboarding.run(o["stores"], o["rounds"], workdir)
        if "mix" in only:
            m = sizes["mix"]
            results["mix"] = mix.run(m["streams"], m["rounds"], workdir)
        if "replay" in only:
            r = sizes["replay"]
            results["replay"] = replay.run(r["stores"], r["accesses"], r["rounds"], workdir)
        if "verify" in only:
            v = sizes["verify"]
            results["verify"] = verify.run(v["stores"], v["accesses"], v["rounds"], workdir)
        if "growth_access" in only or "access" in only:
            a = sizes["access"]
            growth: dict[str, dict[int, Any]] = {"full": {}, "normal": {}}
            growth["full"][a["stores"]] = results.get("access full")
            growth["normal"][a["stores"]] = results.get("access normal")
            for stores in sizes["growth_access"]:
                for durability in ("full", "normal"):
                    growth[durability][stores] = access.run(stores, a["calls"], 5, durability, workdir, with_es=False)
                for leftover in workdir.glob("template-*"):
                    leftover.unlink()
            results["growth access"] = growth
            print("\n## growth: access by number of stores (per-event cost must not grow)")
            for durability, by_size in growth.items():
                for stores, res in by_size.items():
                    if res:
                        rate, ratio = res["rates"]["keytrail access"], res["ratio vs raw sqlite3"]
                        print(
                            f"  durability={durability:<6} {stores:>9,} stores: {rate:>8,.0f} events/s, "
                            f"{ratio:.2f}x raw sqlite3 in the same run"
                        )
        if "growth_verify" in only or "verify" in only:
            growth_v = {}
            if "verify" in results:
                growth_v[results["verify"]["events"]] = results["verify"]
            for stores in sizes["growth_verify"]:
                res = verify.run(stores, 3, 1, workdir)
                growth_v[res["events"]] = res
                for leftover in workdir.glob("verify-*"):
                    leftover.unlink()
            results["growth verify"] = growth_v
            print("\n## growth: verify by log size (linear time, constant memory)")
            for events, res in growth_v.items():
                kv = res["keytrail verify"]
                print(f"  {events:>9,} events: {kv['events/s']:>8,.0f} events/s, peak RSS {kv['peak_mb']:.1f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n# done in {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    else:
        print("RESULTS " + dump(results))


if __name__ == "__main__":
    main()
