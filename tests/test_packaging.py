"""What a user installs: one version, the script and ``python -m``, the license, honest metadata."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import keytrail

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "keytrail"


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_the_version_is_written_once() -> None:
    """pyproject reads the version from ``keytrail/__init__.py``; the installed metadata agrees with it."""
    project = _pyproject()
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "keytrail/__init__.py"
    assert importlib.metadata.version("keytrail") == keytrail.__version__


def test_version_from_the_script_and_python_m() -> None:
    """``keytrail --version`` and ``python -m keytrail --version`` print the one version and exit 0."""
    for command in ([str(SCRIPT), "--version"], [sys.executable, "-m", "keytrail", "--version"]):
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"keytrail {keytrail.__version__}\n", "")


def test_python_m_keytrail_is_the_command() -> None:
    """``python -m keytrail`` runs the same app as the script: a usage error exits 2 with one line."""
    done = subprocess.run(
        [sys.executable, "-m", "keytrail", "no-such-command"], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 2 and done.stderr.startswith("keytrail: "), done.stderr


def test_license_and_classifiers() -> None:
    """The MIT license ships as a file; Python versions, status and OS are declared; the project has its links."""
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    project = _pyproject()["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    classifiers = set(project["classifiers"])
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert {"Development Status :: 3 - Alpha", "Operating System :: OS Independent"} <= classifiers
    assert not any(c.startswith("License ::") for c in classifiers)  # the License-Expression says it
    assert set(project["urls"]) == {"Homepage", "Documentation", "Issues", "Changelog"}


def test_dependencies_leave_the_build_to_the_user() -> None:
    """A library depends on ``psycopg``; the binary wheel is the ``postgres`` extra; tools are a dependency group."""
    pyproject = _pyproject()
    dependencies = pyproject["project"]["dependencies"]
    assert any(d.startswith("psycopg>=") for d in dependencies)
    assert not any("[binary]" in d for d in dependencies)
    extras = pyproject["project"]["optional-dependencies"]
    assert "dev" not in extras
    assert any(d.startswith("psycopg[binary]>=") for d in extras["postgres"])
    dev = pyproject["dependency-groups"]["dev"]
    assert any(d.startswith("pytest>=") for d in dev) and any(d.startswith("ruff>=") for d in dev)
    typer = next(d for d in dependencies if d.startswith("typer"))
    assert typer != "typer>=0.12"  # too low: `make test-lowest` proves the floor


def test_a_lock_is_committed_and_installed_from() -> None:
    """The lock pins what make and CI install; the Makefile installs from it, never the newest of the day."""
    assert (ROOT / "uv.lock").is_file()
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "sync --locked" in makefile
    assert "lowest-direct" in makefile
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "test-lowest" in ci and "smoke" in ci
