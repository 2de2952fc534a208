"""The public surface: what users import from ``keytrail`` is deliberate, and stays in step with ``__all__``."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import keytrail
from keytrail import errors

PUBLIC_MODULES = [
    "keytrail",
    "keytrail.errors",
    "keytrail.events",
    "keytrail.states",
    "keytrail.testing",
    "keytrail.logs",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_names_exist_once(name: str) -> None:
    """Every name in ``__all__`` is importable and listed once (ruff's RUF022 keeps the lists sorted)."""
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported))
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == []


def test_top_level_exports_exactly_the_public_names() -> None:
    """A public name defined or re-exported at the top level and left out of ``__all__`` fails here."""
    for name in keytrail.__all__:  # they load on first use (PEP 562): load them all, then look
        getattr(keytrail, name)
    public = {
        name for name in dir(keytrail) if not name.startswith("_") and not inspect.ismodule(getattr(keytrail, name))
    }
    assert public == set(keytrail.__all__) - {"__version__"}


def test_every_error_derives_from_the_one_root() -> None:
    """Users catch ``KeytrailError`` and get everything keytrail raises; each leaf has a CLI exit code."""
    leaves = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(leaf, errors.KeytrailError) for leaf in leaves)
    # 1: IntegrityViolation (an audit finding); 4: ConcurrencyConflict (a stale expected version)
    assert {leaf.exit_code for leaf in leaves} <= {1, 2, 3, 4}


def test_the_error_tree_docstring_names_every_error() -> None:
    """The tree drawn in ``keytrail.errors`` (httpx style) lists every class, so it cannot go stale silently."""
    doc = errors.__doc__ or ""
    assert [name for name in errors.__all__ if name not in doc] == []


def test_the_top_level_names_load_on_first_use() -> None:
    """``import keytrail`` (which every ``import keytrail.testing`` runs first) loads no engine; a name loads its home."""
    code = (
        "import sys, keytrail; before = 'keytrail.engine' in sys.modules; "
        "from keytrail import Engine, State; print(before, Engine.__module__, State.__module__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "keytrail.engine.core", "keytrail.states"]
    with pytest.raises(AttributeError, match="module 'keytrail' has no attribute 'Engin'"):
        keytrail.Engin  # noqa: B018 - the attribute access is the test
