"""``keytrail demo``: the source document's flow on a fresh database, then a key expiry and the repeat.

A walk-through for a newcomer, not a tool: it creates an account with a published password, so
it refuses a database that already holds onboardings or accounts. Only the package imports it
(a contract in ``make lint``): no command builds on the demo.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keytrail.cli.rendering import console, history_rows, mermaid_of, table
from keytrail.cli.root import app, configure_output, destination, errors_to_exit, refuse_if_read_only, settings
from keytrail.errors import InvalidInput
from keytrail.events import iso_utc

if TYPE_CHECKING:
    from rich.console import Console

    from keytrail.engine import Engine, KeyOutcome

__all__ = ["demo"]


class _DemoClock:
    """The demo's clock: it starts 400 days ago and moves a few minutes at each step.

    The log is what auditors practise on, so it reads like a real one: dates in the past (the
    renewal a year later is still a month ago), steps minutes apart, not microseconds.
    """

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) - timedelta(days=400)
        self._pauses = itertools.cycle((3, 1, 4, 2, 6, 2))

    def __call__(self) -> datetime:
        return self.now

    def pause(self) -> None:
        self.now += timedelta(minutes=next(self._pauses), seconds=17)


@app.command()
@errors_to_exit
def demo(
    report_file: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Where to write the auditor's HTML report (default: NAME.report.html beside a SQLite database NAME.db).",
            metavar="FILE",
        ),
    ] = None,
) -> None:
    """Walk through the source document's flow on a fresh database, then a key expiry and the repeat."""
    from keytrail.engine import Engine, reports

    refuse_if_read_only("the demo")
    configure_output()
    clock = _DemoClock()
    out = console()
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
            clock.pause()

        engine.portal.create_account(email, password, company="Acme")
        say("The merchant's company has a Commerce account", email)
        generated = []
        for year, actor in enumerate(("jane@acme.test", "omar@acme.test")):
            if year:
                clock.now += timedelta(days=366)
                out.print("\n[bold]A year and a day later, the key has expired.[/bold]")
            o = engine.access(stream, actor=actor)
            say("1. Open Marketing > Channels > Amazon Sales Channel", f"{o.state} (reason: {o.reason})")
            o = engine.sign_in(stream, email=email, password=password, actor=actor)
            say("2. Sign in to the Commerce account", str(o.state))
            g = engine.generate_key(
                stream, description="Amazon Sales Channel" + (" (renewed)" if year else ""), actor=actor
            )
            say("3. API Portal: describe the key, Add New", f"{g.state}, key {g.key_id} ending in {g.hint}")
            generated.append(g)
            c = engine.copy_key(stream, actor=actor)
            say("4. Copy the key", str(c.state))
            o = engine.save_config(stream, key=c.key, actor=actor)
            say("5. Stores > Configuration > Services > Magento Services: paste, Save Config", str(o.state))
            o = engine.access(stream, actor=actor)
            say("6. Open the Amazon Sales Channel again: the key is verified", str(o.state))
            o = engine.proceed(stream, actor=actor)
            say("7. Go on", str(o.state))

        out.print(f"\n[bold]History of {stream}[/bold]")
        table(
            None, ("v", "time (UTC)", "trigger", "from", "to", "reason", "actor"), history_rows(engine.history(stream))
        )
        report = engine.verify()
        out.print(
            f"verify: {'ok' if report.ok else 'PROBLEMS'}: {report.streams} onboarding(s), "
            f"{report.authority_streams} authority stream(s), {report.events} events, "
            f"{len(report.problems)} problem(s)"
        )
        out.print(
            f"digest (keep it to check the log later with `keytrail digest --check`): {reports.digest(engine).token}"
        )
        out.print(f"\n[bold]The machine, with the path of {stream} highlighted (Mermaid):[/bold]")
        out.print(mermaid_of(engine, stream), markup=False, end="")
        out.print(
            f"\nThe same machine over HTTP (docs/http.md): keytrail --db {settings.db} token create --name me "
            f"--scope admin, then keytrail --db {settings.db} serve --port 8080",
            markup=False,
        )
        _auditors_ending(engine, stream, generated[0], out)
        _write_report(engine, stream, report_file, out)
        if not report.ok:
            raise typer.Exit(1)


def _auditors_ending(engine: Engine, stream: str, first: KeyOutcome, out: Console) -> None:
    """What an auditor does with the log: sign a checkpoint of it, and ask what held at a past instant."""
    from keytrail.engine import checkpoints
    from keytrail.persistence.units import sqlite_file_of

    database_file = sqlite_file_of(settings.db)
    # Named after the database, beside it: two demos in one folder keep their own.
    prefix = Path.cwd() / "keytrail" if database_file is None else database_file.with_suffix("")
    out.print("\n[bold]The auditor's part[/bold]")
    private, public, kid = checkpoints.generate_signing_key(Path(f"{prefix}.auditor"))
    signed = checkpoints.sign(engine, checkpoints.load_signing_key(private))
    statement = Path(f"{prefix}.checkpoint.json")
    statement.write_text(json.dumps(signed, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    held = checkpoints.check(engine, signed, public.read_bytes())
    out.print(f"signed checkpoint {statement} (key {kid}); publish it anywhere. Checked now: {held.message}")
    out.print(f"  later: keytrail --db {settings.db} checkpoint verify {statement} --public-key {public}", markup=False)
    assert first.expires_at is not None
    for label, instant in (
        ("a month after the first key was saved", first.expires_at - timedelta(days=335)),
        ("an hour after the first key expired", first.expires_at + timedelta(hours=1)),
    ):
        audit = engine.audit(stream, at=instant)
        out.print(f"audit of {stream} {label} ({iso_utc(instant)}): {audit.state} — {audit.verdict.message}")
        out.print(f"  keytrail --db {settings.db} audit {stream} --at {iso_utc(instant)}", markup=False)


def _write_report(engine: Engine, stream: str, report_file: Path | None, out: Console) -> None:
    """The auditor's report of the demo's onboarding, beside a SQLite database unless ``--report`` says where (``make
    demo`` says demo-output/report.html)."""
    from keytrail.reporting import report_html

    database_file = engine.database.sqlite_path
    # Named after the database, beside it, as the auditor's files: two demos in one folder keep their own.
    default = Path("keytrail.report.html") if database_file is None else database_file.with_suffix(".report.html")
    target = report_file if report_file is not None else default
    html, _ = report_html(engine, stream)
    with destination(target) as handle:
        handle.write(html)
    out.print(
        f"\nThe auditor's report of {stream} (timeline, numbered path, verdict at now, verify, digest; open it in "
        f"a browser, it needs no network): {target}",
        markup=False,
    )
