"""Secrets at rest: the encryption key, sealing stored API keys, fingerprints and hints.

API keys are sealed with Fernet (AES-128-CBC with HMAC-SHA256). A :class:`SecretBox`
holds the current key first and any retired keys after it, so data sealed under an old
key still opens while :meth:`SecretBox.rotate` re-seals it under the new one.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from keytrail.errors import SecretKeyError

__all__ = [
    "SECRET_KEY_ENV",
    "SECRET_KEY_FILE_ENV",
    "SecretBox",
    "fingerprint",
    "generate_secret_key",
    "hint",
    "key_file_of",
    "load_secret_keys",
    "parse_secret_key",
    "write_key_file",
]

SECRET_KEY_ENV = "KEYTRAIL_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
SECRET_KEY_FILE_ENV = "KEYTRAIL_SECRET_KEY_FILE"  # noqa: S105
_CHECK_PLAINTEXT = "keytrail secret check"
_FILE_SOURCE = "the key file "


def fingerprint(key: str) -> str:
    """A one-way, collision-resistant name for a key: SHA-256 under a keytrail domain prefix."""
    return "sha256:" + hashlib.sha256(b"keytrail-api-key\x00" + key.encode("ascii")).hexdigest()


def hint(key: str) -> str:
    """The last four characters, as the API Portal shows them."""
    return key[-4:]


def generate_secret_key() -> str:
    """A fresh encryption key in the form ``KEYTRAIL_SECRET_KEY`` takes."""
    return Fernet.generate_key().decode("ascii")


def _parse_keys(text: str, source: str) -> list[Fernet]:
    fernets: list[Fernet] = []
    for part in text.replace(",", " ").split():
        try:
            if len(base64.urlsafe_b64decode(part.encode("ascii"))) != 32:
                raise ValueError
            fernets.append(Fernet(part.encode("ascii")))
        except (ValueError, UnicodeEncodeError):
            raise SecretKeyError(
                f"The encryption key from {source} is malformed: expected url-safe base64 of 32 bytes, "
                "as `keytrail secret-key` or Fernet.generate_key() makes."
            ) from None
    if not fernets:
        raise SecretKeyError(f"The encryption key from {source} is empty.")
    return fernets


def load_secret_keys(default_file: Path | None, *, create: bool) -> tuple[list[Fernet], str]:
    """Find the encryption key(s): the environment, then a key file, else (when allowed) a new file.

    Returns the keys, newest first, and a description of where they came from.
    """
    from_env = os.environ.get(SECRET_KEY_ENV)
    if from_env:
        return _parse_keys(from_env, SECRET_KEY_ENV), SECRET_KEY_ENV
    named_file = os.environ.get(SECRET_KEY_FILE_ENV)
    path = Path(named_file) if named_file else default_file
    if path is None:
        raise SecretKeyError(f"No encryption key: set {SECRET_KEY_ENV} or {SECRET_KEY_FILE_ENV}.")
    source = f"{_FILE_SOURCE}{path}"
    try:
        return _parse_keys(path.read_text(encoding="ascii"), source), source
    except FileNotFoundError:
        if not create or named_file:
            raise SecretKeyError(
                f"The encryption key file {path} does not exist. This database's secrets were sealed with a key "
                f"that keytrail cannot find: restore that file, or set {SECRET_KEY_ENV} or {SECRET_KEY_FILE_ENV}."
            ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretKeyError(f"The encryption key file {path} cannot be read: {exc.__class__.__name__}.") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_secret_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return _parse_keys(path.read_text(encoding="ascii"), source), source
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return _parse_keys(key, source), source


def parse_secret_key(text: str) -> Fernet:
    """One encryption key, as ``generate_secret_key`` makes it; a clear error otherwise (the key is never shown)."""
    keys = _parse_keys(text, "the new key")
    if len(keys) != 1:
        raise SecretKeyError(f"Expected one new encryption key, not {len(keys)}.")
    return keys[0]


def key_file_of(source: str) -> Path | None:
    """The key file a :class:`SecretBox`'s keys came from, or None when they came from the environment."""
    return Path(source[len(_FILE_SOURCE) :]) if source.startswith(_FILE_SOURCE) else None


def write_key_file(path: Path, keys: list[str]) -> None:
    """Replace a key file atomically (owner-only, synced), so a crash leaves the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write("\n".join(keys) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class SecretBox:
    """Seals and opens secrets with the current key; opens with retired keys too."""

    def __init__(self, keys: list[Fernet], source: str) -> None:
        self._keys = list(keys)
        self._fernet = MultiFernet(keys)
        self._current = keys[0]
        self.source = source

    def with_new_key(self, key: Fernet, source: str) -> SecretBox:
        """A box that seals with ``key`` and still opens what the current keys sealed (for a rotation)."""
        return SecretBox([key, *self._keys], source)

    def only_current(self) -> SecretBox:
        """The same box with every retired key dropped (after a rotation re-sealed everything)."""
        return SecretBox([self._current], self.source)

    def __repr__(self) -> str:
        return f"SecretBox(source={self.source!r})"

    def seal(self, plaintext: str) -> str:
        return self._current.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, token: str, *, what: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                f"{what} cannot be decrypted with the encryption key from {self.source}: "
                "it was sealed with another key, or the stored value was altered."
            ) from None

    def rotate(self, token: str, *, what: str) -> str:
        """Re-seal ``token`` under the current key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise SecretKeyError(
                f"{what} cannot be re-encrypted: none of the keys from {self.source} opens it."
            ) from None

    def check_token(self) -> str:
        """A sealed constant, stored with the database, that tells a wrong key from a right one at open."""
        return self.seal(_CHECK_PLAINTEXT)

    def confirm(self, token: str) -> None:
        try:
            ok = self._fernet.decrypt(token.encode("ascii")) == _CHECK_PLAINTEXT.encode("ascii")
        except InvalidToken:
            ok = False
        if not ok:
            raise SecretKeyError(
                f"The encryption key from {self.source} is not the one this database was sealed with; "
                "nothing was read or written. Use the key the database was created with."
            )
