"""``keytrail tail``: the log's settled global order, once or followed, optionally as a named subscription.

Lines go to stdout as they settle (flushed one by one, so a pipe sees each at once); with
``--json``, one JSON object per event per line.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from keytrail.cli.rendering import short_time
from keytrail.cli.root import JsonOpt, app, errors_to_exit, open_engine
from keytrail.errors import InvalidInput

if TYPE_CHECKING:  # the engine is imported when a command runs: `keytrail --help` loads none
    from keytrail.engine import Event

__all__ = ["tail"]


def _line(event: Event, as_json: bool) -> str:
    if as_json:
        return json.dumps({"stream": event.stream, **event.as_dict()}, ensure_ascii=False)
    reason = event.reason.value if event.reason else ""
    return "\t".join(
        (
            str(event.position),
            short_time(event.occurred_at),
            event.stream,
            str(event.version),
            event.trigger.value,
            event.source.value,
            event.dest.value,
            reason,
        )
    )


@app.command()
@errors_to_exit
def tail(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep waiting for new events (Ctrl-C stops).")] = False,
    after: Annotated[
        int | None, typer.Option("--after", min=0, help="Start after this position (default: the beginning).")
    ] = None,
    subscription: Annotated[
        str | None,
        typer.Option(
            "--subscription",
            help="Resume after this named subscription's checkpoint, and move it after each event printed.",
            metavar="NAME",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the log in its global order (position, time, stream, version, trigger, from, to, reason)."""
    if subscription is not None and after is not None:
        raise InvalidInput("Give --after or --subscription, not both: a subscription resumes after its own checkpoint.")
    with open_engine() as engine:

        def show(event: Event) -> None:
            sys.stdout.write(_line(event, as_json) + "\n")
            sys.stdout.flush()

        if subscription is not None:
            engine.subscription(subscription).run(show, follow=follow)
            return
        if follow:
            for event in engine.follow(after or 0):
                show(event)
            return
        start = after or 0
        while True:
            page = engine.feed(start, 1000)
            for event in page.events:
                show(event)
            if not page.events:
                return
            start = page.next
