"""``make test`` names the missing system packages and how to get them; only ``make setup`` installs them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-deps.sh"


def _bare_path(tmp_path: Path) -> dict[str, str]:
    """A PATH with the shell's basics and an apt-get that leaves a mark when called: no dot, no initdb."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "ls", "id", "cat", "echo"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    apt = bin_dir / "apt-get"
    apt.write_text(f"#!/bin/sh\necho called >> {tmp_path}/apt-get-called\n", encoding="utf-8")
    apt.chmod(0o755)
    return {**os.environ, "PATH": str(bin_dir)}


def test_check_names_what_is_missing_and_installs_nothing(tmp_path: Path) -> None:
    """``--check`` (what ``make test`` runs) prints the Debian and Homebrew commands and never calls apt-get."""
    done = subprocess.run(
        [shutil.which("sh") or "/bin/sh", str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        env=_bare_path(tmp_path),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "graphviz" in done.stderr and "apt-get install" in done.stderr and "brew install" in done.stderr
    assert not (tmp_path / "apt-get-called").exists()


def test_make_test_checks_and_ci_sets_up() -> None:
    """The Makefile's test path only checks; .ci/run calls the set-up target itself, before the tests."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pytest_rule = next(line for line in makefile.splitlines() if line.startswith("pytest:"))
    assert "system-check" in pytest_rule and "setup" not in pytest_rule and "system-deps" not in pytest_rule
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci.index("make setup") < ci.index("make test")
