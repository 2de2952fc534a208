"""Secrets at rest: the encryption key, sealing stored API keys, fingerprints and hints.

API keys are sealed with Fernet (AES-128-CBC with HMAC-SHA256). A :class:`SecretBox`
holds the current key first and any retired keys after it, so data sealed under an old
key still opens while :meth:`SecretBox.rotate` re-seals it under the new one.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from keytrail.errors import SecretKeyError
from keytrail.inputs import clipped

__all__ = [
    "SECRET_KEY_ENV",
    "SECRET_KEY_FILE_ENV",
    "DeferredBox",
    "SecretBox",
    "fingerprint",
    "generate_secret_key",
    "hint",
    "key_file_of",
    "load_secret_keys",
    "parse_secret_key",
    "write_key_file",
    "write_new_private_file",
]

SECRET_KEY_ENV = "KEYTRAIL_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
SECRET_KEY_FILE_ENV = "KEYTRAIL_SECRET_KEY_FILE"  # noqa: S105
_CHECK_PLAINTEXT = "keytrail secret check"
_FILE_SOURCE = "the key file "


def _named(where: object) -> str:
    """A key file's path (or a key's source) as messages show it: never 100,000 characters of it."""
    return clipped(str(where), 160)


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
                f"The encryption key from {_named(source)} is malformed: expected url-safe base64 of 32 bytes, "
                "as `keytrail secret-key` or Fernet.generate_key() makes."
            ) from None
    if not fernets:
        raise SecretKeyError(f"The encryption key from {_named(source)} is empty.")
    return fernets


def _check_private(path: Path, mode: int) -> None:
    """Refuse a key file that other users may read or change, as ssh refuses such a private key."""
    if os.name == "posix" and mode & 0o077:
        raise SecretKeyError(
            f"The encryption key file {_named(path)} is readable or writable by other users (mode {stat.S_IMODE(mode):o}); "
            f"make it owner-only with `chmod 600 {_named(path)}`, then try again."
        )


def _read_key_file(path: Path) -> str:
    """The key file's text, after checking that only its owner can read or change it."""
    with path.open("rb") as handle:
        _check_private(path, os.fstat(handle.fileno()).st_mode)
        return handle.read().decode("ascii")


def _read_key_file_or_fail(path: Path) -> str:
    """:func:`_read_key_file`, with a failure to read as one clear error."""
    try:
        return _read_key_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> SecretKeyError:
    return SecretKeyError(f"The encryption key file {_named(path)} cannot be read: {exc.__class__.__name__}.")


def key_file_keys(path: Path) -> list[str]:
    """The keys a key file lists, newest first, read with the same owner-only check as at open."""
    return _read_key_file_or_fail(path).replace(",", " ").split()


def load_secret_keys(default_file: Path | None, *, create: bool) -> tuple[list[Fernet], str]:
    """Find the encryption key(s): the environment, then a key file, else (when allowed) a new file.

    ``create`` says the database is new (nothing is sealed yet): only then may a missing key
    file be created, or an empty one (left by a full disk or an older keytrail) replaced.
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
    may_create = create and not named_file
    try:
        text = _read_key_file(path)
    except FileNotFoundError:
        if not may_create:
            raise SecretKeyError(
                f"The encryption key file {_named(path)} does not exist. This database's secrets were sealed with a key "
                f"that keytrail cannot find: restore that file, or set {SECRET_KEY_ENV} or {SECRET_KEY_FILE_ENV}."
            ) from None
        return _parse_keys(_create_key_file(path), source), source
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None
    if not text.strip():
        if may_create:  # nothing was sealed yet, so no key can be lost: make a real one in its place
            return _parse_keys(_replace_empty_key_file(path), source), source
        raise SecretKeyError(
            f"The encryption key file {_named(path)} is empty, but the database was sealed with a key: restore the file "
            f"from a backup, or set {SECRET_KEY_ENV} or {SECRET_KEY_FILE_ENV} to the key."
        )
    return _parse_keys(text, source), source


def _fsync_folder(folder: Path) -> None:
    """Make a new or renamed name in ``folder`` survive a crash (the file's own fsync does not cover it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # no folder handle on this platform: the rename stands, only less surely synced
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a folder; the file itself was synced
    finally:
        os.close(fd)


def _written_temporary(path: Path, text: str) -> Path:
    """A synced, owner-only file holding ``text`` beside ``path``, under a name nobody can predict or plant.

    ``O_EXCL | O_NOFOLLOW`` refuse to reuse whatever is at that name, a symbolic link included.
    On any failure (a full disk, say) the temporary file is removed and the error raised.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("ascii"))
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _create_key_file(path: Path) -> str:
    """Create the key file whole or not at all; when another process creates it first, use theirs.

    The key is written and synced under a temporary name, then linked to its name: a link
    never replaces what is there, so of racing processes exactly one wins and the others
    read a complete file, never an empty or half-written one.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _written_temporary(path, generate_secret_key() + "\n")
    except OSError as exc:
        raise SecretKeyError(
            f"The encryption key file {_named(path)} cannot be written: {exc.strerror or exc.__class__.__name__}. "
            "Nothing was created."
        ) from None
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first: use theirs, below
    except OSError as exc:
        raise SecretKeyError(
            f"The encryption key file {_named(path)} cannot be written: {exc.strerror or exc.__class__.__name__}. "
            "Nothing was created."
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)
    if path.is_symlink():
        raise SecretKeyError(
            f"The encryption key file {_named(path)} is a symbolic link that keytrail did not make; keytrail writes no "
            f"key through a link. Remove it, or name the key file with {SECRET_KEY_FILE_ENV}."
        )
    return _read_key_file_or_fail(path)


def write_new_private_file(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Create ``path`` whole, synced, with ``mode``; never over an existing file (FileExistsError) or through a link.

    Written under a temporary name, then linked to its name, as :func:`_create_key_file` does.
    """
    tmp = _written_temporary(path, text)
    try:
        if mode != 0o600:
            tmp.chmod(mode)
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)


def _replace_empty_key_file(path: Path) -> str:
    """Put a key in place of an empty key file, if it is still the same empty file."""
    seen = path.stat()
    try:
        tmp = _written_temporary(path, generate_secret_key() + "\n")
    except OSError as exc:
        raise SecretKeyError(
            f"The encryption key file {_named(path)} cannot be written: {exc.strerror or exc.__class__.__name__}."
        ) from None
    try:
        now = path.stat()
        # Another process may have replaced it already: then its key is the one to use.
        if (now.st_dev, now.st_ino, now.st_size) == (seen.st_dev, seen.st_ino, 0):
            os.replace(tmp, path)
            _fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key_file_or_fail(path)


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
    """Replace a key file atomically and durably (owner-only, synced, its folder synced too).

    A crash leaves the old file or the new, never half of one. When ``path`` is a symbolic
    link (a key file named by ``KEYTRAIL_SECRET_KEY_FILE`` may be one), the file it points
    to is replaced, and the link kept.
    """
    target = Path(os.path.realpath(path))
    tmp = _written_temporary(target, "\n".join(keys) + "\n")
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


class SecretBox:
    """Seals and opens secrets with the current key; opens with retired keys too."""

    def __init__(self, keys: list[Fernet], source: str) -> None:
        self._keys = list(keys)
        self._fernet = MultiFernet(keys)
        self._current = keys[0]
        self._source = source

    @property
    def source(self) -> str:
        """Where the keys came from (the environment variable's name, or the key file), for messages."""
        return self._source

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
                f"{what} cannot be decrypted with the encryption key from {_named(self.source)}: "
                "it was sealed with another key, or the stored value was altered."
            ) from None

    def rotate(self, token: str, *, what: str) -> str:
        """Re-seal ``token`` under the current key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise SecretKeyError(
                f"{what} cannot be re-encrypted: none of the keys from {_named(self.source)} opens it."
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
                f"The encryption key from {_named(self.source)} is not the one this database was sealed with; "
                "nothing was read or written. Use the key the database was created with."
            )


class DeferredBox(SecretBox):
    """A :class:`SecretBox` whose keys are found at first use: reading and auditing never need them.

    ``load`` finds and checks the keys (a missing or wrong key is its SecretKeyError, raised to
    the first command that seals or opens, and again to the next: nothing failed is kept).
    """

    def __init__(self, load: Callable[[], SecretBox]) -> None:  # no super().__init__: no keys yet
        self._load = load
        self._box: SecretBox | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> SecretBox:
        box = self._box
        if box is None:
            with self._lock:
                if self._box is None:
                    self._box = self._load()
                box = self._box
        return box

    @property
    def source(self) -> str:
        return self._loaded().source

    def __repr__(self) -> str:
        return "SecretBox(keys found at first use)" if self._box is None else repr(self._box)

    def with_new_key(self, key: Fernet, source: str) -> SecretBox:
        return self._loaded().with_new_key(key, source)

    def only_current(self) -> SecretBox:
        return self._loaded().only_current()

    def seal(self, plaintext: str) -> str:
        return self._loaded().seal(plaintext)

    def open(self, token: str, *, what: str) -> str:
        return self._loaded().open(token, what=what)

    def rotate(self, token: str, *, what: str) -> str:
        return self._loaded().rotate(token, what=what)

    def check_token(self) -> str:
        return self._loaded().check_token()

    def confirm(self, token: str) -> None:
        self._loaded().confirm(token)
