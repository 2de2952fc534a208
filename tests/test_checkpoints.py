"""Signed checkpoints: a statement signed outside the database that a later rewrite of the log cannot satisfy."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from typer.testing import CliRunner

from keytrail import Engine, State
from keytrail import schemas as shipped
from keytrail.cli import app
from keytrail.engine import checkpoints, reports
from tests.conftest import MovableClock
from tests.helpers import drive_to, rechain
from tests.json_schemas import check_json_output

runner = CliRunner()


def cli(url: str, *args: str) -> Any:
    result = runner.invoke(app, ["--db", url, *args])
    check_json_output(args, result.stdout, result.stderr, result.exit_code)
    return result


def _validate(name: str, value: Any) -> None:
    import jsonschema

    jsonschema.validate(value, shipped.load(name))


@pytest.fixture
def log(tmp_path: Path, clock: MovableClock) -> tuple[str, Path]:
    """A database with two onboardings, and a signing key pair beside it (made by keygen)."""
    url = f"sqlite:///{tmp_path}/keytrail.db"
    with Engine.open(url, clock=clock) as engine:
        drive_to(engine, "acme", State.StoreIntegration)
        drive_to(engine, "beta", State.SignedIn)
    made = cli(url, "checkpoint", "keygen", "--out", str(tmp_path / "auditor"), "--json")
    assert made.exit_code == 0, made.stderr
    return url, tmp_path


def _sign(url: str, folder: Path, name: str = "cp.json") -> Path:
    target = folder / name
    done = cli(url, "checkpoint", "sign", "--signing-key", str(folder / "auditor.key"), "-o", str(target))
    assert done.exit_code == 0, done.stderr
    return target


def _verify(url: str, folder: Path, statement: Path, public: str = "auditor.pub", *flags: str) -> Any:
    return cli(url, *flags, "checkpoint", "verify", str(statement), "--public-key", str(folder / public), "--json")


def _rechain(engine: Engine, stream: str, version: int, actor: str) -> None:
    """Change one event's actor and recompute every hash of the stream and its projection's head,
    as an attacker with write access who knows the recipe would."""

    def change(row: dict[str, Any]) -> None:
        if row["version"] == version:
            row["actor"] = actor

    rechain(engine, stream, change)


def test_keygen_writes_an_owner_only_signing_key_and_its_public_key(log: tuple[str, Path]) -> None:
    url, folder = log
    private, public = folder / "auditor.key", folder / "auditor.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    loaded = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(loaded, Ed25519PublicKey)
    before = (private.read_bytes(), public.read_bytes())
    again = cli(url, "checkpoint", "keygen", "--out", str(folder / "auditor"))
    assert again.exit_code == 2 and "exists" in again.stderr
    assert (private.read_bytes(), public.read_bytes()) == before


def test_a_checkpoint_verifies_and_still_does_after_the_log_grows(log: tuple[str, Path], clock: MovableClock) -> None:
    url, folder = log
    statement = _sign(url, folder)
    document = json.loads(statement.read_text())
    _validate("checkpoint", document)
    assert document["statement"]["log_size"] == 11  # acme: 7 events, beta: 2, the authority's: an account, a key
    first = _verify(url, folder, statement)
    assert first.exit_code == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["ok"] is True
    with Engine.open(url, clock=clock) as engine:
        clock.advance(minutes=5)
        engine.access("acme")
        drive_to(engine, "gamma", State.Validated)
    grown = json.loads(_verify(url, folder, statement).stdout)
    assert (grown["ok"], grown["new_events"]) == (True, 8)  # one access, six to Validated, a key generated


def test_a_consistent_rewrite_passes_verify_but_not_the_checkpoint(log: tuple[str, Path], clock: MovableClock) -> None:
    url, folder = log
    statement = _sign(url, folder)
    with Engine.open(url, clock=clock) as engine:
        _rechain(engine, "acme", 2, "someone-else")
        assert engine.verify().ok  # the chain alone cannot tell: every hash was recomputed
    failed = _verify(url, folder, statement)
    assert failed.exit_code == 1
    found = json.loads(failed.stdout)
    assert found["ok"] is False and "edited, deleted, inserted or reordered" in found["message"]
    text = cli(url, "checkpoint", "verify", str(statement), "--public-key", str(folder / "auditor.pub"))
    assert text.exit_code == 1 and text.stdout.startswith("FAILED: ")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["statement"].update(log_size=d["statement"]["log_size"] - 1),
        lambda d: d["statement"].update(digest="0" * 64),
        lambda d: d["statement"].update(signed_at="2030-01-01T00:00:00.000000+00:00"),
        lambda d: d.update(signature=base64.b64encode(b"\0" * 64).decode()),
    ],
    ids=["size", "digest", "time", "signature"],
)
def test_a_tampered_statement_fails(log: tuple[str, Path], tamper: Any) -> None:
    url, folder = log
    statement = _sign(url, folder)
    document = json.loads(statement.read_text())
    tamper(document)
    statement.write_text(json.dumps(document))
    failed = _verify(url, folder, statement)
    assert failed.exit_code == 1, failed.stdout + failed.stderr
    assert "signature" in json.loads(failed.stdout)["message"]


def test_another_public_key_fails(log: tuple[str, Path]) -> None:
    url, folder = log
    statement = _sign(url, folder)
    assert cli(url, "checkpoint", "keygen", "--out", str(folder / "other")).exit_code == 0
    failed = _verify(url, folder, statement, "other.pub")
    assert failed.exit_code == 1
    assert "key" in json.loads(failed.stdout)["message"]


def test_bad_input_is_exit_2(log: tuple[str, Path]) -> None:
    url, folder = log
    statement = _sign(url, folder)
    garbage = folder / "garbage.json"
    for text in ("not json", "[]", '{"statement": {}, "signature": "x"}', json.dumps({"statement": 1})):
        garbage.write_text(text)
        done = _verify(url, folder, garbage)
        assert done.exit_code == 2, (text, done.stderr)
    (folder / "bad.pub").write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    assert _verify(url, folder, statement, "bad.pub").exit_code == 2
    assert _verify(url, folder, statement, "absent.pub").exit_code == 2
    (folder / "auditor.key").chmod(0o644)
    loose = cli(url, "checkpoint", "sign", "--signing-key", str(folder / "auditor.key"))
    assert loose.exit_code == 2 and "chmod 600" in loose.stderr
    not_a_key = cli(url, "checkpoint", "sign", "--signing-key", str(folder / "auditor.pub"))
    assert not_a_key.exit_code == 2


def test_verify_works_read_only_without_the_encryption_key(log: tuple[str, Path]) -> None:
    url, folder = log
    statement = _sign(url, folder)
    (folder / "keytrail.db.key").unlink()
    before = sorted(p.name for p in folder.iterdir())
    done = _verify(url, folder, statement, "auditor.pub", "--read-only")
    assert done.exit_code == 0, done.stderr
    again = cli(url, "--read-only", "checkpoint", "sign", "--signing-key", str(folder / "auditor.key"))
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in folder.iterdir()) == before


def test_the_statement_is_checkable_from_its_documented_format(log: tuple[str, Path], clock: MovableClock) -> None:
    """What docs/checkpoints.md says, done by hand: JCS of the statement, Ed25519, the key id, the digest."""
    url, folder = log
    document = json.loads(_sign(url, folder).read_text())
    body = document["statement"]
    assert set(body) == {"format", "log_size", "digest", "last_position", "signed_at", "key_id"}
    signed = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    public = serialization.load_pem_public_key((folder / "auditor.pub").read_bytes())
    assert isinstance(public, Ed25519PublicKey)
    public.verify(base64.b64decode(document["signature"]), signed)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert body["key_id"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    with Engine.open(url, clock=clock, read_only=True) as engine:
        assert f"{body['log_size']}:{body['digest']}" == reports.digest(engine).token
        assert checkpoints.check(engine, document, (folder / "auditor.pub").read_bytes()).ok


def test_sign_and_check_on_each_backend(db_url: str, clock: MovableClock) -> None:
    """The Python API on SQLite and PostgreSQL: a grown log passes, a consistent rewrite fails, read-only too."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with Engine.open(db_url, clock=clock) as engine:
        drive_to(engine, "acme", State.StoreIntegration)
        document = checkpoints.sign(engine, private)
        engine.access("acme")
        grown = checkpoints.check(engine, document, public_pem)
        assert (grown.ok, grown.new_events) == (True, 1)
        _rechain(engine, "acme", 3, "mallory")
        assert engine.verify().ok
        assert not checkpoints.check(engine, document, public_pem).ok
    with Engine.open(db_url, clock=clock, read_only=True) as reader:
        result = checkpoints.check(reader, document, public_pem)
        assert not result.ok and "no longer extends" in result.message


def test_the_worked_example_of_the_documentation(tmp_path: Path) -> None:
    """Every value docs/checkpoints.md shows is what keytrail computes: the page cannot drift from the code."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from keytrail.events import canonical_json

    page = (Path(__file__).parent.parent / "docs" / "checkpoints.md").read_text(encoding="utf-8")
    instant = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    with Engine.open(f"sqlite:///{tmp_path}/example.db", clock=lambda: instant) as engine:
        engine.access("acme-store", actor="ops@acme.example")
        event = next(iter(engine.events()))
        document = checkpoints.sign(engine, private)
        shown = [
            canonical_json(event.hashed_fields()).decode(),
            event.hash,
            reports.DIGEST_SEED,
            reports.digest(engine).digest,
            private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex(),
            checkpoints.signed_bytes(document["statement"]).decode(),
            json.dumps(document, indent=2, sort_keys=True),
        ]
    for value in shown:
        assert value in page, value
