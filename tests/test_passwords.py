"""Password hashes: Argon2id at OWASP's parameters in PHC strings; older scrypt hashes verify and are upgraded."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from keytrail import Engine
from keytrail.errors import AuthenticationFailed
from keytrail.portal import passwords
from keytrail.portal.passwords import hash_password, needs_rehash, verify_password

PASSWORD = "correct horse battery staple"
EMAIL = "owner@merchant.test"


def scrypt_hash(password: str) -> str:
    """A hash exactly as keytrail wrote them before Argon2id (``scrypt$N$r$p$salt$hash``, N=2^14)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def test_a_new_hash_is_argon2id_at_owasp_parameters_in_a_phc_string() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    _, _, _, _, salt, digest = stored.split("$")
    assert len(base64.b64decode(salt + "==")) == 16 and len(base64.b64decode(digest + "=")) == 32
    assert hash_password(PASSWORD) != stored  # a fresh salt each time
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "!", stored)
    assert not needs_rehash(stored)


def test_a_phc_string_from_another_argon2_implementation_verifies() -> None:
    """The format is the standard one: a hash encoded by cryptography's own PHC encoder checks out."""
    salt = secrets.token_bytes(16)
    encoded = Argon2id(salt=salt, length=32, iterations=2, lanes=1, memory_cost=19456).derive_phc_encoded(
        PASSWORD.encode()
    )
    assert verify_password(PASSWORD, encoded)
    assert not verify_password("wrong password", encoded)


def test_an_old_scrypt_hash_still_verifies_and_asks_for_a_rehash() -> None:
    old = scrypt_hash(PASSWORD)
    assert verify_password(PASSWORD, old)
    assert not verify_password("wrong password", old)
    assert needs_rehash(old)


def test_weaker_argon2id_parameters_ask_for_a_rehash() -> None:
    salt = secrets.token_bytes(16)
    weak = Argon2id(salt=salt, length=32, iterations=1, lanes=1, memory_cost=8).derive_phc_encoded(PASSWORD.encode())
    assert verify_password(PASSWORD, weak)
    assert needs_rehash(weak)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plaintext",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$",
        "$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA",
        "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA",
        "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=19$m=19456,t=999,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=19$t=2,m=19456,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "$argon2id$v=19$m=19456,t=2,p=1$!!!$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        "scrypt$16384$8$1$notbase64!$AAAA",
        "scrypt$1048576$64$64$c2FsdA==$AAAA",
    ],
)
def test_a_malformed_or_unbounded_stored_hash_verifies_nothing(stored: str) -> None:
    """A damaged row, an unknown scheme or costs far past keytrail's own refuse, instead of raising or running for ever."""
    assert not verify_password(PASSWORD, stored)


def test_every_check_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The derived and stored digests meet only in hmac.compare_digest, for both schemes, right or wrong password."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    results = [
        verify_password(candidate, stored)
        for stored in (hash_password(PASSWORD), scrypt_hash(PASSWORD))
        for candidate in (PASSWORD, "wrong password")
    ]
    assert results == [True, False, True, False]
    assert len(compared) == 4
    assert all(isinstance(a, bytes) and len(a) == len(b) == 32 for a, b in compared)


def test_importing_the_module_hashes_nothing() -> None:
    """The hash an unknown email is checked against is made on first use, not when keytrail is imported."""
    code = (
        "import hashlib; from cryptography.hazmat.primitives.kdf import argon2\n"
        "def refuse(*a, **k): raise SystemExit('hashed at import')\n"
        "hashlib.scrypt = refuse; argon2.Argon2id = refuse\n"
        "import keytrail.portal.passwords, keytrail.portal.authority; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_the_hash_for_unknown_emails_costs_what_a_real_one_does() -> None:
    """An unknown email is checked against an Argon2id hash at the same parameters, so timing tells nothing."""
    assert passwords.dummy_hash().split("$")[:4] == hash_password(PASSWORD).split("$")[:4]


def _stored_hash(engine: Engine, email: str) -> str:
    with engine.database.write() as conn:
        stored: str = conn.execute(
            sa.text("SELECT password_hash FROM accounts WHERE email = :e"), {"e": email}
        ).scalar_one()
    return stored


def _set_stored_hash(engine: Engine, email: str, stored: str) -> None:
    with engine.database.write() as conn:
        conn.execute(sa.text("UPDATE accounts SET password_hash = :h WHERE email = :e"), {"h": stored, "e": email})


def test_a_scrypt_hash_is_upgraded_at_the_next_successful_sign_in(engine: Engine) -> None:
    """An account whose row holds today's scrypt hash signs in, and its row then holds an Argon2id hash."""
    engine.portal.create_account(EMAIL, PASSWORD, company="Merchant")
    old = scrypt_hash(PASSWORD)
    _set_stored_hash(engine, EMAIL, old)
    engine.access("acme")

    with pytest.raises(AuthenticationFailed):
        engine.sign_in("acme", email=EMAIL, password="wrong password")
    assert _stored_hash(engine, EMAIL) == old  # a failed sign-in changes nothing

    engine.sign_in("acme", email=EMAIL, password=PASSWORD)
    upgraded = _stored_hash(engine, EMAIL)
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(PASSWORD, upgraded)

    engine.access("beta")
    with pytest.raises(AuthenticationFailed):
        engine.sign_in("beta", email=EMAIL, password="scrypt$16384$8$1$")
    engine.sign_in("beta", email=EMAIL, password=PASSWORD)
    assert _stored_hash(engine, EMAIL) == upgraded  # already current: not rewritten at every sign-in
