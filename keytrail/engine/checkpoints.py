"""Signed checkpoints: the log's size and digest, signed with an Ed25519 key the database never holds.

A digest kept by an auditor proves the log was not rewritten only as long as the copy is
trusted; a checkpoint is the same digest (:func:`keytrail.engine.reports.digest`) in a statement
signed by a key kept outside the database, so it can be published anywhere, and anyone holding
the public key can later show that the log still extends it, or that someone with write access
rewrote it (recomputing every hash does not help: the first ``log_size`` events would have to
produce the signed digest). The format is in docs/checkpoints.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keytrail import inputs
from keytrail.crypto import write_new_private_file
from keytrail.engine.core import Engine
from keytrail.engine.reports import check_digest, digest
from keytrail.errors import InvalidInput
from keytrail.events import canonical_json, iso_utc

__all__ = ["FORMAT", "CheckpointCheck", "check", "generate_signing_key", "key_id", "sign", "signed_bytes"]

FORMAT = "keytrail-checkpoint-v1"
_FIELDS: dict[str, type] = {
    "format": str,
    "log_size": int,
    "digest": str,
    "last_position": int,
    "signed_at": str,
    "key_id": str,
}
_SAFE_INTEGER = 2**53 - 1  # RFC 8785 (I-JSON) numbers: larger integers would not survive another language's parser


def key_id(public: Ed25519PublicKey) -> str:
    """``sha256:`` and the hex SHA-256 of the 32 raw bytes of the public key: which key signed."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def signed_bytes(statement: dict[str, Any]) -> bytes:
    """The bytes signed: the statement in RFC 8785 canonical form (for its strings and safe integers,
    keytrail's canonical JSON is exactly that)."""
    return canonical_json(statement)


def generate_signing_key(prefix: Path) -> tuple[Path, Path, str]:
    """Write ``PREFIX.key`` (PKCS#8 PEM, owner-only) and ``PREFIX.pub`` (SubjectPublicKeyInfo PEM).

    Each is written whole under a temporary name and linked into place: never over an existing
    file. Returns both paths and the key id.
    """
    private_path, public_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise InvalidInput(f"{_named(path)} already exists; keygen never replaces a key. Nothing was written.")
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    try:
        write_new_private_file(private_path, private_pem)
    except FileExistsError:
        raise InvalidInput(f"{_named(private_path)} already exists; nothing was written.") from None
    try:
        write_new_private_file(public_path, public_pem, mode=0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    return private_path, public_path, key_id(private.public_key())


def _named(path: Path) -> str:
    return inputs.clipped(str(path), 160)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file that only its owner may read, as ssh requires of a private key."""
    with path.open("rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if os.name == "posix" and mode & 0o077:
            raise InvalidInput(
                f"The signing key file {_named(path)} is readable or writable by other users (mode "
                f"{stat.S_IMODE(mode):o}); make it owner-only with `chmod 600 {_named(path)}`, then try again."
            )
        data = handle.read()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, binascii.Error):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(
            f"{_named(path)} is not an unencrypted Ed25519 private key in PEM (as `keytrail checkpoint keygen` "
            "or `openssl genpkey -algorithm ed25519` makes)."
        )
    return key


def load_public_key(data: bytes, where: str = "The public key") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, binascii.Error):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(f"{where} is not an Ed25519 public key in PEM (as `keytrail checkpoint keygen` writes).")
    return key


def sign(engine: Engine, private: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed checkpoint of the log as it stands: ``{"statement": {...}, "signature": BASE64}``."""
    found = digest(engine)
    statement = {
        "format": FORMAT,
        "log_size": found.events,
        "digest": found.digest,
        "last_position": found.last_position,
        "signed_at": iso_utc(engine.now()),
        "key_id": key_id(private.public_key()),
    }
    signature = private.sign(signed_bytes(statement))
    return {"statement": statement, "signature": base64.b64encode(signature).decode("ascii")}


@dataclass(frozen=True)
class CheckpointCheck:
    """Whether a checkpoint's signature holds and the log still extends it."""

    ok: bool
    message: str
    statement: dict[str, Any]
    total_events: int | None
    new_events: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": self.message,
            "checkpoint": self.statement,
            "total_events": self.total_events,
            "new_events": self.new_events,
        }


def parse(document: Any) -> tuple[dict[str, Any], bytes]:
    """The statement and the signature of a checkpoint document; InvalidInput for anything else."""
    bad = "is not a keytrail checkpoint: expected "
    if not isinstance(document, dict) or set(document) != {"statement", "signature"}:
        raise InvalidInput(f"The file {bad}a JSON object with exactly statement and signature.")
    statement, signature = document["statement"], document["signature"]
    if not isinstance(statement, dict) or set(statement) != set(_FIELDS):
        raise InvalidInput(f"The file {bad}a statement with exactly {', '.join(sorted(_FIELDS))}.")
    for name, kind in _FIELDS.items():
        value: Any = statement[name]
        if type(value) is not kind or (isinstance(value, int) and not 0 <= value <= _SAFE_INTEGER):
            raise InvalidInput(f"The file {bad}{name} as a {kind.__name__}, not {inputs.clipped(repr(value), 60)}.")
    if statement["format"] != FORMAT:
        raise InvalidInput(f"The file {bad}format {FORMAT}, not {inputs.clipped(statement['format'], 60)!r}.")
    try:
        raw = base64.b64decode(signature, validate=True) if isinstance(signature, str) else b""
    except binascii.Error:
        raw = b""
    if len(raw) != 64:
        raise InvalidInput(f"The file {bad}signature as the base64 of a 64-byte Ed25519 signature.")
    return statement, raw


def check(engine: Engine, document: Any, public_pem: bytes) -> CheckpointCheck:
    """Check the signature with the given public key, then that the log's first ``log_size`` events
    still produce the signed digest (the log may only have grown since)."""
    statement, signature = parse(document)
    public = load_public_key(public_pem)
    given = key_id(public)
    if statement["key_id"] != given:
        return CheckpointCheck(
            False,
            f"The checkpoint names signing key {statement['key_id']}, not the given public key {given}: "
            "the signature cannot be checked with it.",
            statement,
            None,
            None,
        )
    try:
        public.verify(signature, signed_bytes(statement))
    except InvalidSignature:
        return CheckpointCheck(
            False,
            "The checkpoint's signature does not match its statement: the statement or the signature was altered.",
            statement,
            None,
            None,
        )
    result = check_digest(engine, f"{statement['log_size']}:{statement['digest']}")
    where = f"The checkpoint of {statement['log_size']} events signed at {statement['signed_at']}"
    if not result.ok:
        message = f"{where} is signed, but the log no longer extends it: {result.message}"
        return CheckpointCheck(False, message, statement, result.total_events, None)
    added = result.total_events - statement["log_size"]
    return CheckpointCheck(True, f"{where} holds: {result.message}", statement, result.total_events, added)
