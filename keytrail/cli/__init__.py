"""The ``keytrail`` command: thin over the engine (parse, call, print).

stdout carries only a command's output (text, ``--json``, exports, diagrams; ``-o FILE``
instead); errors are one line on stderr (one JSON object under ``--json``), and logs go to
stderr too. Exit codes: 0 ok, 1 the audit found a
problem, 2 bad usage or input, 3 the database or the key authority could not be reached,
4 the onboarding moved: the ``--expected-version`` given is stale (nothing was written).
Keys and passwords come from a hidden prompt or ``--password-stdin`` / ``--key-stdin``,
never from arguments (shell history, the process list).

The modules, by role: ``root`` (the app, ``--db``, logging, errors to exit codes, ``main``),
``driving`` (the commands that move an onboarding, and the key authority's), ``audit`` (the
commands that read and check the log), ``rendering`` (tables, JSON, progress, times, ``-o``),
``server`` (``serve`` and ``token``), ``report`` (the auditor's HTML page) and ``demo``. Importing this package registers every command
on ``app``, in the order ``--help`` lists them.
"""

from keytrail.cli.root import app, main  # isort: skip  (the app first: the commands register on it)
from keytrail.cli import driving, audit, report, checkpoint, demo, server  # noqa: F401  # isort: skip  (registered, in --help's order)
from keytrail.cli import feed, db  # noqa: F401  # isort: skip  (registered: tail, db)
from keytrail.cli.audit import parse_duration

__all__ = ["app", "main", "parse_duration"]
