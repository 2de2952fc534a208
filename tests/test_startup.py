"""Start-up cost: what ``keytrail --help`` and ``import keytrail`` load (the timing itself is benchmarks/startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("keytrail.engine", "keytrail.persistence", "sqlalchemy", "sqlmodel", "psycopg", "transitions", "structlog")

LOADED = """
import json, sys
sys.argv = ["keytrail", *ARGS]
if ARGS:
    from keytrail.cli import main
    try:
        main()
    except SystemExit:
        pass
else:
    import keytrail
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _loaded(*args: str) -> list[str]:
    code = f"ARGS = {list(args)!r}\n" + LOADED
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    modules: list[str] = json.loads(done.stderr.splitlines()[-1])
    return [m for m in modules if m.startswith(HEAVY)]


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("status", "--help"), ()], ids=repr)
def test_help_and_import_load_no_engine_and_no_driver(args: tuple[str, ...]) -> None:
    """Help, the version and a bare ``import keytrail`` load neither the engine nor SQLAlchemy nor a driver."""
    assert _loaded(*args) == []


def test_a_public_name_loads_on_first_use() -> None:
    """``from keytrail import Engine`` still works: the name loads its module when first asked for."""
    code = "import sys, keytrail; assert 'sqlalchemy' not in sys.modules; from keytrail import Engine; print(Engine.__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "keytrail.engine.core"), done.stderr
