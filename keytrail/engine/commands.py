"""The seven commands of the onboarding, each one step over the records its one read brought."""

from __future__ import annotations

from datetime import datetime

from keytrail import inputs
from keytrail.crypto import fingerprint, hint
from keytrail.engine.results import KeyOutcome, Outcome
from keytrail.engine.runner import Runner, Step
from keytrail.errors import InvalidInput
from keytrail.events import iso_utc
from keytrail.persistence.commands import Loaded
from keytrail.persistence.units import CommandUnit
from keytrail.portal.passwords import hash_password
from keytrail.states import State, Trigger

__all__ = ["Commands"]


class Commands(Runner):
    """What an admin does in the flow: Amazon Sales Channel visits, the Commerce account, the API Portal, the config."""

    def access(
        self,
        stream: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Open the Amazon Sales Channel: verify the saved key, then Validated (or stay integrated) or Prompted."""
        return self._run(Trigger.access, stream, actor, idempotency_key, expected_version, self._verify_step)

    def proceed(
        self,
        stream: str,
        *,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Go on to Store Integration, re-verifying the key at this instant."""
        return self._run(Trigger.proceed, stream, actor, idempotency_key, expected_version, self._verify_step)

    def sign_in(
        self,
        stream: str,
        *,
        email: str,
        password: str | None = None,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Sign in to the Commerce account; without a password, a live session is reused ("already signed in")."""
        stream = inputs.check_stream_id(stream)
        prior = self._before_slow_work(Trigger.sign_in, stream, idempotency_key, expected_version)
        if prior is not None:
            return prior
        account = self.portal.authenticate(email, password, stream_id=stream, actor=inputs.check_actor(actor))
        via = "session" if password is None else "password"

        def step(unit: CommandUnit, loaded: Loaded, now: datetime) -> Step:
            self.portal.signed_in_in(unit.authority, account, via=via, stream_id=stream, actor=actor, at=now)
            return Step({"account_id": account.account_id, "email": account.email, "via": via})

        return self._run(Trigger.sign_in, stream, actor, idempotency_key, expected_version, step)

    def register(
        self,
        stream: str,
        *,
        email: str,
        password: str,
        company: str,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Register the company's account, then sign in with it."""
        stream = inputs.check_stream_id(stream)
        email, company = inputs.check_email(email), inputs.check_company(company)
        password = inputs.check_password(password)
        prior = self._before_slow_work(Trigger.register, stream, idempotency_key, expected_version)
        if prior is not None:
            return prior
        password_hash = hash_password(password)

        def step(unit: CommandUnit, loaded: Loaded, now: datetime) -> Step:
            account = self.portal.create_account_in(
                unit.authority, email, password_hash, company, now, actor=actor, stream_id=stream
            )
            self.portal.signed_in_in(unit.authority, account, via="register", stream_id=stream, actor=actor, at=now)
            return Step({"account_id": account.account_id, "email": email, "company": company})

        return self._run(Trigger.register, stream, actor, idempotency_key, expected_version, step)

    def generate_key(
        self,
        stream: str,
        *,
        description: str,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> KeyOutcome:
        """Create a new API key in the portal; the outcome carries the key (the only place it is shown)."""
        description = inputs.check_description(description)

        def step(unit: CommandUnit, loaded: Loaded, now: datetime) -> Step:
            # SignedIn and every later state of a signed-in flow carry the account.
            head = loaded.head
            assert head is not None
            assert head.account_id is not None
            self.portal.require_session_in(unit.authority, head.account_id, head.stream_id, now)
            issued = self.portal.generate_key_in(
                unit.authority, head.account_id, description, now, actor=actor, stream_id=head.stream_id
            )
            return Step(
                {
                    "key_id": issued.key_id,
                    "description": description,
                    "fingerprint": issued.fingerprint,
                    "hint": issued.hint,
                    "expires_at": iso_utc(issued.expires_at),
                },
                issued=issued,
            )

        outcome = self._run(Trigger.generate_key, stream, actor, idempotency_key, expected_version, step)
        assert isinstance(outcome, KeyOutcome)
        return outcome

    def copy_key(
        self,
        stream: str,
        *,
        key_id: str | None = None,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> KeyOutcome:
        """The portal's "Copy": the key just generated, or an existing key of the account by ``key_id``."""
        if key_id is not None:
            key_id = inputs.check_key_id(key_id)

        def step(unit: CommandUnit, loaded: Loaded, now: datetime) -> Step:
            head = loaded.head
            assert head is not None
            assert head.account_id is not None
            self.portal.require_session_in(unit.authority, head.account_id, head.stream_id, now)
            chosen = key_id
            if chosen is None:
                if head.state != State.KeyGenerated.value or head.key_id is None:
                    raise InvalidInput(
                        f"{head.stream_id} is {head.state} with no key just generated; "
                        "pass key_id to copy an existing key of the account."
                    )
                chosen = head.key_id
            issued = self.portal.copy_key_in(unit.authority, head.account_id, chosen, now)
            return Step(
                {"key_id": issued.key_id, "fingerprint": issued.fingerprint, "hint": issued.hint}, issued=issued
            )

        outcome = self._run(Trigger.copy_key, stream, actor, idempotency_key, expected_version, step)
        assert isinstance(outcome, KeyOutcome)
        return outcome

    def save_config(
        self,
        stream: str,
        *,
        key: str,
        actor: str | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> Outcome:
        """Paste the key into "Production Api key" and Save Config; asterisks only keep the saved key."""
        if not isinstance(key, str):
            raise InvalidInput(f"An API key must be a string, not a {type(key).__name__}.")
        keep = inputs.is_masked(key.strip())
        plaintext = None if keep else inputs.check_key(key)

        def step(unit: CommandUnit, loaded: Loaded, now: datetime) -> Step:
            config = loaded.config
            if plaintext is None:
                if config is None:
                    raise InvalidInput(f"{stream} has no saved key for the asterisks to keep; paste the key itself.")
                return Step({"fingerprint": config.fingerprint, "hint": config.hint, "kept": True})
            digest, tail = fingerprint(plaintext), hint(plaintext)
            unit.save_config(stream, self._box.seal(plaintext), digest, tail, now)
            return Step({"fingerprint": digest, "hint": tail, "kept": False})

        return self._run(Trigger.save_config, stream, actor, idempotency_key, expected_version, step)
