"""The embedded key authority: company accounts, sign-in with lockout, and API keys with expiry.

It plays the Commerce account site and its API Portal. It owns the rules (lockout, session
liveness, key expiry and revocation) and decides over records; storage (an
:class:`~keytrail.portal.ports.AuthorityStorage`) reads and writes them. Methods ending in
``_in`` work on the records of a transaction the engine holds, so a command and its side
effects commit together.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

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
from keytrail.logs import get_logger
from keytrail.portal.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from keytrail.portal.ports import AuthorityRecords, AuthorityStorage, SavedKey, Verdict
from keytrail.portal.records import Account, AccountRecord, ApiKey, AuthorityEvent, IssuedKey, KeyRecord, SignInAttempt
from keytrail.portal.rules import key_unusable, session_problem

__all__ = ["Account", "ApiKey", "IssuedKey", "KeyAuthority", "SignInAttempt", "session_problem"]


_log = get_logger("keytrail.portal")


class KeyAuthority:
    """Accounts, sessions and API keys, stored in keytrail's database, keys sealed at rest."""

    def __init__(
        self,
        storage: AuthorityStorage,
        box: SecretBox,
        clock: Callable[[], datetime],
        *,
        key_lifetime: timedelta,
        session_lifetime: timedelta,
        max_failed_sign_ins: int,
        lockout: timedelta,
    ) -> None:
        self._storage = storage
        self._box = box
        self._clock = clock
        self.key_lifetime = key_lifetime
        self.session_lifetime = session_lifetime
        self.max_failed_sign_ins = max_failed_sign_ins
        self.lockout = lockout

    def __repr__(self) -> str:
        return f"KeyAuthority({self._storage.shown!r})"

    # -- accounts -------------------------------------------------------------------------

    def create_account(self, email: str, password: str, company: str, *, actor: str | None = None) -> Account:
        """Create a company account (the Commerce account site's registration)."""
        email = inputs.check_email(email)
        company = inputs.check_company(company)
        actor = inputs.check_actor(actor)
        password_hash = hash_password(inputs.check_password(password))
        with self._storage.write() as records:
            return self.create_account_in(records, email, password_hash, company, self._clock(), actor=actor)

    def create_account_in(
        self,
        records: AuthorityRecords,
        email: str,
        password_hash: str,
        company: str,
        at: datetime,
        *,
        actor: str | None = None,
        stream_id: str | None = None,
    ) -> Account:
        taken = f"An account with the email {email} already exists; sign in instead."
        if records.account_by_email(email) is not None:
            raise DuplicateAccount(taken)
        account = Account("acct_" + uuid.uuid4().hex[:16], email, company, at)
        if not records.add_account(AccountRecord(account, password_hash, None, 0)):
            raise DuplicateAccount(taken)
        records.record(AuthorityEvent.account_created(account, actor, stream_id))
        _log.info("account_created", account_id=account.account_id, email=email)
        return account

    def account(self, account_id: str) -> Account | None:
        """The account ``account_id``, or None."""
        with self._storage.read() as records:
            return records.account(account_id)

    def find_account(self, email: str) -> Account | None:
        email = inputs.check_email(email)
        with self._storage.read() as records:
            found = records.account_by_email(email)
        return None if found is None else found.account

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
        with self._storage.read() as records:
            view = records.sign_in_view(email, stream_id)
        now = self._clock()
        found, session_ends = (None, None) if view is None else view
        if password is None and (found is None or session_ends is None or now >= session_ends):
            self._record_failure(
                email, None if found is None else found.account.account_id, stream_id, actor, now, "no_session"
            )
            raise AuthenticationFailed(
                f"There is no live session for {email} on {stream_id}; sign in with the password."
            )
        if found is None:
            if password is not None:
                verify_password(password, dummy_hash())
            self._record_failure(email, None, stream_id, actor, now, "unknown_account")
            raise AuthenticationFailed(f"Sign-in as {email} failed: wrong email or password.")
        account, locked_until = found.account, found.locked_until
        if locked_until is not None and now < locked_until:
            self._record_failure(email, account.account_id, stream_id, actor, now, "locked")
            raise AccountLocked(
                f"The account {email} is locked until {iso_utc(locked_until)} after "
                f"{self.max_failed_sign_ins} failed sign-ins in a row.",
                locked_until=iso_utc(locked_until),
                retry_after=math.ceil((locked_until - now).total_seconds()),
            )
        if password is None:
            return account  # the session of this onboarding, checked above
        if not verify_password(password, found.password_hash):
            locked = self._record_failure(email, account.account_id, stream_id, actor, now, "wrong_password")
            if locked is not None:
                raise AccountLocked(
                    f"Sign-in as {email} failed: wrong email or password. After {self.max_failed_sign_ins} failures "
                    f"in a row the account is locked until {iso_utc(locked)}.",
                    locked_until=iso_utc(locked),
                    retry_after=math.ceil((locked - now).total_seconds()),
                )
            raise AuthenticationFailed(f"Sign-in as {email} failed: wrong email or password.")
        if needs_rehash(found.password_hash):
            # An older hash (scrypt, or weaker parameters) becomes today's now that the password is at hand;
            # hashed outside the transaction, written only if no one replaced it meanwhile.
            upgraded = hash_password(password)
            with self._storage.write() as records:
                records.set_password_hash(account.account_id, upgraded, replacing=found.password_hash)
            _log.info("password_rehashed", account_id=account.account_id)
        return account

    def _record_failure(
        self, email: str, account_id: str | None, stream_id: str | None, actor: str | None, at: datetime, outcome: str
    ) -> datetime | None:
        """Record a failed attempt in its own transaction; lock the account at the threshold."""
        locked_until = None
        with self._storage.write() as records:
            records.add_attempt(SignInAttempt(email, account_id, stream_id, outcome, actor, at))
            # An unknown email has no account stream: the attempt table keeps it, the log does not.
            if account_id is not None:
                failed = AuthorityEvent.account_moved(
                    "sign_in_failed", account_id, actor, at, outcome=outcome, onboarding=stream_id
                )
                records.record(failed)
            counted = account_id if outcome == "wrong_password" else None
            if counted is not None and records.count_failure(counted) >= self.max_failed_sign_ins:
                locked_until = at + self.lockout
                records.lock_account(counted, locked_until)
                locked = AuthorityEvent.account_moved(
                    "account_locked",
                    counted,
                    actor,
                    at,
                    locked_until=locked_until,
                    failed_sign_ins=self.max_failed_sign_ins,
                    onboarding=stream_id,
                )
                records.record(locked)
        _log.warning("sign_in_failed", email=email, stream=stream_id, outcome=outcome, locked=locked_until is not None)
        return locked_until

    def signed_in_in(
        self,
        records: AuthorityRecords,
        account: Account,
        *,
        via: str,
        stream_id: str,
        actor: str | None,
        at: datetime,
    ) -> None:
        """Record a sign-in in the command's transaction; a password (or registration) also opens the session.

        Only a password success resets the failure count and opens (or renews) the session of
        this onboarding: a sign-in through the session proves nothing new, so it neither resets
        the count (else a session sign-in every few guesses would dodge the lockout) nor moves
        the session's end (one password lasts ``session_lifetime``, however often it is reused).
        """
        if via == "session":
            self.require_session_in(records, account.account_id, stream_id, at)
        else:
            stored = records.account_by_email(account.email)
            if stored is not None and stored.locked_until is not None:
                # A lapsed lockout ends with this password sign-in: the log says so.
                lifted = AuthorityEvent.account_moved(
                    "account_unlocked",
                    account.account_id,
                    actor,
                    at,
                    locked_until=stored.locked_until,
                    onboarding=stream_id,
                )
                records.record(lifted)
            records.clear_failures(account.account_id)
            records.open_session(account.account_id, stream_id, at, at + self.session_lifetime)
        records.add_attempt(SignInAttempt(account.email, account.account_id, stream_id, f"ok_{via}", actor, at))

    def session_problem_in(
        self, records: AuthorityRecords, account_id: str, stream_id: str, at: datetime
    ) -> str | None:
        """Why ``stream_id`` holds no live session of the account at ``at`` (a sentence's middle), or None."""
        return session_problem(records.session_expiry(account_id, stream_id), stream_id, at)

    def require_session_in(self, records: AuthorityRecords, account_id: str, stream_id: str, at: datetime) -> None:
        """Refuse, writing nothing, unless ``stream_id`` holds a live session of the account at ``at``."""
        problem = self.session_problem_in(records, account_id, stream_id, at)
        if problem is not None:
            raise AuthenticationFailed(f"{problem[0].upper()}{problem[1:]}; sign in again.")

    def sign_out(self, email: str) -> None:
        """End the account's sessions on every onboarding, so the next sign-in needs the password."""
        email = inputs.check_email(email)
        with self._storage.write() as records:
            records.end_sessions(email)

    def sign_in_attempts(self, email: str | None = None) -> list[SignInAttempt]:
        """Sign-in attempts, oldest first: who, when, which onboarding, what happened."""
        if email is not None:
            email = inputs.check_email(email)
        with self._storage.read() as records:
            return records.attempts(email)

    # -- API keys -------------------------------------------------------------------------

    def generate_key_in(
        self,
        records: AuthorityRecords,
        account_id: str,
        description: str,
        at: datetime,
        *,
        actor: str | None = None,
        stream_id: str | None = None,
    ) -> IssuedKey:
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
        info = ApiKey(
            issued.key_id, account_id, description, issued.fingerprint, issued.hint, at, issued.expires_at, None
        )
        records.add_key(KeyRecord(info, self._box.seal(key)))
        records.record(AuthorityEvent.key_generated(info, actor, stream_id))
        return issued

    def generate_key(self, account_id: str, description: str, *, actor: str | None = None) -> IssuedKey:
        """A key issued outside any onboarding (as an operator would in the portal), in a transaction of its own."""
        actor = inputs.check_actor(actor)
        with self._storage.write() as records:
            return self.generate_key_in(records, account_id, description, self._clock(), actor=actor)

    def _issued(self, record: KeyRecord) -> IssuedKey:
        info = record.info
        key = self._box.open(record.ciphertext, what=f"Key {info.key_id}")
        return IssuedKey(info.key_id, key, info.fingerprint, info.hint, info.description, info.expires_at)

    def copy_key_in(self, records: AuthorityRecords, account_id: str, key_id: str, at: datetime) -> IssuedKey:
        """The API Portal's "Copy": the owner gets a usable key of theirs back."""
        record = records.key(key_id)
        if record is None or record.info.account_id != account_id:
            raise UnknownKey(f"The signed-in account has no key {key_id}.")
        problem = key_unusable(record.info, at)
        if problem is not None:
            raise KeyUnusable(f"{problem[0].upper()}{problem[1:]}; generate a new key instead.")
        return self._issued(record)

    def reissue_refusal_in(
        self, records: AuthorityRecords, key_id: str, stream_id: str, at: datetime, *, account_id: str | None
    ) -> KeytrailError | None:
        """Why a retry on ``stream_id`` may not be shown key ``key_id`` again at ``at``, or None.

        A retry gets no more than copy_key would give now: the onboarding still signed in to the
        key's account (``account_id``, its current one: it may have signed in to another since,
        while the first session lasts), a live session of that account on that onboarding, and a
        key neither revoked nor expired. The error's message is the reason alone, for the engine
        to put in its sentence.
        """
        record = records.key(key_id)
        if record is None:
            return UnknownKey(f"there is no key {key_id}")
        if record.info.account_id != account_id:
            return UnknownKey(f"{stream_id} is now signed in to another account than the one of key {key_id}")
        problem = self.session_problem_in(records, record.info.account_id, stream_id, at)
        if problem is not None:
            return AuthenticationFailed(problem)
        unusable = key_unusable(record.info, at)
        return None if unusable is None else KeyUnusable(unusable)

    def reissue_in(self, records: AuthorityRecords, key_id: str) -> IssuedKey:
        """The key an earlier response carried, unchecked: a retry asks :meth:`reissue_refusal_in` first."""
        record = records.key(key_id)
        if record is None:
            raise UnknownKey(f"There is no key {key_id}.")
        return self._issued(record)

    def reissue(self, key_id: str) -> IssuedKey:
        """:meth:`reissue_in` in a read transaction of its own (the pytest toolkit's key in hand)."""
        with self._storage.read() as records:
            return self.reissue_in(records, key_id)

    def list_keys(self, email: str) -> list[ApiKey]:
        """The keys of one account, as the API Portal lists them (never the keys themselves)."""
        email = inputs.check_email(email)
        with self._storage.read() as records:
            return records.keys_of(email)

    def key_info(self, key_id: str) -> ApiKey:
        key_id = inputs.check_key_id(key_id)
        with self._storage.read() as records:
            record = records.key(key_id)
        if record is None:
            raise UnknownKey(f"There is no key {key_id}.")
        return record.info

    def revoke_key(self, key_id: str, *, actor: str | None = None) -> ApiKey:
        """Revoke a key: from now on it verifies as ``invalid``. Revoking twice keeps the first time (and its event)."""
        key_id = inputs.check_key_id(key_id)
        actor = inputs.check_actor(actor)
        with self._storage.write() as records:
            record = records.key(key_id)
            if record is None:
                raise UnknownKey(f"There is no key {key_id} to revoke.")
            if record.info.revoked_at is None:
                at = self._clock()
                records.revoke_key(key_id, at)
                records.record(AuthorityEvent.key_revoked(record.info, actor, at))
        _log.info("key_revoked", key_id=key_id, actor=actor)
        return self.key_info(key_id)

    def reseal_keys_in(self, records: AuthorityRecords, box: SecretBox | None = None) -> int:
        """Re-encrypt every stored key under the current key of ``box`` (default: the authority's own)."""
        box = box or self._box
        count = 0
        for key_id, ciphertext in records.sealed_keys():  # read in full first: each row is updated as we go
            records.reseal_key(key_id, box.rotate(ciphertext, what=f"Key {key_id}"))
            count += 1
        return count

    def use_box(self, box: SecretBox) -> None:
        """Seal and open with ``box`` from now on (after the engine rotated the encryption key)."""
        self._box = box

    # -- verification (the port) ------------------------------------------------------------

    def verify(self, saved: SavedKey | None, at: datetime) -> Verdict:
        with self._storage.read() as records:
            return self.verify_in(records, saved, at)

    def verify_in(self, records: AuthorityRecords, saved: SavedKey | None, at: datetime) -> Verdict:
        """Valid only when the key exists, is not revoked, and ``at`` is before its expiry."""
        if saved is None:
            return Verdict.missing()
        key = records.key_by_fingerprint(saved.fingerprint)
        if key is None:
            return Verdict.of_issued_key(None, None, False, at)
        return Verdict.of_issued_key(key.key_id, key.expires_at, key.revoked_at is not None, at)
