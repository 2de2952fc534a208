"""The ``keytrail`` command: thin over the engine (parse, call, print)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from keytrail.engine import Engine
from keytrail.errors import KeytrailError
from keytrail.logs import configure_logging

__all__ = ["app", "main"]

DEFAULT_URL = "sqlite:///keytrail.db"
app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="The Amazon Sales Channel API-key onboarding, audited."
)
out = Console(highlight=False, soft_wrap=True)


class _State:
    db: str = DEFAULT_URL


state = _State()


@app.callback()
def _root(
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (else KEYTRAIL_DATABASE_URL, else sqlite:///keytrail.db).")
    ] = None,
) -> None:
    state.db = db or os.environ.get("KEYTRAIL_DATABASE_URL") or DEFAULT_URL
    configure_logging(level=os.environ.get("KEYTRAIL_LOG_LEVEL", "warning"))


class _DemoClock:
    """A clock the demo can move forward, to show a key expiring."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@app.command()
def demo() -> None:
    """Walk through the source document's flow on a fresh database, then a key expiry and the repeat."""
    clock = _DemoClock()
    with Engine.open(state.db, clock=clock) as engine:
        stream, email, password = "acme-store", "ops@acme.test", "correct horse battery staple"

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

        table = Table(title=f"History of {stream}")
        for column in ("v", "time (UTC)", "trigger", "from", "to", "reason"):
            table.add_column(column)
        for event in engine.history(stream):
            table.add_row(
                str(event.version),
                event.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
                event.trigger.value,
                event.source.value,
                event.dest.value,
                event.reason.value if event.reason else "",
            )
        out.print()
        out.print(table)
        report = engine.verify()
        out.print(
            f"verify: {'ok' if report.ok else 'PROBLEMS'}: {report.streams} onboarding(s), {report.events} events, "
            f"{len(report.problems)} problem(s)"
        )
        if not report.ok:
            raise typer.Exit(1)


def main() -> None:
    """Console entry point: one clear line on stderr and a meaningful exit code for every error."""
    try:
        app(standalone_mode=False)
    except KeytrailError as exc:
        print(f"keytrail: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("keytrail: aborted.", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument
        print(f"keytrail: {exc.format_message()}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
