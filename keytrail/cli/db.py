"""``keytrail db``: the database's schema: ``upgrade`` (the only command that migrates), ``current``, ``history``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from keytrail.cli.rendering import emit_json, say
from keytrail.cli.root import JsonOpt, app, errors_to_exit, settings
from keytrail.errors import InvalidInput

if TYPE_CHECKING:
    from types import ModuleType


def _upgrading() -> ModuleType:
    """The migrations' engine module, imported when a db command runs (alembic and SQLAlchemy load then)."""
    from keytrail.engine import upgrading

    return upgrading


__all__ = ["current", "db_app", "history", "upgrade"]

db_app = typer.Typer(no_args_is_help=True, help="The database's schema: upgrade it, show its revision and the history.")
app.add_typer(db_app, name="db")


@db_app.command()
@errors_to_exit
def upgrade(
    revision: Annotated[
        str, typer.Argument(help="The revision to migrate to (default: the newest).", metavar="REVISION")
    ] = "head",
    as_json: JsonOpt = False,
) -> None:
    """Migrate the database's schema (back it up first): every event and hash is kept."""
    known = {rev for rev, _, _ in _upgrading().history()}
    if revision not in known | {"head", "base"}:
        raise InvalidInput(f"{revision[:40]!r} is not a revision; use one of {', '.join(sorted(known))}, head or base.")
    before, after = _upgrading().upgrade(settings.db, revision)
    if as_json:
        emit_json({"database": after.database, "from": before.revision, "to": after.revision, "head": after.head})
    elif before.revision == after.revision:
        say(f"{after.database} is already at revision {after.revision}; nothing to do.")
    else:
        say(f"{after.database}: migrated from revision {before.revision or 'none'} to {after.revision or 'none'}.")


@db_app.command()
@errors_to_exit
def current(as_json: JsonOpt = False) -> None:
    """The database's schema revision, and whether it is the newest this keytrail knows."""
    state = _upgrading().current(settings.db)
    if as_json:
        emit_json(state.as_dict())
        return
    shown = state.revision or "none (no keytrail schema yet)"
    say(f"{shown}" + ("" if state.up_to_date else f" (the newest is {state.head}: run `keytrail db upgrade`)"))


@db_app.command()
@errors_to_exit
def history(as_json: JsonOpt = False) -> None:
    """Every schema revision this keytrail ships, oldest first."""
    revisions = _upgrading().history()
    if as_json:
        emit_json([{"revision": rev, "down_revision": down, "doc": doc} for rev, down, doc in revisions])
        return
    for rev, _, doc in revisions:
        say(f"{rev}\t{doc.splitlines()[0] if doc else ''}")
