"""The ``keytrail`` command: thin over the engine (parse, call, print).

stdout carries only a command's output (text, ``--json``, exports, diagrams); errors are
one line on stderr, and logs go to stderr too. Exit codes: 0 ok, 1 the audit found a
problem, 2 bad usage or input, 3 the database or the key authority could not be reached,
4 the onboarding moved: the ``--expected-version`` given is stale (nothing was written).
Keys and passwords come from a hidden prompt or ``--password-stdin`` / ``--key-stdin``,
never from arguments (shell history, the process list).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TextIO, TypeVar

import structlog
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from keytrail import diagrams, inputs
from keytrail.engine import Engine, KeyOutcome, Outcome, reports
from keytrail.engine.core import database_files
from keytrail.errors import InvalidInput, KeytrailError
from keytrail.events import iso_utc
from keytrail.logs import configure_logging

__all__ = ["app", "main", "parse_duration"]

DEFAULT_URL = "sqlite:///keytrail.db"
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The Amazon Sales Channel API-key onboarding as an audited state machine.",
    pretty_exceptions_enable=False,
)
account_app = typer.Typer(no_args_is_help=True, help="Company accounts of the key authority.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys in the key authority's portal.")
app.add_typer(account_app, name="account")
app.add_typer(keys_app, name="keys")

_log = structlog.get_logger("keytrail.cli")
P = ParamSpec("P")
R = TypeVar("R")


class _Settings:
    db: str = DEFAULT_URL


settings = _Settings()


@app.callback()
def _root(
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Database URL (else KEYTRAIL_DATABASE_URL, else sqlite:///keytrail.db).", metavar="URL"
        ),
    ] = None,
) -> None:
    settings.db = db or os.environ.get("KEYTRAIL_DATABASE_URL") or DEFAULT_URL
    # Quiet by default so an error is one line on stderr; KEYTRAIL_LOG_LEVEL=info shows the transitions.
    configure_logging(level=os.environ.get("KEYTRAIL_LOG_LEVEL", "error"))


# -- plumbing -----------------------------------------------------------------------------------


def _fail(message: str, code: int) -> typer.Exit:
    print(f"keytrail: {message}", file=sys.stderr)
    return typer.Exit(code)


def _errors_to_exit(func: Callable[P, R]) -> Callable[P, R]:
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


def _open(*, create: bool = False) -> Engine:
    """Commands that may start an onboarding create the database; reading commands need an existing one."""
    return Engine.open(settings.db, create=create)


def _guarded_as(target: Path) -> str | None:
    """What ``target`` is, when it is the database, one of its side files or its key file (links followed)."""
    for guarded, what in database_files(settings.db).items():
        if os.path.realpath(guarded) == str(target):
            return what
        try:
            if target.exists() and guarded.exists() and os.path.samefile(target, guarded):
                return what  # a hard link to it
        except OSError:
            continue
    return None


@contextmanager
def _output(output: Path | None) -> Iterator[TextIO]:
    """Where a command writes (``-o``, else stdout): the file is replaced whole, or left as it was.

    The output never lands on the database, its -wal/-shm/-journal or its key file. It is
    written to a temporary file beside the target, synced, and renamed over the target only
    once complete, so an error part-way leaves a previous file untouched.
    """
    if output is None:
        yield sys.stdout
        return
    target = Path(os.path.realpath(output))
    shown = inputs.clipped(str(output), 200)
    what = _guarded_as(target)
    if what is not None:
        raise InvalidInput(
            f"-o {shown} is {what}, which the output would destroy; name another file. Nothing was written."
        )
    if target.is_dir():
        raise InvalidInput(f"-o {shown} is a folder; name a file in it. Nothing was written.")
    if output.exists() and not output.is_file():  # /dev/null, /dev/stdout, a FIFO: nothing to replace
        with output.open("w", encoding="utf-8", newline="") as stream:
            yield stream
        return
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:  # named after what the user gave, not the temporary file
        raise OSError(exc.errno, exc.strerror, shown) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _console() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def _emit_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, sort_keys=False))


def _say(text: str) -> None:
    print(text)


def _table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A rich table on a terminal; tab-separated lines with a header when piped (easy to cut and awk)."""
    if _stdout_is_terminal():
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(Text(value) for value in row))  # data is text, never rich markup
        _console().print(table)
        return
    print("\t".join(columns))
    for row in rows:
        print("\t".join(value.replace("\t", " ").replace("\n", " ") for value in row))


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int], None]]:
    """A progress counter on stderr when it is a terminal; a no-op otherwise (pipes and CI logs stay clean)."""
    if not _stderr_is_terminal():
        yield lambda _n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda n: bar.advance(task, n)


def _secret(what: str, flag: str, from_stdin: bool, *, confirm: bool = False) -> str:
    """A password or key from one line of stdin, or a hidden prompt on a terminal; never an argument."""
    if from_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise InvalidInput(f"Standard input held no {what}: {flag} reads it from the first line of stdin.")
        return value
    if not _stdin_is_terminal():
        raise InvalidInput(f"There is no terminal to prompt for the {what} on; pass {flag} and pipe it in.")
    value = typer.prompt(what[0].upper() + what[1:], hide_input=True, confirmation_prompt=confirm, err=True)
    assert isinstance(value, str)
    return value


def _when(value: datetime | None) -> str:
    return "" if value is None else iso_utc(value)


def _short_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


_DURATION = re.compile(r"(\d+)([wdhms])", re.ASCII)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``2w``, ``12h``, ``1d12h``, ``90m``, ``45s``: a window for ``expiring``, at most 100 years."""
    compact = text.strip().lower()
    if not compact or _DURATION.sub("", compact):
        raise InvalidInput(
            f"{inputs.quoted(text)} is not a duration: use a number and a unit (w, d, h, m, s), e.g. 30d or 1d12h."
        )
    limit = int(inputs.MAX_SPAN.total_seconds())
    seconds = 0
    for amount, unit in _DURATION.findall(compact):
        # Bounded before int(): a 5,000-digit amount is refused, not parsed (or overflowed into a crash).
        seconds += int(amount) * _UNIT_SECONDS[unit] if len(amount) <= 12 else limit + 1
    if seconds > limit:
        raise InvalidInput(
            f"{inputs.quoted(text)} is too long a duration: at most 100 years ({inputs.MAX_SPAN.days}d)."
        )
    return timedelta(seconds=seconds)


def _parse_instant(text: str) -> datetime:
    """An ISO 8601 instant; without a zone it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{inputs.quoted(text)} is not an ISO 8601 instant such as 2026-03-01T12:00:00Z.") from None
    return inputs.check_instant("The instant", value.replace(tzinfo=UTC) if value.tzinfo is None else value)


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


def _print_outcome(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        _emit_json(outcome.as_dict())
        return
    reason = f" (reason: {outcome.reason.value})" if outcome.reason is not None else ""
    again = " [idempotent replay: nothing new was written]" if outcome.replayed else ""
    _say(
        f"{outcome.stream}: {outcome.trigger.value} -> {outcome.state.value}{reason}, version {outcome.version}{again}"
    )
    if isinstance(outcome, KeyOutcome):
        _say(f"key id: {outcome.key_id} (ends in {outcome.hint}), expires {_when(outcome.expires_at)}")
        _say(f"key: {outcome.key}")


# -- driving commands --------------------------------------------------------------------------------


@app.command()
@_errors_to_exit
def access(
    stream: StreamArg,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    expected_version: ExpectedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open the Amazon Sales Channel: the saved key is verified (Validated) or a key is asked for (Prompted)."""
    with _open(create=True) as engine:
        outcome = engine.access(stream, actor=actor, idempotency_key=idempotency_key, expected_version=expected_version)
        _print_outcome(outcome, as_json)


@app.command("sign-in")
@_errors_to_exit
def sign_in(
    stream: StreamArg,
    email: EmailOpt,
    password_stdin: PasswordStdinOpt = False,
    session: Annotated[
        bool,
        typer.Option(
            "--session", help="Reuse the live session this onboarding opened with the password (already signed in)."
        ),
    ] = False,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    expected_version: ExpectedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign in to the Commerce account (password from a hidden prompt or --password-stdin)."""
    if session and password_stdin:
        raise InvalidInput("Use either --session or --password-stdin, not both.")
    with _open(create=True) as engine:
        password = None if session else _secret("password", "--password-stdin", password_stdin)
        outcome = engine.sign_in(
            stream,
            email=email,
            password=password,
            actor=actor,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )
        _print_outcome(outcome, as_json)


@app.command()
@_errors_to_exit
def register(
    stream: StreamArg,
    email: EmailOpt,
    company: Annotated[str, typer.Option("--company", help="The merchant's company, owner of the account.")],
    password_stdin: PasswordStdinOpt = False,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    expected_version: ExpectedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """No account yet: register the company's account, then sign in with it."""
    with _open(create=True) as engine:
        password = _secret("password", "--password-stdin", password_stdin, confirm=True)
        outcome = engine.register(
            stream,
            email=email,
            password=password,
            company=company,
            actor=actor,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )
        _print_outcome(outcome, as_json)


@app.command("generate-key")
@_errors_to_exit
def generate_key(
    stream: StreamArg,
    description: Annotated[
        str, typer.Option("--description", help="What the key is for, as the API Portal shows it.")
    ] = "Amazon Sales Channel",
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    expected_version: ExpectedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """API Portal "Add New": create a key. Its response is one of the two that show a key."""
    with _open(create=True) as engine:
        outcome = engine.generate_key(
            stream,
            description=description,
            actor=actor,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )
        _print_outcome(outcome, as_json)


@app.command("copy-key")
@_errors_to_exit
def copy_key(
    stream: StreamArg,
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="An existing key of the account (default: the key just generated).")
    ] = None,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    expected_version: ExpectedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """API Portal "Copy": print the key to paste into the configuration."""
    with _open(create=True) as engine:
        outcome = engine.copy_key(
            stream, key_id=key_id, actor=actor, idempotency_key=idempotency_key, expected_version=expected_version
        )
        _print_outcome(outcome, as_json)


@app.command("save-config")
@_errors_to_exit
def save_config(
    stream: StreamArg,
    key_stdin: Annotated[
        bool, typer.Option("--key-stdin", help="Read the key from the first line of stdin instead of a prompt.")
    ] = False,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    expected_version: ExpectedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Paste the key into "Production Api key" and Save Config (asterisks only keep the saved key)."""
    with _open(create=True) as engine:
        key = _secret("API key", "--key-stdin", key_stdin)
        outcome = engine.save_config(
            stream, key=key, actor=actor, idempotency_key=idempotency_key, expected_version=expected_version
        )
        _print_outcome(outcome, as_json)


@app.command()
@_errors_to_exit
def proceed(
    stream: StreamArg,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    expected_version: ExpectedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Go on to Store Integration, the key verified again at this instant."""
    with _open(create=True) as engine:
        outcome = engine.proceed(
            stream, actor=actor, idempotency_key=idempotency_key, expected_version=expected_version
        )
        _print_outcome(outcome, as_json)


# -- the key authority ---------------------------------------------------------------------------------


@account_app.command("create")
@_errors_to_exit
def account_create(
    email: EmailOpt,
    company: Annotated[str, typer.Option("--company", help="The merchant's company, owner of the account.")],
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a company account on the Commerce account site (password from a prompt or --password-stdin)."""
    with _open(create=True) as engine:
        password = _secret("password", "--password-stdin", password_stdin, confirm=True)
        account = engine.portal.create_account(email, password, company)
    if as_json:
        _emit_json(account.as_dict())
        return
    _say(f"account {account.account_id}: {account.email} ({account.company})")


@keys_app.command("list")
@_errors_to_exit
def keys_list(email: EmailOpt, as_json: JsonOpt = False) -> None:
    """The account's keys as the API Portal lists them (never the keys themselves)."""
    with _open() as engine:
        account = engine.portal.find_account(email)
        if account is None:
            raise InvalidInput(f"There is no account with the email {email}.")
        now = engine.now()
        found = [key.as_dict(now) for key in engine.portal.list_keys(email)]
    if as_json:
        _emit_json({"email": account.email, "keys": found})
        return
    columns = ("key_id", "description", "hint", "created_at", "expires_at", "status")
    _table(f"Keys of {account.email}", columns, ([str(k[c]) for c in columns] for k in found))


@keys_app.command("revoke")
@_errors_to_exit
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (key_ and 16 hex digits).", metavar="KEY_ID")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key: from now on it verifies as invalid, and the next access prompts."""
    with _open() as engine:
        key = engine.portal.revoke_key(key_id)
        shown = key.as_dict(engine.now())
    if as_json:
        _emit_json(shown)
        return
    _say(f"{shown['key_id']} ({shown['description']}, ends in {shown['hint']}): revoked at {shown['revoked_at']}")


# -- reading -----------------------------------------------------------------------------------------


@app.command()
@_errors_to_exit
def status(
    stream: Annotated[
        str | None, typer.Argument(help="One onboarding; all of them when left out.", metavar="[ID]")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Where one onboarding stands, or all of them as a table (from the projection, no replay)."""
    with _open() as engine:
        if stream is not None:
            shown = engine.status(stream).as_dict()
            if as_json:
                _emit_json(shown)
            else:
                reason = f" (reason: {shown['reason']})" if shown["reason"] else ""
                _say(f"{shown['stream']}: {shown['state']}{reason}, version {shown['version']}")
            return
        heads = (status.as_dict() for status in engine.streams())
        if as_json:
            # Streamed as a JSON array, one onboarding per line, so memory stays flat.
            print("[", end="")
            for index, head in enumerate(heads):
                print(("," if index else "") + "\n" + json.dumps(head, ensure_ascii=False), end="")
            print("\n]")
            return
        columns = ("stream", "state", "reason", "version", "updated_at")
        _table("Onboardings", columns, ([str(h[c] or "") for c in columns] for h in heads))


@app.command()
@_errors_to_exit
def history(stream: StreamArg, as_json: JsonOpt = False) -> None:
    """The onboarding's timeline: version, time, trigger, from, to, reason, actor."""
    with _open() as engine:
        events = engine.history(stream)
    if as_json:
        _emit_json({"stream": stream, "events": [e.as_dict() for e in events]})
        return
    columns = ("version", "time (UTC)", "trigger", "from", "to", "reason", "actor")
    rows = (
        (
            str(e.version),
            _short_time(e.occurred_at),
            e.trigger.value,
            e.source.value,
            e.dest.value,
            e.reason.value if e.reason else "",
            e.actor or "",
        )
        for e in events
    )
    _table(f"History of {stream}", columns, rows)


@app.command()
@_errors_to_exit
def replay(
    stream: StreamArg,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Rebuild as the onboarding stood at this ISO 8601 instant (UTC if no zone)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the onboarding from its events alone (exit 1 when a step is not legal under the machine)."""
    instant = None if as_of is None else _parse_instant(as_of)
    with _open() as engine, _progress("replaying") as advance:
        rebuilt = engine.replay(stream, instant, progress=advance)
    if as_json:
        _emit_json(rebuilt.as_dict())
    else:
        when = f" as of {_when(rebuilt.as_of)}" if rebuilt.as_of is not None else ""
        reason = f" (reason: {rebuilt.reason.value})" if rebuilt.reason is not None else ""
        _say(f"{rebuilt.stream}{when}: {rebuilt.state.value}{reason}, version {rebuilt.version}")
        _say("path: " + " -> ".join(s.value for s in rebuilt.path))
        for problem in rebuilt.problems:
            _say(f"problem: {problem}")
    if not rebuilt.ok:
        raise typer.Exit(1)


@app.command()
@_errors_to_exit
def expiring(
    within: Annotated[str, typer.Option("--within", help="The window: 30d, 2w, 12h, 1d12h ...")] = "30d",
    as_json: JsonOpt = False,
) -> None:
    """Onboardings whose saved key expires within the window (or already has), per the key authority."""
    window = parse_duration(within)
    with _open() as engine:
        now = engine.now()
        found = reports.expiring(engine, window)
    if as_json:
        _emit_json(
            {
                "as_of": iso_utc(now),
                "within_seconds": int(window.total_seconds()),
                "onboardings": [k.as_dict() for k in found],
            }
        )
        return
    if not found:
        _say(f"No saved key expires within {within}.")
        return
    columns = ("stream", "state", "key_id", "hint", "expires_at", "days_left")
    _table(
        f"Saved keys expiring within {within}",
        columns,
        ([str(k.as_dict()[c]) if not (c == "days_left" and k.expired) else "expired" for c in columns] for k in found),
    )


# -- auditing ------------------------------------------------------------------------------------------


@app.command()
@_errors_to_exit
def verify(
    stream: Annotated[
        str | None, typer.Argument(help="One onboarding; the whole log when left out.", metavar="[ID]")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every hash chain, check versions, legality and projections; exit 1 listing each problem."""
    with _open() as engine, _progress("verifying") as advance:
        report = engine.verify(stream, progress=advance)
    if as_json:
        _emit_json(report.as_dict())
    else:
        verdict = "ok" if report.ok else "PROBLEMS"
        _say(
            f"verify: {verdict}: {report.streams} onboarding(s), {report.events} event(s), "
            f"{len(report.problems)} problem(s)."
        )
        for problem in report.problems:
            _say(f"problem: {problem}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@_errors_to_exit
def export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl (one object per event per line) or csv.")] = "jsonl",
    stream: Annotated[str | None, typer.Option("--stream", help="Only this onboarding.", metavar="ID")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Every event with every column, streamed (events never hold a key or a password)."""
    if fmt not in ("jsonl", "csv"):
        raise InvalidInput(f"{inputs.quoted(fmt)} is not an export format; use jsonl or csv.")
    with _output(output) as handle, _open() as engine, _progress("exporting") as advance:
        if stream is not None:
            engine.status(stream)  # an unknown id is an error (exit 2), not an empty export
        writer = csv.writer(handle, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(reports.EXPORT_COLUMNS)
        for row in reports.export_rows(engine, stream):
            if writer is not None:
                row["data"] = json.dumps(row["data"], sort_keys=True, ensure_ascii=False)
                writer.writerow(["" if row[c] is None else row[c] for c in reports.EXPORT_COLUMNS])
            else:
                handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            advance(1)


@app.command()
@_errors_to_exit
def digest(
    check: Annotated[
        str | None,
        typer.Option("--check", help="A digest kept earlier (N:HEX): exit 1 unless the log still extends it."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """One hash over the whole log (N:HEX) to keep elsewhere; --check proves the log still extends it."""
    with _open() as engine:
        if check is None:
            found = reports.digest(engine)
            _emit_json(found.as_dict()) if as_json else _say(found.token)
            return
        result = reports.check_digest(engine, check)
    if as_json:
        _emit_json(result.as_dict())
    else:
        _say(("ok: " if result.ok else "CHANGED: ") + result.message)
    if not result.ok:
        raise typer.Exit(1)


# -- diagrams and the demo ---------------------------------------------------------------------------------


def _highlight(engine: Engine, stream: str) -> diagrams.Highlight:
    return diagrams.Highlight.from_events((e.trigger, e.source, e.dest) for e in engine.history(stream))


@app.command()
@_errors_to_exit
def diagram(
    fmt: Annotated[str, typer.Option("--format", help="mermaid, dot or svg (svg needs Graphviz).")] = "mermaid",
    highlight: Annotated[
        str | None,
        typer.Option("--highlight", help="Mark the path this onboarding took and where it stands.", metavar="ID"),
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.")] = None,
) -> None:
    """The machine, drawn from the one transition table."""
    if fmt not in diagrams.FORMATS:
        raise InvalidInput(f"{inputs.quoted(fmt)} is not a diagram format; use mermaid, dot or svg.")
    with _output(output) as handle:
        marked = None
        if highlight is not None:
            with _open() as engine:
                marked = _highlight(engine, highlight)
        handle.write(diagrams.render(fmt, marked))


class _DemoClock:
    """A clock the demo can move forward, to show a key expiring."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@app.command()
@_errors_to_exit
def demo() -> None:
    """Walk through the source document's flow on a fresh database, then a key expiry and the repeat."""
    clock = _DemoClock()
    out = _console()
    with Engine.open(settings.db, clock=clock) as engine:
        stream, email, password = "acme-store", "ops@acme.test", "correct horse battery staple"
        if next(iter(engine.streams()), None) is not None or engine.portal.find_account(email) is not None:
            # The demo creates an account with a published password: never in a database that is in use.
            raise InvalidInput(
                f"The demo needs a fresh database, and {engine.database.shown} already holds onboardings or "
                "accounts; give it another, e.g. keytrail --db sqlite:///demo.db demo."
            )

        def say(step: str, outcome_text: str) -> None:
            out.print(f"[bold]{step}[/bold]\n    -> {outcome_text}")

        engine.portal.create_account(email, password, company="Acme")
        say("The merchant's company has a Commerce account", email)
        o = engine.access(stream)
        say("1. Open Marketing > Channels > Amazon Sales Channel", f"{o.state} (reason: {o.reason})")
        o = engine.sign_in(stream, email=email, password=password)
        say("2. Sign in to the Commerce account", str(o.state))
        g = engine.generate_key(stream, description="Amazon Sales Channel")
        say("3. API Portal: describe the key, Add New", f"{g.state}, key {g.key_id} ending in {g.hint}")
        c = engine.copy_key(stream)
        say("4. Copy the key", str(c.state))
        o = engine.save_config(stream, key=c.key)
        say("5. Stores > Configuration > Services > Magento Services: paste, Save Config", str(o.state))
        o = engine.access(stream)
        say("6. Open the Amazon Sales Channel again: the key is verified", str(o.state))
        o = engine.proceed(stream)
        say("7. Go on", str(o.state))
        clock.now += timedelta(days=366)
        out.print("\n[bold]A year and a day later, the key has expired.[/bold]")
        o = engine.access(stream)
        say("Open the Amazon Sales Channel", f"{o.state} (reason: {o.reason})")
        o = engine.sign_in(stream, email=email, password=password)
        say("Sign in again (the session from a year ago is long gone)", str(o.state))
        g = engine.generate_key(stream, description="Amazon Sales Channel (renewed)")
        say("Generate a new key", f"{g.state}, key {g.key_id} ending in {g.hint}")
        c = engine.copy_key(stream)
        o = engine.save_config(stream, key=c.key)
        say("Copy it and save it in the configuration", str(o.state))
        o = engine.access(stream)
        say("Open the channel again", str(o.state))
        o = engine.proceed(stream)
        say("Go on", str(o.state))

        out.print(f"\n[bold]History of {stream}[/bold]")
        _table(
            None,
            ("v", "time (UTC)", "trigger", "from", "to", "reason"),
            (
                (
                    str(e.version),
                    _short_time(e.occurred_at),
                    e.trigger.value,
                    e.source.value,
                    e.dest.value,
                    e.reason.value if e.reason else "",
                )
                for e in engine.history(stream)
            ),
        )
        report = engine.verify()
        out.print(
            f"verify: {'ok' if report.ok else 'PROBLEMS'}: {report.streams} onboarding(s), {report.events} events, "
            f"{len(report.problems)} problem(s)"
        )
        out.print(
            f"digest (keep it to check the log later with `keytrail digest --check`): {reports.digest(engine).token}"
        )
        out.print(f"\n[bold]The machine, with the path of {stream} highlighted (Mermaid):[/bold]")
        out.print(diagrams.mermaid(_highlight(engine, stream)), markup=False, end="")
        if not report.ok:
            raise typer.Exit(1)


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
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            first = inputs.clipped(message.splitlines()[0], 200) if message else "bad usage."
            print(f"keytrail: {first}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # a bug: no traceback for the user, the type for the report
        _log.debug("unexpected_error", exc_info=True)
        print(
            f"keytrail: unexpected {type(exc).__name__}; run with KEYTRAIL_LOG_LEVEL=debug for details.",
            file=sys.stderr,
        )
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
