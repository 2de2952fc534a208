"""Compare two checkouts of keytrail in one run: ``python benchmarks/compare.py --with PATH [--rounds N]``.

For a refactor's before and after on one machine. The workloads are this tree's benchmark
scripts; each run is a fresh subprocess that imports keytrail from one checkout (its root
first on ``sys.path`` through ``KEYTRAIL_BENCH_TREE``, the path it used is checked in its
result). The two checkouts take turns, first one then the other, alternating who goes first
in each round, so a burst of load from other processes hits both alike; each figure is the
median over rounds, and the ratio is the median of the same-round ratios.

Workloads: ``access-full`` and ``access-normal`` (access.py on onboarded stores, against raw
sqlite3 in the same subprocess; each checkout copies a log built by its own
``benchmarks/common.build_log``, falling back to this tree's), ``mix-full`` and ``mix-normal``
(mix.py: every command on new streams, against raw sqlite3 replaying the SQL that checkout
executes). Each reports the checkout's events/s and its ratio to its own raw baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKLOADS = ("access-full", "access-normal", "mix-full", "mix-normal")


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["KEYTRAIL_BENCH_TREE"] = str(tree)
    env["PYTHONPATH"] = str(tree)
    env.setdefault("KEYTRAIL_LOG_LEVEL", "warning")
    return env


def build_template(tree: Path, path: Path, stores: int) -> None:
    """A log of ``stores`` onboarded stores, written by the checkout's own builder (its internals are its own)."""
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/benchmarks']\n"
        "from common import build_log; build_log('sqlite:///' + sys.argv[2], int(sys.argv[3]))"
    )
    own = subprocess.run(
        [sys.executable, "-c", code, str(tree), str(path), str(stores)],
        check=False,
        env=_env(tree),
        capture_output=True,
        text=True,
    )
    if own.returncode != 0:
        path.unlink(missing_ok=True)
        print(f"  {tree}: its own log builder failed, building with this tree's", file=sys.stderr)
        code = code.replace("sys.argv[1], sys.argv[1]", f"{str(ROOT)!r}, {str(ROOT)!r}")
        subprocess.run([sys.executable, "-c", code, str(tree), str(path), str(stores)], env=_env(tree), check=True)


def measure(workload: str, tree: Path, args: argparse.Namespace, template: Path) -> tuple[float, float]:
    """One run of ``workload`` against ``tree``: (keytrail events/s, ratio to raw sqlite3 in the same run)."""
    kind, durability = workload.split("-")
    if kind == "access":
        argv = ["access.py", "--stores", str(args.stores), "--calls", str(args.calls), "--rounds", str(args.inner)]
        argv += ["--durability", durability, "--no-es", "--template", str(template)]
    else:
        argv = ["mix.py", "--streams", str(args.streams), "--rounds", str(args.inner), "--durability", durability]
    argv[0] = str(HERE / argv[0])
    done = subprocess.run([sys.executable, *argv], check=False, env=_env(tree), capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{workload} failed against {tree}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    used = Path(result.get("keytrail_from", "")).resolve()
    if used != tree / "keytrail":
        raise SystemExit(f"{workload} imported keytrail from {used}, not from {tree}.")
    if kind == "access":
        return result["rates"]["keytrail access"], result["ratio vs raw sqlite3"]
    figures = result[durability]
    return figures["rates"]["keytrail mix"], figures["ratio vs raw sqlite3, same SQL"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--with", dest="other", type=Path, required=True, help="the other checkout's root")
    parser.add_argument("--tree", type=Path, default=ROOT, help="this side's checkout (default: this one)")
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (subprocess pairs per workload)")
    parser.add_argument("--inner", type=int, default=3, help="interleaved rounds inside each subprocess")
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--streams", type=int, default=16, help="new stores per inner round of the mix")
    args = parser.parse_args()
    trees = {"this": args.tree.resolve(), "other": args.other.resolve()}
    for tree in trees.values():
        if not (tree / "keytrail" / "__init__.py").is_file():
            raise SystemExit(f"{tree} holds no keytrail package.")
    rates: dict[str, dict[str, list[float]]] = {w: {"this": [], "other": []} for w in args.workloads}
    ratios: dict[str, dict[str, list[float]]] = {w: {"this": [], "other": []} for w in args.workloads}
    with tempfile.TemporaryDirectory(prefix="keytrail-compare-") as scratch:
        templates = {side: Path(scratch) / f"template-{side}.db" for side in trees}
        if any(w.startswith("access") for w in args.workloads):
            for side, tree in trees.items():
                build_template(tree, templates[side], args.stores)
        for r in range(args.rounds):
            order = ["this", "other"] if r % 2 == 0 else ["other", "this"]
            for workload in args.workloads:
                for side in order:
                    rate, ratio = measure(workload, trees[side], args, templates[side])
                    rates[workload][side].append(rate)
                    ratios[workload][side].append(ratio)
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"# keytrail: this = {trees['this']}, other = {trees['other']}")
    print(f"  {args.rounds} alternating rounds of one subprocess each; medians; load average {os.getloadavg()[0]:.2f}")
    print(f"  {'workload':<14} {'this ev/s':>10} {'other ev/s':>11} {'this/other':>11}   vs raw sqlite3: this, other")
    summary = {}
    for w in args.workloads:
        this, other = (statistics.median(rates[w][s]) for s in ("this", "other"))
        same_round = statistics.median(a / b for a, b in zip(rates[w]["this"], rates[w]["other"], strict=True))
        raw_this, raw_other = (statistics.median(ratios[w][s]) for s in ("this", "other"))
        print(f"  {w:<14} {this:>10,.0f} {other:>11,.0f} {same_round:>10.2f}x   {raw_this:.2f}x, {raw_other:.2f}x")
        summary[w] = {"rates": rates[w], "ratios vs raw": ratios[w], "this/other": same_round}
    print("RESULT " + json.dumps(summary))


if __name__ == "__main__":
    main()
