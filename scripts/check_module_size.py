"""Fail when a module under keytrail/ has more than 400 lines (``make lint`` runs it).

A module that long holds several concerns; split it by what each part owns. The modules
listed in OVERSIZE were that long before the check existed; each is to be split (issue 10).
An entry that is no longer over the limit, or no longer exists, must be removed, so the
list only shrinks.

Usage: python scripts/check_module_size.py [--root DIR]   (default: the keytrail package)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

LIMIT = 400

# Paths relative to the package root. Do not add to this list: split the module instead.
OVERSIZE: set[str] = set()  # every module of issue 10's list was split


def problems(root: Path) -> list[str]:
    """One sentence per module over the limit (not allow-listed) and per allow-listed module no longer over it."""
    found: list[str] = [
        f"{root.name}/{name} is listed in OVERSIZE but does not exist: remove it from {Path(__file__).name}."
        for name in sorted(OVERSIZE)
        if not (root / name).is_file()
    ]
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        with path.open("rb") as handle:
            lines = sum(1 for _ in handle)
        if lines > LIMIT and name not in OVERSIZE:
            found.append(
                f"{root.name}/{name} has {lines} lines, over the limit of {LIMIT}: split it by what each part owns."
            )
        elif lines <= LIMIT and name in OVERSIZE:
            found.append(
                f"{root.name}/{name} has {lines} lines, within the limit of {LIMIT}: remove it from OVERSIZE in {Path(__file__).name}."
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent / "keytrail")
    args = parser.parse_args(argv)
    found = problems(args.root)
    for problem in found:
        print(problem)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
