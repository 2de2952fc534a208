"""The commands that drive an onboarding (access ... proceed) and the key authority's (account, keys).

Each is parse, call the engine, print: the decision is the engine's. Keys and passwords come from
a hidden prompt or ``--password-stdin`` / ``--key-stdin``, never from arguments (shell history,
the process list).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from keytrail.cli.rendering import emit_json, say, table, when
from keytrail.cli.root import (
    NOW_ENV,
    SANDBOX_META,
    ActorOpt,
    EmailOpt,
    ExpectedOpt,
    IdemOpt,
    JsonOpt,
    PasswordStdinOpt,
    StreamArg,
    account_app,
    app,
    configure_output,
    errors_to_exit,
    is_sandbox,
    keys_app,
    open_engine,
    refuse_if_read_only,
    settings,
)
from keytrail.errors import InvalidInput

if TYPE_CHECKING:
    from keytrail.engine import Outcome

__all__ = [
    "access",
    "account_create",
    "copy_key",
    "generate_key",
    "init",
    "keys_list",
    "keys_revoke",
    "print_outcome",
    "proceed",
    "register",
    "save_config",
    "sign_in",
]


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


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


def print_outcome(outcome: Outcome, as_json: bool) -> None:
    from keytrail.engine import KeyOutcome

    if as_json:
        emit_json(outcome.as_dict())
        return
    reason = f" (reason: {outcome.reason.value})" if outcome.reason is not None else ""
    again = " [idempotent replay: nothing new was written]" if outcome.replayed else ""
    say(f"{outcome.stream}: {outcome.trigger.value} -> {outcome.state.value}{reason}, version {outcome.version}{again}")
    if isinstance(outcome, KeyOutcome):
        say(f"key id: {outcome.key_id} (ends in {outcome.hint}), expires {when(outcome.expires_at)}")
        say(f"key: {outcome.key}")


@app.command()
@errors_to_exit
def init(
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            help="A throwaway database whose clock KEYTRAIL_NOW sets, to try the expiry story from a shell.",
        ),
    ] = False,
) -> None:
    """Create an empty keytrail database at --db (the commands that start an onboarding create one too)."""
    from keytrail.engine import Engine

    refuse_if_read_only("init")
    from keytrail.errors import UnknownDatabase

    configure_output()
    try:
        with Engine.open(settings.db, create=False) as engine:
            flagged = is_sandbox(engine)
            if sandbox and not flagged:
                raise InvalidInput(
                    f"{engine.database.shown} already exists and is not a sandbox; a database in use never becomes "
                    "one, since its clock could then be set. Name a new database for the sandbox."
                )
            say(f"{engine.database.shown} is already a keytrail database" + (" (a sandbox)." if flagged else "."))
            return
    except UnknownDatabase:
        pass
    with Engine.open(settings.db, create=True) as engine:
        if sandbox:
            engine.database.add_meta({SANDBOX_META: "true"})
        say(f"created {engine.database.shown}" + (f" as a sandbox: {NOW_ENV} sets its clock." if sandbox else "."))


@app.command()
@errors_to_exit
def access(
    stream: StreamArg,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    expected_version: ExpectedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open the Amazon Sales Channel: the saved key is verified (Validated) or a key is asked for (Prompted)."""
    with open_engine(create=True) as engine:
        outcome = engine.access(stream, actor=actor, idempotency_key=idempotency_key, expected_version=expected_version)
        print_outcome(outcome, as_json)


@app.command("sign-in")
@errors_to_exit
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
    with open_engine(create=True) as engine:
        password = None if session else _secret("password", "--password-stdin", password_stdin)
        outcome = engine.sign_in(
            stream,
            email=email,
            password=password,
            actor=actor,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )
        print_outcome(outcome, as_json)


@app.command()
@errors_to_exit
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
    with open_engine(create=True) as engine:
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
        print_outcome(outcome, as_json)


@app.command("generate-key")
@errors_to_exit
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
    with open_engine(create=True) as engine:
        outcome = engine.generate_key(
            stream,
            description=description,
            actor=actor,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )
        print_outcome(outcome, as_json)


@app.command("copy-key")
@errors_to_exit
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
    with open_engine(create=True) as engine:
        outcome = engine.copy_key(
            stream, key_id=key_id, actor=actor, idempotency_key=idempotency_key, expected_version=expected_version
        )
        print_outcome(outcome, as_json)


@app.command("save-config")
@errors_to_exit
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
    with open_engine(create=True) as engine:
        key = _secret("API key", "--key-stdin", key_stdin)
        outcome = engine.save_config(
            stream, key=key, actor=actor, idempotency_key=idempotency_key, expected_version=expected_version
        )
        print_outcome(outcome, as_json)


@app.command()
@errors_to_exit
def proceed(
    stream: StreamArg,
    actor: ActorOpt = None,
    idempotency_key: IdemOpt = None,
    expected_version: ExpectedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Go on to Store Integration, the key verified again at this instant."""
    with open_engine(create=True) as engine:
        outcome = engine.proceed(
            stream, actor=actor, idempotency_key=idempotency_key, expected_version=expected_version
        )
        print_outcome(outcome, as_json)


# -- the key authority ---------------------------------------------------------------------------------


@account_app.command("create")
@errors_to_exit
def account_create(
    email: EmailOpt,
    company: Annotated[str, typer.Option("--company", help="The merchant's company, owner of the account.")],
    password_stdin: PasswordStdinOpt = False,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a company account on the Commerce account site (password from a prompt or --password-stdin)."""
    with open_engine(create=True) as engine:
        password = _secret("password", "--password-stdin", password_stdin, confirm=True)
        account = engine.portal.create_account(email, password, company, actor=actor)
    if as_json:
        emit_json(account.as_dict())
        return
    say(f"account {account.account_id}: {account.email} ({account.company})")


@keys_app.command("list")
@errors_to_exit
def keys_list(email: EmailOpt, as_json: JsonOpt = False) -> None:
    """The account's keys as the API Portal lists them (never the keys themselves)."""
    with open_engine() as engine:
        account = engine.portal.find_account(email)
        if account is None:
            raise InvalidInput(f"There is no account with the email {email}.")
        now = engine.now()
        found = [key.as_dict(now) for key in engine.portal.list_keys(email)]
    if as_json:
        emit_json({"email": account.email, "keys": found})
        return
    columns = ("key_id", "description", "hint", "created_at", "expires_at", "status")
    table(f"Keys of {account.email}", columns, ([str(k[c]) for c in columns] for k in found))


@keys_app.command("revoke")
@errors_to_exit
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (key_ and 16 hex digits).", metavar="KEY_ID")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key: from now on it verifies as invalid, and the next access prompts (the log records who)."""
    with open_engine() as engine:
        key = engine.portal.revoke_key(key_id, actor=actor)
        shown = key.as_dict(engine.now())
    if as_json:
        emit_json(shown)
        return
    say(f"{shown['key_id']} ({shown['description']}, ends in {shown['hint']}): revoked at {shown['revoked_at']}")
