"""Every error keytrail raises, as one tree rooted at :class:`KeytrailError`.

::

    KeytrailError
    ├── InvalidInput                 bad arguments; nothing was written        (CLI exit 2)
    │   ├── IllegalTransition        the trigger is not allowed in this state
    │   ├── UnknownOnboarding        no such stream
    │   ├── UnknownDatabase          no keytrail database there (and none was to be created)
    │   ├── UnknownKey               no such API key (or not the caller's)
    │   ├── KeyUnusable              the key is revoked or expired
    │   ├── DuplicateAccount         the email is already registered
    │   └── IdempotencyMismatch      the idempotency key was used for another trigger
    ├── AuthenticationFailed         wrong credentials or no live session       (CLI exit 2)
    │   └── AccountLocked            too many failed sign-ins in a row
    ├── ConcurrencyConflict          the onboarding moved past the expected     (CLI exit 4)
    │                                version (commands without one queue instead)
    ├── IntegrityViolation           the stored log is not as keytrail wrote it (CLI exit 1)
    │   ├── CorruptEvent             an event row that cannot be read as keytrail writes it
    │   └── CorruptProjection        a projection row that cannot be read as keytrail writes it
    ├── SecretKeyError               missing or wrong encryption key            (CLI exit 2)
    ├── StorageError                 the database refused                       (CLI exit 3)
    │   ├── NotAKeytrailDatabase     a foreign or corrupt file                  (CLI exit 2)
    │   ├── SchemaMismatch           a keytrail database of another schema      (CLI exit 2)
    │   ├── ReadOnly                 opened read-only (or a read-only database) (CLI exit 2)
    │   ├── DatabaseBusy             locked by another writer past the timeout
    │   └── DatabaseUnavailable      cannot be reached or opened
    └── AuthorityUnavailable         the key authority did not answer           (CLI exit 3)

Messages are sentences with the facts, and never contain a key or a password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

__all__ = [
    "AccountLocked",
    "AuthenticationFailed",
    "AuthorityUnavailable",
    "ConcurrencyConflict",
    "CorruptEvent",
    "CorruptProjection",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "DuplicateAccount",
    "IdempotencyMismatch",
    "IllegalTransition",
    "IntegrityViolation",
    "InvalidInput",
    "KeyUnusable",
    "KeytrailError",
    "NotAKeytrailDatabase",
    "ReadOnly",
    "SchemaMismatch",
    "SecretKeyError",
    "StorageError",
    "UnknownDatabase",
    "UnknownKey",
    "UnknownOnboarding",
]


class KeytrailError(Exception):
    """Base of every error keytrail raises; ``exit_code`` is what the CLI returns for it."""

    exit_code: int = 2


class InvalidInput(KeytrailError, ValueError):
    """The caller's input was refused before anything was written."""


class IllegalTransition(InvalidInput):
    """The trigger is not allowed in the onboarding's current state."""

    def __init__(
        self, stream_id: str, state: str, trigger: str, allowed_from: list[str], allowed_now: list[str]
    ) -> None:
        self.stream_id = stream_id
        self.state = state
        self.trigger = trigger
        self.allowed_from = allowed_from
        self.allowed_now = allowed_now
        super().__init__(
            f"{stream_id} is {state}; {trigger} is allowed only in {', '.join(allowed_from)}. "
            f"Allowed now: {', '.join(allowed_now)}."
        )


class UnknownOnboarding(InvalidInput):
    """No onboarding has that stream id."""


class UnknownDatabase(InvalidInput):
    """No keytrail database at that URL, and the caller asked not to create one; nothing was created."""


class UnknownKey(InvalidInput):
    """No API key has that id, or it belongs to another account."""


class KeyUnusable(InvalidInput):
    """The API key exists but is revoked or expired."""


class DuplicateAccount(InvalidInput):
    """An account with that email already exists."""


class IdempotencyMismatch(InvalidInput):
    """The idempotency key was already used on the stream for a different trigger."""


class AuthenticationFailed(KeytrailError):
    """Wrong credentials, an unknown account, or no live session to reuse."""


class AccountLocked(AuthenticationFailed):
    """The account is locked after too many failed sign-ins in a row.

    ``locked_until`` (ISO 8601, UTC) and ``retry_after`` (whole seconds from the refusal) say
    when a sign-in can succeed again; the CLI's ``--json`` errors carry both.
    """

    def __init__(self, message: str, *, locked_until: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.locked_until = locked_until
        self.retry_after = retry_after


class ConcurrencyConflict(KeytrailError):
    """The onboarding moved past the version the caller expected; nothing was written.

    Commands on one onboarding queue for it and retry a lost race, so callers meet this only
    when they pass ``expected_version`` (the CLI's ``--expected-version``), or when retries run
    out. The CLI exits 4 for it, so scripts can tell it from bad input: read the state again.
    """

    exit_code = 4


class IntegrityViolation(KeytrailError):
    """A row of the log is not what keytrail writes (tampering or corruption): an audit finding, so exit 1.

    Readers that rebuild or show events (replay, history, exports, digests, status) stop here
    rather than guess what a damaged row meant; ``verify`` reports the same rows as problems.
    """

    exit_code = 1


class CorruptEvent(IntegrityViolation):
    """An event row holds a value keytrail never writes: its message names the stream and version."""

    def __init__(self, stream_id: object, version: object, what: str, *, position: object = None) -> None:
        self.stream_id = stream_id
        self.version = version
        self.position = position
        if type(version) is int:
            row = f"Event version {version} of {_shown(stream_id)}"
        else:  # the version itself is damaged: the position still finds the row
            row = f"The event of {_shown(stream_id)} at position {_shown(position)}"
        super().__init__(f"{row} is not as keytrail wrote it: {what} Run `keytrail verify` to list every damaged row.")


class CorruptProjection(IntegrityViolation):
    """A projection row (an onboarding's current state) holds a value keytrail never writes."""

    def __init__(self, stream_id: object, what: str) -> None:
        self.stream_id = stream_id
        super().__init__(
            f"The projection row of {_shown(stream_id)} is not as keytrail wrote it: {what} "
            "Run `keytrail verify` to list every damaged row."
        )


def _shown(value: object) -> str:
    """A stored value in a message: text as is, anything else as its repr, long values cut."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class SecretKeyError(KeytrailError):
    """The encryption key is missing, malformed, or not the one the data was sealed with."""


class StorageError(KeytrailError):
    """The database refused an operation."""

    exit_code = 3


class NotAKeytrailDatabase(StorageError):
    """The database is not a keytrail database (a foreign or corrupt file); it was left untouched."""

    exit_code = 2


class SchemaMismatch(StorageError):
    """The database was made by a keytrail of another schema version; it was left untouched."""

    exit_code = 2


class ReadOnly(StorageError):
    """The database takes no writes: opened with ``read_only=True`` (``keytrail --read-only``), or read-only itself.

    A storage fact, so ``except StorageError`` catches it with the driver's own refusals; but
    exit 2, not 3: 3 says "could not be reached, try again", and no retry makes a read-only open
    write. Open it without ``read_only`` (and with write access) to run the command.
    """

    exit_code = 2


class DatabaseBusy(StorageError):
    """Another writer held the database lock past the busy timeout."""


class DatabaseUnavailable(StorageError):
    """The database could not be reached or opened."""


class AuthorityUnavailable(KeytrailError):
    """The key authority could not be reached or did not answer in time."""

    exit_code = 3
