"""The JSON Schema (draft 2020-12) of every ``--json`` output, shipped in the wheel.

Scripts validate against them (``jsonschema``, or any validator) instead of reverse-engineering
the README; keytrail's own tests validate every ``--json`` output they produce against them, so
a field added or renamed without its schema fails the suite.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["FOR_COMMAND", "load"]

# The schema of each command's --json output; errors under --json follow "error" whatever the command.
FOR_COMMAND = {
    "access": "outcome",
    "sign-in": "outcome",
    "register": "outcome",
    "generate-key": "outcome",
    "copy-key": "outcome",
    "save-config": "outcome",
    "proceed": "outcome",
    "account create": "account",
    "keys list": "keys",
    "keys revoke": "key",
    "status": "status",
    "history": "history",
    "replay": "replay",
    "audit": "audit",
    "expiring": "expiring",
    "verify": "verify",
    "digest": "digest",
    "checkpoint keygen": "checkpoint_keygen",
    "checkpoint verify": "checkpoint_verify",
}


def load(name: str) -> dict[str, Any]:
    """The schema called ``name`` (``outcome``, ``error``, ...: the file names under keytrail/schemas)."""
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
