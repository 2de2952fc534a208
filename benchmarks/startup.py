"""Start-up: ``keytrail --help`` and ``keytrail status`` (a small SQLite database) against ``import typer, rich``.

Every keytrail command pays for its start before it does anything; the goal (issue 16) is
``--help`` within 2x and ``status`` within 4x of a bare ``python -c "import typer, rich"``, the
floor any typer-and-rich program has. Each round runs the three once, interleaved, so a busy
machine slows them alike; the ratios are medians of same-round ratios.
Run alone: ``python benchmarks/startup.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGETS = {"keytrail --help": 2.0, "keytrail status": 4.0}


def _keytrail() -> list[str]:
    """The console script beside this interpreter, as users run it; ``python -m keytrail`` without one."""
    script = Path(sys.executable).parent / "keytrail"
    return [str(script)] if script.exists() else [sys.executable, "-m", "keytrail"]


def _seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def run(rounds: int, workdir: Path) -> dict[str, Any]:
    db = workdir / "startup.db"
    env = {**os.environ, "KEYTRAIL_DATABASE_URL": f"sqlite:///{db}", "XDG_DATA_HOME": str(workdir / "xdg")}
    keytrail = _keytrail()
    for store in ("acme", "globex", "initech"):  # a small database: three onboardings
        subprocess.run([*keytrail, "access", store], check=True, stdout=subprocess.DEVNULL, env=env)
    commands = {
        "import typer, rich": [sys.executable, "-c", "import typer, rich"],
        "keytrail --help": [*keytrail, "--help"],
        "keytrail status": [*keytrail, "status"],
    }
    for command in commands.values():  # warm the file cache and the bytecode
        _seconds(command, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            times[name].append(_seconds(command, env))
    base = times["import typer, rich"]
    result: dict[str, Any] = {"rounds": rounds, "median ms": {}, "ratio": {}}
    print(f"\n## start-up (median of {rounds} interleaved rounds)")
    for name, measured in times.items():
        ms = statistics.median(measured) * 1000
        result["median ms"][name] = round(ms, 1)
        if name in TARGETS:
            ratio = statistics.median(t / b for t, b in zip(measured, base, strict=True))
            result["ratio"][name] = round(ratio, 2)
            verdict = "ok" if ratio <= TARGETS[name] else "OVER"
            print(
                f"  {name:<20} {ms:7.1f} ms  {ratio:5.2f}x import typer, rich (goal <= {TARGETS[name]:.0f}x: {verdict})"
            )
        else:
            print(f"  {name:<20} {ms:7.1f} ms  (the floor)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keytrail-startup-") as scratch:
        run(args.rounds, Path(scratch))


if __name__ == "__main__":
    main()
