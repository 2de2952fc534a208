"""``keytrail checkpoint``: sign the log's size and digest with a key kept outside the database, and check it later.

The format of the statement is in docs/checkpoints.md. Verifying needs the public key and the
database only (no encryption key), so it runs under ``--read-only`` on a handed-over copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from keytrail.cli.rendering import emit_json, say
from keytrail.cli.root import JsonOpt, OutputOpt, app, errors_to_exit, open_engine, writing_to
from keytrail.errors import InvalidInput

__all__ = ["checkpoint_app", "keygen", "sign", "verify"]

checkpoint_app = typer.Typer(
    no_args_is_help=True, help="Signed checkpoints of the log, to publish and check later (docs/checkpoints.md)."
)
app.add_typer(checkpoint_app, name="checkpoint")


@checkpoint_app.command("keygen")
@errors_to_exit
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Write PREFIX.key (owner-only) and PREFIX.pub.", metavar="PREFIX")],
    as_json: JsonOpt = False,
) -> None:
    """Make an Ed25519 signing key (PREFIX.key, mode 600) and its public key (PREFIX.pub); never replaces one."""
    from keytrail.engine import checkpoints

    private, public, kid = checkpoints.generate_signing_key(out)
    if as_json:
        emit_json({"signing_key": str(private), "public_key": str(public), "key_id": kid})
    else:
        say(f"signing key {private} (keep it secret), public key {public}, key id {kid}")


@checkpoint_app.command("sign")
@errors_to_exit
def sign(
    signing_key: Annotated[
        Path, typer.Option("--signing-key", help="The Ed25519 private key (PEM, mode 600).", metavar="FILE")
    ],
    output: OutputOpt = None,
) -> None:
    """Print a signed statement of the log's size and digest (JSON), to publish or keep outside the database."""
    from keytrail.engine import checkpoints

    private = checkpoints.load_signing_key(signing_key)
    with open_engine() as engine:
        document = checkpoints.sign(engine, private)
    with writing_to(output):
        print(json.dumps(document, indent=2, sort_keys=True))


@checkpoint_app.command("verify")
@errors_to_exit
def verify(
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint file that sign wrote.", metavar="FILE")],
    public_key: Annotated[
        Path, typer.Option("--public-key", help="The signer's Ed25519 public key (PEM).", metavar="FILE")
    ],
    as_json: JsonOpt = False,
    output: OutputOpt = None,
) -> None:
    """Check the signature, then that the log still extends the checkpoint (exit 1 when either fails)."""
    from keytrail.engine import checkpoints

    try:
        document = json.loads(checkpoint.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput(f"{str(checkpoint)[:160]} is not a keytrail checkpoint: it is not JSON.") from None
    public = public_key.read_bytes()
    with open_engine() as engine:
        result = checkpoints.check(engine, document, public)
    with writing_to(output):
        if as_json:
            emit_json(result.as_dict())
        else:
            say(("ok: " if result.ok else "FAILED: ") + result.message)
    if not result.ok:
        raise typer.Exit(1)
