"""The ``keytrail`` app itself: its global options, the options commands share, and errors to exit codes.

The command modules register on ``app`` here; ``main`` is the console entry point and the one
place an error becomes a line on stderr and an exit code.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TextIO, TypeVar

import typer

from keytrail import inputs
from keytrail.cli import rendering
from keytrail.errors import KeytrailError

if TYPE_CHECKING:
    from keytrail.engine import Engine

__all__ = [
    "ActorOpt",
    "EmailOpt",
    "ExpectedOpt",
    "IdemOpt",
    "JsonOpt",
    "PasswordStdinOpt",
    "StreamArg",
    "account_app",
    "app",
    "configure_output",
    "destination",
    "errors_to_exit",
    "keys_app",
    "main",
    "open_engine",
    "settings",
]

DEFAULT_URL = "sqlite:///keytrail.db"
app = typer.Typer(
    add_completion=False,
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
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print keytrail's version and exit."),
    ] = False,
) -> None:
    settings.db = db or os.environ.get("KEYTRAIL_DATABASE_URL") or DEFAULT_URL


def _fail(message: str, code: int) -> typer.Exit:
    print(f"keytrail: {message}", file=sys.stderr)
    return typer.Exit(code)


def errors_to_exit(func: Callable[P, R]) -> Callable[P, R]:
    """Turn keytrail's errors into one stderr line and the exit code, the same under the test runner and the script."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except KeytrailError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except BrokenPipeError:
            raise typer.Exit(0) from None  # the reader (head, less) had enough
        except OSError as exc:
            named = inputs.clipped(str(exc.filename or ""), 160)
            raise _fail(f"{exc.strerror or exc}: {named}".rstrip(": ") + ".", 2) from None

    return wrapper


def configure_output() -> None:
    """The command's own logging, set when a command opens a database (help and --version load none of it)."""
    from keytrail.logs import configure_logging

    # Quiet by default so an error is one line on stderr; KEYTRAIL_LOG_LEVEL=info shows the transitions.
    configure_logging(level=os.environ.get("KEYTRAIL_LOG_LEVEL", "error"))


def open_engine(*, create: bool = False) -> Engine:
    """Commands that may start an onboarding create the database; reading commands need an existing one."""
    from keytrail.engine import Engine  # here, not at the top: `keytrail --help` never loads the engine

    configure_output()
    return Engine.open(settings.db, create=create)


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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (schema in the README).")]
EmailOpt = Annotated[str, typer.Option("--email", help="The company account's email.")]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin instead of a prompt.")
]


def main() -> None:
    """Console entry point: one clear line on stderr and a meaningful exit code for every error."""
    try:
        # Without standalone mode, typer returns a command's typer.Exit code instead of exiting.
        code = app(standalone_mode=False)
    except KeytrailError as exc:
        print(f"keytrail: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt, EOFError):
        print("keytrail: aborted.", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument, no command
        message = exc.format_message().strip()
        if type(exc).__name__ == "NoArgsIsHelpError":  # its message is the help: shown as --help shows it
            print(message)
        else:
            first = inputs.clipped(message.splitlines()[0], 200) if message else "bad usage."
            print(f"keytrail: {first}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # a bug: no traceback for the user, the type for the report
        from keytrail.logs import get_logger

        get_logger("keytrail.cli").debug("unexpected_error", exc_info=True)
        print(
            f"keytrail: unexpected {type(exc).__name__}; run with KEYTRAIL_LOG_LEVEL=debug for details.",
            file=sys.stderr,
        )
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)
