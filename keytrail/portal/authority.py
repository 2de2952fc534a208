"""The embedded key authority: company accounts, sign-in with lockout, and API keys with expiry.

It plays the Commerce account site and its API Portal. Methods ending in ``_in`` run inside
a transaction the engine holds, so a command and its side effects commit together.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from keytrail import inputs
from keytrail.crypto import SecretBox, fingerprint, hint
from keytrail.errors import (
    AccountLocked,
    AuthenticationFailed,
    DuplicateAccount,
    KeytrailError,
    KeyUnusable,
    UnknownKey,
)
from keytrail.events import iso_utc
from keytrail.persistence import Database
from keytrail.portal.passwords import DUMMY_HASH, hash_password, verify_password
from keytrail.portal.ports import SavedKey, Verdict
from keytrail.portal.tables import AccountRow, ApiKeyRow, OnboardingSessionRow, SignInAttemptRow

__all__ = ["Account", "ApiKey", "IssuedKey", "KeyAuthority", "SignInAttempt"]

_log = structlog.get_logger("keytrail.portal")
accounts: sa.Table = AccountRow.__table__  # type: ignore[attr-defined]
api_keys: sa.Table = ApiKeyRow.__table__  # type: ignore[attr-defined]
sessions: sa.Table = OnboardingSessionRow.__table__  # type: ignore[attr-defined]
attempts: sa.Table = SignInAttemptRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Account:
    """A company account (never its password hash)."""

    account_id: str
    email: str
    company: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The ``account create --json`` object."""
        return {
            "account_id": self.account_id,
            "email": self.email,
            "company": self.company,
            "created_at": iso_utc(self.created_at),
        }


@dataclass(frozen=True)
class ApiKey:
    """What the API Portal lists for a key: never the key itself."""

    key_id: str
    account_id: str
    description: str
    fingerprint: str
    hint: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def status(self, at: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if at >= self.expires_at else "active"

    def as_dict(self, at: datetime) -> dict[str, Any]:
        """The key as ``keys list --json`` prints it, its ``status`` as of ``at``."""
        return {
            "key_id": self.key_id,
            "description": self.description,
            "hint": self.hint,
            "fingerprint": self.fingerprint,
            "created_at": iso_utc(self.created_at),
            "expires_at": iso_utc(self.expires_at),
            "revoked_at": None if self.revoked_at is None else iso_utc(self.revoked_at),
            "status": self.status(at),
        }


@dataclass(frozen=True)
class IssuedKey:
    """A key handed to its owner: the one place a plaintext key leaves the authority."""

    key_id: str
    key: str = field(repr=False)
    fingerprint: str
    hint: str
    description: str
    expires_at: datetime


@dataclass(frozen=True)
class SignInAttempt:
    """One sign-in attempt as auditors see it."""

    email: str
    account_id: str | None
    stream_id: str | None
    outcome: str
    actor: str | None
    occurred_at: datetime


class KeyAuthority:
    """Accounts, sessions and API keys, stored in keytrail's database, keys sealed at rest."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        clock: Callable[[], datetime],
        *,
        key_lifetime: timedelta,
        session_lifetime: timedelta,
        max_failed_sign_ins: int,
        lockout: timedelta,
    ) -> None:
        self._db = db
        self._box = box
        self._clock = clock
        self.key_lifetime = key_lifetime
        self.session_lifetime = session_lifetime
        self.max_failed_sign_ins = max_failed_sign_ins
        self.lockout = lockout

    def __repr__(self) -> str:
        return f"KeyAuthority({self._db.shown!r})"

    # -- accounts -------------------------------------------------------------------------

    def create_account(self, email: str, password: str, company: str) -> Account:
        """Create a company account (the Commerce account site's registration)."""
        email = inputs.check_email(email)
        company = inputs.check_company(company)
        password_hash = hash_password(inputs.check_password(password))
        with self._db.write() as conn:
            return self.create_account_in(conn, email, password_hash, company, self._clock())

    def create_account_in(
        self, conn: Connection, email: str, password_hash: str, company: str, at: datetime
    ) -> Account:
        if conn.execute(sa.select(accounts.c.account_id).where(accounts.c.email == email)).first() is not None:
            raise DuplicateAccount(f"An account with the email {email} already exists; sign in instead.")
        account = Account("acct_" + uuid.uuid4().hex[:16], email, company, at)
        try:
            conn.execute(
                sa.insert(accounts),
                {
                    "account_id": account.account_id,
                    "email": email,
                    "company": company,
                    "password_hash": password_hash,
                    "failed_sign_ins": 0,
                    "created_at": at,
                },
            )
        except IntegrityError:
            raise DuplicateAccount(f"An account with the email {email} already exists; sign in instead.") from None
        _log.info("account_created", account_id=account.account_id, email=email)
        return account

    def account(self, conn: Connection, account_id: str) -> Account:
        row = conn.execute(
            sa.select(accounts.c.account_id, accounts.c.email, accounts.c.company, accounts.c.created_at).where(
                accounts.c.account_id == account_id
            )
        ).one()
        return Account(*row)

    def find_account(self, email: str) -> Account | None:
        email = inputs.check_email(email)
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(accounts.c.account_id, accounts.c.email, accounts.c.company, accounts.c.created_at).where(
                    accounts.c.email == email
                )
            ).first()
        return None if row is None else Account(*row)

    # -- sign-in --------------------------------------------------------------------------

    def authenticate(self, email: str, password: str | None, *, stream_id: str | None, actor: str | None) -> Account:
        """Check credentials (or, when ``password`` is None, a live session of this onboarding); record every failure.

        The slow hash runs outside any transaction so it never holds the database's write lock.
        Without a password, an unknown email and a known one without a live session of
        ``stream_id`` get the same answer, recorded alike, and neither does any password work:
        nothing tells a prober which emails have accounts.
        """
        email = inputs.check_email(email)
        if password is not None:
            inputs.check_password(password)
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(
                    accounts.c.account_id,
                    accounts.c.email,
                    accounts.c.company,
                    accounts.c.created_at,
                    accounts.c.password_hash,
                    accounts.c.locked_until,
                    sessions.c.expires_at,
                )
                .select_from(
                    accounts.outerjoin(
                        sessions,
                        sa.and_(sessions.c.account_id == accounts.c.account_id, sessions.c.stream_id == stream_id),
                    )
                )
                .where(accounts.c.email == email)
            ).first()
        now = self._clock()
        if password is None and (row is None or row[6] is None or now >= row[6]):
            self._record_failure(email, None if row is None else row[0], stream_id, actor, now, "no_session")
            raise AuthenticationFailed(
                f"There is no live session for {email} on {stream_id}; sign in with the password."
            )
        if row is None:
            if password is not None:
                verify_password(password, DUMMY_HASH)
            self._record_failure(email, None, stream_id, actor, now, "unknown_account")
            raise AuthenticationFailed(f"Sign-in as {email} failed: wrong email or password.")
        account = Account(*row[:4])
        password_hash, locked_until = row[4], row[5]
        if locked_until is not None and now < locked_until:
            self._record_failure(email, account.account_id, stream_id, actor, now, "locked")
            raise AccountLocked(
                f"The account {email} is locked until {iso_utc(locked_until)} after "
                f"{self.max_failed_sign_ins} failed sign-ins in a row."
            )
        if password is None:
            return account  # the session of this onboarding, checked above
        if not verify_password(password, password_hash):
            locked = self._record_failure(email, account.account_id, stream_id, actor, now, "wrong_password")
            if locked is not None:
                raise AccountLocked(
                    f"Sign-in as {email} failed: wrong email or password. After {self.max_failed_sign_ins} failures "
                    f"in a row the account is locked until {iso_utc(locked)}."
                )
            raise AuthenticationFailed(f"Sign-in as {email} failed: wrong email or password.")
        return account

    def _record_failure(
        self, email: str, account_id: str | None, stream_id: str | None, actor: str | None, at: datetime, outcome: str
    ) -> datetime | None:
        """Record a failed attempt in its own transaction; lock the account at the threshold."""
        locked_until = None
        with self._db.write() as conn:
            conn.execute(
                sa.insert(attempts),
                {
                    "email": email,
                    "account_id": account_id,
                    "stream_id": stream_id,
                    "outcome": outcome,
                    "actor": actor,
                    "occurred_at": at,
                },
            )
            if account_id is not None and outcome == "wrong_password":
                conn.execute(
                    sa.update(accounts)
                    .where(accounts.c.account_id == account_id)
                    .values(failed_sign_ins=accounts.c.failed_sign_ins + 1)
                )
                failures = conn.execute(
                    sa.select(accounts.c.failed_sign_ins).where(accounts.c.account_id == account_id)
                ).scalar_one()
                if failures >= self.max_failed_sign_ins:
                    locked_until = at + self.lockout
                    conn.execute(
                        sa.update(accounts)
                        .where(accounts.c.account_id == account_id)
                        .values(failed_sign_ins=0, locked_until=locked_until)
                    )
        _log.warning("sign_in_failed", email=email, stream=stream_id, outcome=outcome, locked=locked_until is not None)
        return locked_until

    def signed_in_in(
        self, conn: Connection, account: Account, *, via: str, stream_id: str, actor: str | None, at: datetime
    ) -> None:
        """Record a sign-in in the command's transaction; a password (or registration) also opens the session.

        Only a password success resets the failure count and opens (or renews) the session of
        this onboarding: a sign-in through the session proves nothing new, so it neither resets
        the count (else a session sign-in every few guesses would dodge the lockout) nor moves
        the session's end (one password lasts ``session_lifetime``, however often it is reused).
        """
        if via == "session":
            self.require_session_in(conn, account.account_id, stream_id, at)
        else:
            conn.execute(
                sa.update(accounts)
                .where(accounts.c.account_id == account.account_id)
                .values(failed_sign_ins=0, locked_until=None)
            )
            expires = at + self.session_lifetime
            moved = conn.execute(
                sa.update(sessions)
                .where(sessions.c.account_id == account.account_id, sessions.c.stream_id == stream_id)
                .values(opened_at=at, expires_at=expires)
            ).rowcount
            if moved == 0:
                conn.execute(
                    sa.insert(sessions),
                    {"account_id": account.account_id, "stream_id": stream_id, "opened_at": at, "expires_at": expires},
                )
        conn.execute(
            sa.insert(attempts),
            {
                "email": account.email,
                "account_id": account.account_id,
                "stream_id": stream_id,
                "outcome": f"ok_{via}",
                "actor": actor,
                "occurred_at": at,
            },
        )

    def session_problem_in(self, conn: Connection, account_id: str, stream_id: str, at: datetime) -> str | None:
        """Why ``stream_id`` holds no live session of the account at ``at`` (a sentence's middle), or None."""
        expires = conn.execute(
            sa.select(sessions.c.expires_at).where(
                sessions.c.account_id == account_id, sessions.c.stream_id == stream_id
            )
        ).scalar_one_or_none()
        if expires is None:
            return f"{stream_id} holds no session on the account site"
        if at >= expires:
            return f"the session of {stream_id} on the account site ended at {iso_utc(expires)}"
        return None

    def require_session_in(self, conn: Connection, account_id: str, stream_id: str, at: datetime) -> None:
        """Refuse, writing nothing, unless ``stream_id`` holds a live session of the account at ``at``."""
        problem = self.session_problem_in(conn, account_id, stream_id, at)
        if problem is not None:
            raise AuthenticationFailed(f"{problem[0].upper()}{problem[1:]}; sign in again.")

    def sign_out(self, email: str) -> None:
        """End the account's sessions on every onboarding, so the next sign-in needs the password."""
        email = inputs.check_email(email)
        with self._db.write() as conn:
            conn.execute(
                sa.delete(sessions).where(
                    sessions.c.account_id.in_(sa.select(accounts.c.account_id).where(accounts.c.email == email))
                )
            )

    def sign_in_attempts(self, email: str | None = None) -> list[SignInAttempt]:
        """Sign-in attempts, oldest first: who, when, which onboarding, what happened."""
        query = sa.select(
            attempts.c.email,
            attempts.c.account_id,
            attempts.c.stream_id,
            attempts.c.outcome,
            attempts.c.actor,
            attempts.c.occurred_at,
        ).order_by(attempts.c.id)
        if email is not None:
            query = query.where(attempts.c.email == inputs.check_email(email))
        with self._db.read() as conn:
            return [SignInAttempt(*row) for row in conn.execute(query)]

    # -- API keys -------------------------------------------------------------------------

    def generate_key_in(self, conn: Connection, account_id: str, description: str, at: datetime) -> IssuedKey:
        """The API Portal's "Add New": a fresh random key, sealed at rest, expiring after the key lifetime."""
        key = "kt_" + secrets.token_urlsafe(32)
        issued = IssuedKey(
            key_id="key_" + secrets.token_hex(8),
            key=key,
            fingerprint=fingerprint(key),
            hint=hint(key),
            description=description,
            expires_at=at + self.key_lifetime,
        )
        conn.execute(
            sa.insert(api_keys),
            {
                "key_id": issued.key_id,
                "account_id": account_id,
                "description": description,
                "fingerprint": issued.fingerprint,
                "hint": issued.hint,
                "ciphertext": self._box.seal(key),
                "created_at": at,
                "expires_at": issued.expires_at,
                "revoked_at": None,
            },
        )
        return issued

    def _key_row(self, conn: Connection, key_id: str) -> sa.Row[tuple[object, ...]] | None:
        return conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()

    def copy_key_in(self, conn: Connection, account_id: str, key_id: str, at: datetime) -> IssuedKey:
        """The API Portal's "Copy": the owner gets a usable key of theirs back."""
        row = self._key_row(conn, key_id)
        if row is None or row.account_id != account_id:
            raise UnknownKey(f"The signed-in account has no key {key_id}.")
        if row.revoked_at is not None:
            raise KeyUnusable(f"Key {key_id} was revoked at {iso_utc(row.revoked_at)}; generate a new key instead.")
        if at >= row.expires_at:
            raise KeyUnusable(f"Key {key_id} expired at {iso_utc(row.expires_at)}; generate a new key instead.")
        key = self._box.open(row.ciphertext, what=f"Key {key_id}")
        return IssuedKey(key_id, key, row.fingerprint, row.hint, row.description, row.expires_at)

    def reissue_refusal_in(
        self, conn: Connection, key_id: str, stream_id: str, at: datetime, *, account_id: str | None
    ) -> KeytrailError | None:
        """Why a retry on ``stream_id`` may not be shown key ``key_id`` again at ``at``, or None.

        A retry gets no more than copy_key would give now: the onboarding still signed in to the
        key's account (``account_id``, its current one: it may have signed in to another since,
        while the first session lasts), a live session of that account on that onboarding, and a
        key neither revoked nor expired. The error's message is the reason alone, for the engine
        to put in its sentence.
        """
        row = self._key_row(conn, key_id)
        if row is None:
            return UnknownKey(f"there is no key {key_id}")
        if row.account_id != account_id:
            return UnknownKey(f"{stream_id} is now signed in to another account than the one of key {key_id}")
        problem = self.session_problem_in(conn, row.account_id, stream_id, at)
        if problem is not None:
            return AuthenticationFailed(problem)
        if row.revoked_at is not None:
            return KeyUnusable(f"key {key_id} was revoked at {iso_utc(row.revoked_at)}")
        if at >= row.expires_at:
            return KeyUnusable(f"key {key_id} expired at {iso_utc(row.expires_at)}")
        return None

    def reissue_in(self, conn: Connection, key_id: str) -> IssuedKey:
        """The key an earlier response carried, unchecked: a retry asks :meth:`reissue_refusal_in` first."""
        row = self._key_row(conn, key_id)
        if row is None:
            raise UnknownKey(f"There is no key {key_id}.")
        key = self._box.open(row.ciphertext, what=f"Key {key_id}")
        return IssuedKey(key_id, key, row.fingerprint, row.hint, row.description, row.expires_at)

    def list_keys(self, email: str) -> list[ApiKey]:
        """The keys of one account, as the API Portal lists them (never the keys themselves)."""
        email = inputs.check_email(email)
        query = (
            sa.select(
                api_keys.c.key_id,
                api_keys.c.account_id,
                api_keys.c.description,
                api_keys.c.fingerprint,
                api_keys.c.hint,
                api_keys.c.created_at,
                api_keys.c.expires_at,
                api_keys.c.revoked_at,
            )
            .join(accounts, accounts.c.account_id == api_keys.c.account_id)
            .where(accounts.c.email == email)
            .order_by(api_keys.c.created_at, api_keys.c.key_id)
        )
        with self._db.read() as conn:
            return [ApiKey(*row) for row in conn.execute(query)]

    def key_info(self, key_id: str) -> ApiKey:
        key_id = inputs.check_key_id(key_id)
        with self._db.read() as conn:
            row = self._key_row(conn, key_id)
        if row is None:
            raise UnknownKey(f"There is no key {key_id}.")
        return ApiKey(
            row.key_id,
            row.account_id,
            row.description,
            row.fingerprint,
            row.hint,
            row.created_at,
            row.expires_at,
            row.revoked_at,
        )

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke a key: from now on it verifies as ``invalid``. Revoking twice keeps the first time."""
        key_id = inputs.check_key_id(key_id)
        with self._db.write() as conn:
            row = self._key_row(conn, key_id)
            if row is None:
                raise UnknownKey(f"There is no key {key_id} to revoke.")
            if row.revoked_at is None:
                conn.execute(sa.update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=self._clock()))
        _log.info("key_revoked", key_id=key_id)
        return self.key_info(key_id)

    def reseal_keys_in(self, conn: Connection, box: SecretBox | None = None) -> int:
        """Re-encrypt every stored key under the current key of ``box`` (default: the authority's own)."""
        box = box or self._box
        count = 0
        for key_id, ciphertext in conn.execute(sa.select(api_keys.c.key_id, api_keys.c.ciphertext)).all():
            conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.key_id == key_id)
                .values(ciphertext=box.rotate(ciphertext, what=f"Key {key_id}"))
            )
            count += 1
        return count

    def use_box(self, box: SecretBox) -> None:
        """Seal and open with ``box`` from now on (after the engine rotated the encryption key)."""
        self._box = box

    # -- verification (the port) ------------------------------------------------------------

    def verify(self, saved: SavedKey | None, at: datetime) -> Verdict:
        with self._db.read() as conn:
            return self.verify_in(conn, saved, at)

    def verify_in(self, conn: Connection, saved: SavedKey | None, at: datetime) -> Verdict:
        """Valid only when the key exists, is not revoked, and ``at`` is before its expiry."""
        if saved is None:
            return Verdict.missing()
        row = conn.execute(
            sa.select(api_keys.c.key_id, api_keys.c.expires_at, api_keys.c.revoked_at).where(
                api_keys.c.fingerprint == saved.fingerprint
            )
        ).first()
        if row is None:
            return Verdict.of_issued_key(None, None, False, at)
        return Verdict.of_issued_key(row.key_id, row.expires_at, row.revoked_at is not None, at)
