"""Validate what a ``keytrail ... --json`` run printed against the schemas shipped in keytrail/schemas.

The CLI tests call :func:`check_json_output` on every run, so every ``--json`` output the suite
produces is checked: stdout against the command's schema, stderr (an error) against ``error``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

import jsonschema

from keytrail import schemas

_GLOBAL_WITH_VALUE = {"--db"}
_GROUPS = {"account", "keys", "checkpoint"}


@cache
def _validator(name: str) -> Any:
    schema = schemas.load(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def command_of(args: Sequence[str]) -> str:
    """The command an argument list runs (``keys list``), global options skipped wherever they stand."""
    words: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in _GLOBAL_WITH_VALUE:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        words.append(arg)
        if len(words) == 2 or words[0] not in _GROUPS:
            break
    return " ".join(words[:2]) if words and words[0] in _GROUPS else (words[0] if words else "")


def check_json_output(args: Sequence[str], stdout: str, stderr: str, exit_code: int) -> None:
    """Under ``--json``: stdout validates against the command's schema, an error on stderr against ``error``."""
    if "--json" not in args or "--help" in args:
        return
    command = command_of(args)
    if stdout.strip() and command in schemas.FOR_COMMAND:
        _validator(schemas.FOR_COMMAND[command]).validate(json.loads(stdout))
    if exit_code not in (0, 1) or (exit_code == 1 and not stdout.strip()):
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, f"an error under --json is one JSON line on stderr, not {stderr!r}"
        error = json.loads(lines[0])
        _validator("error").validate(error)
        assert error["error"]["exit_code"] == exit_code
