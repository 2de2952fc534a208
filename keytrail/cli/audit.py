"""The commands that read and audit the log: status, history, replay, expiring, verify, export, digest, diagram.

Exit 1 means the audit found a problem (a replay or verify that fails, a digest the log no longer
extends); nothing here writes to the database.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from keytrail import inputs
from keytrail.cli import rendering
from keytrail.cli.rendering import emit_json, history_rows, progress, say, table
from keytrail.cli.root import JsonOpt, OutputOpt, StreamArg, app, destination, errors_to_exit, open_engine, writing_to
from keytrail.errors import InvalidInput

__all__ = [
    "audit",
    "diagram",
    "digest",
    "expiring",
    "export",
    "history",
    "parse_duration",
    "replay",
    "status",
    "verify",
]

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


# -- reading -----------------------------------------------------------------------------------------


@app.command()
@errors_to_exit
def status(
    stream: Annotated[
        str | None, typer.Argument(help="One onboarding; all of them when left out.", metavar="ID")
    ] = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
) -> None:
    """Where one onboarding stands, or all of them as a table (from the projection, no replay)."""
    with writing_to(output), open_engine() as engine:
        if stream is not None:
            shown = engine.status(stream).as_dict()
            if as_json:
                emit_json(shown)
            else:
                reason = f" (reason: {shown['reason']})" if shown["reason"] else ""
                say(f"{shown['stream']}: {shown['state']}{reason}, version {shown['version']}")
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
        table("Onboardings", columns, ([str(h[c] or "") for c in columns] for h in heads))


@app.command()
@errors_to_exit
def history(stream: StreamArg, as_json: JsonOpt = False, output: OutputOpt = None) -> None:
    """The onboarding's timeline: version, time, trigger, from, to, reason, actor."""
    with writing_to(output), open_engine() as engine:
        events = engine.history(stream)
        if as_json:
            emit_json({"stream": stream, "events": [e.as_dict() for e in events]})
            return
        columns = ("version", "time (UTC)", "trigger", "from", "to", "reason", "actor")
        table(f"History of {stream}", columns, history_rows(events))


@app.command()
@errors_to_exit
def replay(
    stream: StreamArg,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Rebuild as the onboarding stood at this ISO 8601 instant (UTC if no zone)."),
    ] = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
) -> None:
    """Rebuild the onboarding from its events alone (exit 1 when a step is not legal under the machine)."""
    instant = None if as_of is None else inputs.parse_instant(as_of, "--as-of")
    with writing_to(output), open_engine() as engine, progress("replaying") as advance:
        rebuilt = engine.replay(stream, instant, progress=advance)
        if as_json:
            emit_json(rebuilt.as_dict())
        else:
            when = f" as of {rendering.when(rebuilt.as_of)}" if rebuilt.as_of is not None else ""
            reason = f" (reason: {rebuilt.reason.value})" if rebuilt.reason is not None else ""
            say(f"{rebuilt.stream}{when}: {rebuilt.state.value}{reason}, version {rebuilt.version}")
            say("path: " + " -> ".join(s.value for s in rebuilt.path))
            for problem in rebuilt.problems:
                say(f"problem: {problem}")
    if not rebuilt.ok:
        raise typer.Exit(1)


@app.command()
@errors_to_exit
def audit(
    stream: StreamArg,
    at: Annotated[
        str | None, typer.Option("--at", help="The ISO 8601 instant to audit (UTC if no zone); default: now.")
    ] = None,
    from_export: Annotated[
        Path | None,
        typer.Option("--from-export", help="Audit a `keytrail export` file (JSON Lines) instead of the database."),
    ] = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
) -> None:
    """Was the key valid at T? The state, the event behind it, the saved key and its verdict, from the log alone.

    Exit 1 when a stream the answer rests on does not verify.
    """
    from keytrail.engine.audit_at import audit_events, read_export

    instant = None if at is None else inputs.parse_instant(at, "--at")
    with writing_to(output):
        if from_export is None:
            with open_engine() as engine:
                found = engine.audit(stream, at=instant)
        else:
            stream = inputs.check_stream_id(stream)
            try:
                with from_export.open(encoding="utf-8") as handle:
                    found = audit_events(stream, instant or datetime.now(UTC), read_export(handle, str(from_export)))
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInput(f"The export {from_export} cannot be read ({exc.__class__.__name__}).") from None
        if as_json:
            emit_json(found.as_dict())
        else:
            reason = f" (reason: {found.reason.value})" if found.reason is not None else ""
            say(f"{found.stream} at {rendering.when(found.at)}: {found.state.value}{reason}, version {found.version}")
            if found.event is not None:
                by = f" by {found.event.actor}" if found.event.actor else ""
                say(f"  since {found.event.trigger.value} at {rendering.when(found.event.occurred_at)}{by}")
            if found.key is not None:
                saved_by = f" by {found.key.saved_by}" if found.key.saved_by else ""
                say(
                    f"  saved key: {found.key.key_id or 'not issued by the authority'}, ending in {found.key.hint}, "
                    f"saved at {rendering.when(found.key.saved_at)}{saved_by}"
                )
            say(f"  verdict: {found.verdict.status}. {found.verdict.message}")
            for event in found.authority_events:
                by = f" by {event.actor}" if event.actor else ""
                say(f"  authority: {event.trigger.value} at {rendering.when(event.occurred_at)}{by}")
            for problem in found.problems:
                say(f"problem: {problem}")
    if not found.ok:
        raise typer.Exit(1)


@app.command()
@errors_to_exit
def expiring(
    within: Annotated[str, typer.Option("--within", help="The window: 30d, 2w, 12h, 1d12h ...")] = "30d",
    as_json: JsonOpt = False,
    output: OutputOpt = None,
) -> None:
    """Onboardings whose saved key expires within the window (or already has), per the key authority."""
    from keytrail.engine import reports
    from keytrail.events import iso_utc

    window = parse_duration(within)
    with open_engine() as engine:
        now = engine.now()
        found = reports.expiring(engine, window)
    with writing_to(output):
        if as_json:
            emit_json(
                {
                    "as_of": iso_utc(now),
                    "within_seconds": int(window.total_seconds()),
                    "onboardings": [k.as_dict() for k in found],
                }
            )
        elif not found:
            say(f"No saved key expires within {within}.")
        else:
            columns = ("stream", "state", "key_id", "hint", "expires_at", "days_left")
            shown = (
                [str(k.as_dict()[c]) if not (c == "days_left" and k.expired) else "expired" for c in columns]
                for k in found
            )
            table(f"Saved keys expiring within {within}", columns, shown)


# -- auditing ------------------------------------------------------------------------------------------


@app.command()
@errors_to_exit
def verify(
    stream: Annotated[
        str | None, typer.Argument(help="One onboarding; the whole log when left out.", metavar="ID")
    ] = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
) -> None:
    """Recompute every hash chain, check versions, legality and projections; exit 1 listing each problem."""
    with writing_to(output), open_engine() as engine, progress("verifying") as advance:
        report = engine.verify(stream, progress=advance)
        if as_json:
            emit_json(report.as_dict())
        else:
            verdict = "ok" if report.ok else "PROBLEMS"
            say(
                f"verify: {verdict}: {report.streams} onboarding(s), {report.authority_streams} authority stream(s), "
                f"{report.events} event(s), {len(report.problems)} problem(s)."
            )
            for problem in report.problems:
                say(f"problem: {problem}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@errors_to_exit
def export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl (one object per event per line) or csv.")] = "jsonl",
    stream: Annotated[str | None, typer.Option("--stream", help="Only this onboarding.", metavar="ID")] = None,
    output: OutputOpt = None,
) -> None:
    """Every event with every column, streamed (events never hold a key or a password)."""
    from keytrail.engine import reports

    if fmt not in ("jsonl", "csv"):
        raise InvalidInput(f"{inputs.quoted(fmt)} is not an export format; use jsonl or csv.")
    with destination(output) as handle, open_engine() as engine, progress("exporting") as advance:
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
@errors_to_exit
def digest(
    check: Annotated[
        str | None,
        typer.Option("--check", help="A digest kept earlier (N:HEX): exit 1 unless the log still extends it."),
    ] = None,
    as_json: JsonOpt = False,
    output: OutputOpt = None,
) -> None:
    """One hash over the whole log (N:HEX) to keep elsewhere; --check proves the log still extends it."""
    from keytrail.engine import reports

    with writing_to(output), open_engine() as engine:
        if check is None:
            found = reports.digest(engine)
            emit_json(found.as_dict()) if as_json else say(found.token)
            return
        result = reports.check_digest(engine, check)
        if as_json:
            emit_json(result.as_dict())
        else:
            say(("ok: " if result.ok else "CHANGED: ") + result.message)
    if not result.ok:
        raise typer.Exit(1)


# -- diagrams -----------------------------------------------------------------------------------------------


@app.command()
@errors_to_exit
def diagram(
    fmt: Annotated[str, typer.Option("--format", help="mermaid, dot or svg (svg needs Graphviz).")] = "mermaid",
    highlight: Annotated[
        str | None,
        typer.Option("--highlight", help="Mark the path this onboarding took and where it stands.", metavar="ID"),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """The machine, drawn from the one transition table."""
    from keytrail import diagrams

    if fmt not in diagrams.FORMATS:
        raise InvalidInput(f"{inputs.quoted(fmt)} is not a diagram format; use mermaid, dot or svg.")
    with destination(output) as handle:
        marked = None
        if highlight is not None:
            with open_engine() as engine:
                marked = rendering.highlight(engine, highlight)
        handle.write(diagrams.render(fmt, marked))
