"""The HTTP service's commands: ``keytrail serve`` and the API tokens it checks (``keytrail token``).

FastAPI and uvicorn are imported only when ``serve`` runs, so every other command starts as fast as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from keytrail.cli.rendering import emit_json, say, table
from keytrail.cli.root import ActorOpt, JsonOpt, app, errors_to_exit, open_engine, refuse_if_read_only, settings

if TYPE_CHECKING:
    from keytrail.engine import Engine
    from keytrail.engine.tokens import Tokens

__all__ = ["serve", "token_app"]


def _tokens(engine: Engine) -> Tokens:
    """The token store, imported when a token command runs (``keytrail --help`` loads no engine)."""
    from keytrail.engine.tokens import Tokens

    return Tokens(engine)


token_app = typer.Typer(no_args_is_help=True, help="API tokens of the HTTP service (keytrail serve).")
app.add_typer(token_app, name="token")


@token_app.command("create")
@errors_to_exit
def token_create(
    name: Annotated[str, typer.Option("--name", help="The token's name: the actor of the commands it drives.")],
    scope: Annotated[str, typer.Option("--scope", help="drive, audit, or admin (both, and the key authority).")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token; it is printed this once and stored only as a hash."""
    with open_engine(create=True) as engine:
        created = _tokens(engine).create(name, scope, actor=actor)
    if as_json:
        emit_json(created.as_dict())
        return
    say(f"token {created.name} (scope {created.scope}); shown only now, keep it safe:")
    print(created.token)


@token_app.command("list")
@errors_to_exit
def token_list(as_json: JsonOpt = False) -> None:
    """Every token by name, revoked ones included: never the token itself."""
    with open_engine() as engine:
        found = [token.as_dict() for token in _tokens(engine).listed()]
    if as_json:
        emit_json({"tokens": found})
        return
    columns = ("name", "scope", "created_at", "revoked_at")
    table("API tokens", columns, ([str(t[c] or "") for c in columns] for t in found))


@token_app.command("revoke")
@errors_to_exit
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.", metavar="NAME")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token: every later request with it is refused (401)."""
    with open_engine() as engine:
        revoked = _tokens(engine).revoke(name, actor=actor).as_dict()
    if as_json:
        emit_json(revoked)
        return
    say(f"token {revoked['name']} (scope {revoked['scope']}): revoked at {revoked['revoked_at']}")


@app.command()
@errors_to_exit
def serve(
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The port to listen on.")] = 8080,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="Worker processes; more than 1 needs PostgreSQL.")
    ] = 1,
) -> None:
    """Serve the HTTP API (DESIGN.md section 9) until Ctrl-C or SIGTERM, which let requests in flight finish."""
    refuse_if_read_only("serve")
    from keytrail.http.serve import serve as run

    run(settings.db, host=host, port=port, workers=workers)
