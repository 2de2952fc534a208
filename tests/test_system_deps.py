"""The system packages: ``--check`` names what is missing and how to get it; ``make test`` (``--auto``) installs
them only as root on Debian, saying so; ``make setup`` installs them."""

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
    """``--check`` prints the Debian and Homebrew commands and never calls apt-get."""
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


def test_auto_installs_only_as_root_and_says_so(tmp_path: Path) -> None:
    """``--auto`` (what ``make test`` runs) installs what is missing as root on Debian, never silently."""
    done = subprocess.run(
        [shutil.which("sh") or "/bin/sh", str(SCRIPT), "--auto"],
        capture_output=True,
        text=True,
        env=_bare_path(tmp_path),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    if os.geteuid() == 0:
        assert "make test is installing the system packages" in done.stderr and "graphviz" in done.stderr
        assert (tmp_path / "apt-get-called").exists()
    else:
        assert "apt-get install" in done.stderr and "brew install" in done.stderr
        assert not (tmp_path / "apt-get-called").exists()


def test_make_test_sets_up_what_it_may_and_ci_sets_up_first() -> None:
    """The Makefile's test path runs --auto; .ci/run calls the set-up target itself, before the tests."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pytest_rule = next(line for line in makefile.splitlines() if line.startswith("pytest:"))
    assert "system-auto" in pytest_rule and "setup" not in pytest_rule
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci.index("make setup") < ci.index("make test")
