"""``keytrail report``: one onboarding's story as one self-contained HTML page, for an auditor to keep.

Like the audit commands it only reads (``--read-only`` opens the database as handed over) and
exits 1 when verifying the onboarding's events finds a problem; the page is written either way,
the failure shown on it in red and in words.
"""

from __future__ import annotations

from typing import Annotated

import typer

from keytrail import inputs
from keytrail.cli.root import OutputOpt, StreamArg, app, destination, errors_to_exit, open_engine

__all__ = ["report"]


@app.command()
@errors_to_exit
def report(
    stream: StreamArg,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="The instant T of the state and key verdict: ISO 8601 (UTC if no zone); default now."
        ),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """The auditor's page: timeline, numbered path, state and key verdict at T, verify, digest (HTML)."""
    from keytrail.reporting import report_html

    instant = None if at is None else inputs.parse_instant(at, "--at")
    with open_engine() as engine:
        html, view = report_html(engine, stream, instant)
    with destination(output) as handle:
        handle.write(html)
    if not view.verify.ok:
        raise typer.Exit(1)
