"""The ``keytrail`` app itself: its global options, the options commands share, and errors to exit codes.

The command modules register on ``app`` here; ``main`` is the console entry point and the one
place an error becomes a line on stderr and an exit code.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TextIO, TypeVar

import typer

from keytrail import inputs
from keytrail.cli import rendering
from keytrail.errors import InvalidInput, KeytrailError

if TYPE_CHECKING:
    from keytrail.engine import Engine

__all__ = [
    "NOW_ENV",
    "SANDBOX_META",
    "ActorOpt",
    "EmailOpt",
    "ExpectedOpt",
    "IdemOpt",
    "JsonOpt",
    "OutputOpt",
    "PasswordStdinOpt",
    "StreamArg",
    "account_app",
    "app",
    "configure_output",
    "destination",
    "errors_to_exit",
    "is_sandbox",
    "keys_app",
    "main",
    "open_engine",
    "refuse_if_read_only",
    "settings",
    "writing_to",
]

DEFAULT_URL = "sqlite:///keytrail.db"
# Options users put on either side of the command: the app's own (--db) and the commands' (--json, --actor).
_ROOT_WITH_VALUE = ("--db",)
_ROOT_FLAGS = ("--read-only",)
_COMMAND_FLAGS = ("--json",)
_COMMAND_WITH_VALUE = ("--actor",)


def arrange(args: list[str]) -> list[str]:
    """``--db`` and ``--read-only`` moved before the command, ``--json`` and ``--actor`` after it, the rest left in order.

    So ``keytrail status --db X`` and ``keytrail --json status`` mean what users meant. Nothing
    after ``--`` moves (it is positional by definition).
    """
    root: list[str] = []
    command: list[str] = []
    moved: list[str] = []
    seen_command = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            command.extend(moved)
            moved = []
            command.extend(args[index:])
            break
        name, has_value, _ = arg.partition("=")
        width = 1 if has_value else 2
        if arg in _ROOT_FLAGS:
            root.append(arg)
            index += 1
            continue
        if name in _ROOT_WITH_VALUE:
            root.extend(args[index : index + width])
            index += width
            continue
        if not seen_command and name in (*_COMMAND_FLAGS, *_COMMAND_WITH_VALUE):
            width = 1 if name in _COMMAND_FLAGS else width
            moved.extend(args[index : index + width])
            index += width
            continue
        seen_command = seen_command or not arg.startswith("-")
        command.append(arg)
        index += 1
    return root + command + moved


class _Group(typer.core.TyperGroup):
    """The root group: global options are accepted where users put them (see :func:`arrange`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, arrange(args) if ctx.parent is None else args)


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    help="The Amazon Sales Channel API-key onboarding as an audited state machine.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
account_app = typer.Typer(no_args_is_help=True, help="Company accounts of the key authority.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys in the key authority's portal.")
app.add_typer(account_app, name="account")
app.add_typer(keys_app, name="keys")

P = ParamSpec("P")
R = TypeVar("R")


class _Settings:
    db: str = DEFAULT_URL
    read_only: bool = False


settings = _Settings()


def _show_version(wanted: bool) -> None:
    if wanted:
        from keytrail import __version__

        print(f"keytrail {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Database URL (else KEYTRAIL_DATABASE_URL, else sqlite:///keytrail.db).", metavar="URL"
        ),
    ] = None,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Audit a database as handed over: no encryption key needed, nothing written or created "
            "(SQLite mode=ro); commands that write are refused (exit 2).",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print keytrail's version and exit."),
    ] = False,
) -> None:
    settings.db = db or os.environ.get("KEYTRAIL_DATABASE_URL") or DEFAULT_URL
    settings.read_only = read_only


def _facts(exc: BaseException) -> dict[str, Any]:
    """The error's public attributes a script can act on (ids, states, retry_after): never a secret by design."""
    plain = (str, int, float, bool, type(None))

    def shown(value: Any) -> Any:  # a value read from a damaged row may be huge: cut like messages cut
        return inputs.clipped(value, 200) if isinstance(value, str) else value

    return {
        name: [shown(v) for v in value] if isinstance(value, list) else shown(value)
        for name, value in vars(exc).items()
        if not name.startswith("_")
        and (isinstance(value, plain) or (isinstance(value, list) and all(isinstance(v, plain) for v in value)))
    }


def _fail(message: str, code: int, *, as_json: bool = False, kind: str = "UsageError", facts: Any = None) -> typer.Exit:
    """One line on stderr: ``keytrail: message``, or under --json ``{"error": {...}}`` (schema: error.json)."""
    if as_json:
        error = {**(facts or {}), "type": kind, "message": message, "exit_code": code}
        print(json.dumps({"error": error}, ensure_ascii=False, default=str), file=sys.stderr)
    else:
        print(f"keytrail: {message}", file=sys.stderr)
    return typer.Exit(code)


def _wants_json() -> bool:
    args = sys.argv[1:]
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def errors_to_exit(func: Callable[P, R]) -> Callable[P, R]:
    """Turn keytrail's errors into one stderr line and the exit code, the same under the test runner and the script."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        as_json = bool(kwargs.get("as_json"))
        try:
            return func(*args, **kwargs)
        except KeytrailError as exc:
            raise _fail(str(exc), exc.exit_code, as_json=as_json, kind=type(exc).__name__, facts=_facts(exc)) from None
        except BrokenPipeError:
            raise typer.Exit(0) from None  # the reader (head, less) had enough
        except OSError as exc:
            named = inputs.clipped(str(exc.filename or ""), 160)
            message = f"{exc.strerror or exc}: {named}".rstrip(": ") + "."
            raise _fail(message, 2, as_json=as_json, kind="FileError") from None

    return wrapper


def configure_output() -> None:
    """The command's own logging, set when a command opens a database (help and --version load none of it)."""
    from keytrail.logs import configure_logging

    # Quiet by default so an error is one line on stderr; KEYTRAIL_LOG_LEVEL=info shows the transitions.
    configure_logging(level=os.environ.get("KEYTRAIL_LOG_LEVEL", "error"))


# The keytrail_meta row that makes a database a sandbox (``keytrail init --sandbox``): KEYTRAIL_NOW sets its clock.
SANDBOX_META = "sandbox"
NOW_ENV = "KEYTRAIL_NOW"


def is_sandbox(engine: Engine) -> bool:
    return engine.database.inspect_schema(create=False).meta.get(SANDBOX_META) == "true"


def _sandbox_now(text: str) -> datetime:
    """KEYTRAIL_NOW as an instant: ISO 8601, UTC when it names no zone."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{NOW_ENV}={inputs.quoted(text)} is not an ISO 8601 instant such as 2030-01-01T09:00:00Z. "
            "Nothing was written."
        ) from None
    return inputs.check_instant(NOW_ENV, value.replace(tzinfo=UTC) if value.tzinfo is None else value)


def refuse_if_read_only(what: str) -> None:
    """Under ``--read-only``, refuse a command that writes before it opens anything (the engine refuses the rest)."""
    if settings.read_only:
        from keytrail.errors import ReadOnly

        raise ReadOnly(f"keytrail --read-only takes no writes, and {what} writes; nothing was written.")


def open_engine(*, create: bool = False) -> Engine:
    """Commands that may start an onboarding create the database; reading commands need an existing one.

    With KEYTRAIL_NOW set, only a sandbox database opens, its clock stopped at that instant; any
    other database is refused before anything is written (a real log's times are never forged).
    """
    from keytrail.engine import Engine  # here, not at the top: `keytrail --help` never loads the engine
    from keytrail.errors import UnknownDatabase

    configure_output()
    read_only = settings.read_only
    if create:  # only commands that write may create the database
        refuse_if_read_only("this command")
    text = os.environ.get(NOW_ENV)
    if not text:
        return Engine.open(settings.db, create=create, read_only=read_only)
    instant = _sandbox_now(text)
    try:
        engine = Engine.open(settings.db, create=False, clock=lambda: instant, read_only=read_only)
    except UnknownDatabase:
        raise InvalidInput(
            f"{NOW_ENV} is set and there is no database at {inputs.clipped(settings.db, 200)}: make a sandbox "
            "first with keytrail --db URL init --sandbox. Nothing was written."
        ) from None
    if not is_sandbox(engine):
        shown = engine.database.shown
        engine.close()
        raise InvalidInput(
            f"{NOW_ENV} is honoured only by a sandbox database (made by keytrail init --sandbox), and {shown} is "
            f"not one; unset {NOW_ENV}. Nothing was written."
        )
    return engine


@contextlib.contextmanager
def writing_to(target: Path | None) -> Iterator[None]:
    """Everything the command prints goes to ``-o`` (replaced whole, or left as it was), else stdout."""
    with destination(target) as handle, contextlib.redirect_stdout(handle):
        yield


def destination(target: Path | None) -> AbstractContextManager[TextIO]:
    """Where a command writes (``-o``, else stdout), never onto the ``--db`` database's files or its key file."""
    from keytrail.engine.lifecycle import database_files

    return rendering.output(target, lambda: database_files(settings.db))


# -- options shared by commands --------------------------------------------------------------------

StreamArg = Annotated[str, typer.Argument(help="The onboarding id (the merchant's Commerce instance).", metavar="ID")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who drives the command, recorded in the event.")]
IdemOpt = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key", help="Repeat-safe: the same key on the same onboarding returns the first outcome."
    ),
]
ExpectedOpt = Annotated[
    int | None,
    typer.Option(
        "--expected-version",
        min=0,
        help="Refuse (exit 4, nothing written) unless the onboarding is at this version (0: not started).",
    ),
]
OutputOpt = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.", metavar="FILE")
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print JSON (schemas in keytrail/schemas); an error is one JSON object on stderr."),
]
EmailOpt = Annotated[str, typer.Option("--email", help="The company account's email.")]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin instead of a prompt.")
]


def _exit(exc: typer.Exit) -> None:
    sys.exit(exc.exit_code)


def main() -> None:
    """Console entry point: one clear line on stderr (one JSON object under --json) and a meaningful exit code."""
    as_json = _wants_json()
    try:
        # Without standalone mode, typer returns a command's typer.Exit code instead of exiting.
        code = app(standalone_mode=False)
    except KeytrailError as exc:
        _exit(_fail(str(exc), exc.exit_code, as_json=as_json, kind=type(exc).__name__, facts=_facts(exc)))
    except typer.Exit as exc:
        _exit(exc)
    except (typer.Abort, KeyboardInterrupt, EOFError):
        _exit(_fail("aborted.", 130, as_json=as_json, kind="Aborted"))
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument, no command
        message = exc.format_message().strip()
        if type(exc).__name__ == "NoArgsIsHelpError":  # its message is the help: shown as --help shows it
            print(message)
            sys.exit(2)
        first = inputs.clipped(message.splitlines()[0], 200) if message else "bad usage."
        _exit(_fail(first, 2, as_json=as_json))
    except Exception as exc:  # a bug: no traceback for the user, the type for the report
        from keytrail.logs import get_logger

        get_logger("keytrail.cli").debug("unexpected_error", exc_info=True)
        message = f"unexpected {type(exc).__name__}; run with KEYTRAIL_LOG_LEVEL=debug for details."
        _exit(_fail(message, 70, as_json=as_json, kind="InternalError"))
    sys.exit(code if isinstance(code, int) else 0)
