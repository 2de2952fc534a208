"""The module-size check of ``make lint`` fails when a module grows past the limit, and passes the tree as it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_module_size.py"


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_the_tree_passes() -> None:
    result = _check()
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_new_module_over_the_limit_fails(tmp_path: Path) -> None:
    package = tmp_path / "keytrail"
    package.mkdir()
    (package / "small.py").write_text("x = 1\n" * 400)
    (package / "big.py").write_text("x = 1\n" * 401)
    result = _check("--root", str(package))
    assert result.returncode == 1
    assert "big.py has 401 lines" in result.stdout and "small.py" not in result.stdout
