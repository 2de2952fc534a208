"""Salted, deliberately slow password hashes: Argon2id at OWASP's parameters, in PHC strings.

New hashes are Argon2id (``cryptography``'s, RFC 9106) at m=19 MiB, t=2, p=1, one of the
two settings OWASP's Password Storage Cheat Sheet gives as equal (the other is m=46 MiB,
t=1): the smaller memory bounds what concurrent sign-ins on a server cost, and the second
pass costs an attacker trading memory for time more. They are stored as the standard PHC
string ``$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`` (unpadded base64), which other
Argon2 libraries read too, so the parameters travel with each hash and can be raised later.

Hashes keytrail wrote before, ``scrypt$N$r$p$salt$hash``, keep verifying; :func:`needs_rehash`
tells the key authority to replace one (and any Argon2id hash below today's parameters) at
the next successful sign-in, when the password is at hand.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from functools import cache

__all__ = ["ARGON2_PARAMETERS", "dummy_hash", "hash_password", "needs_rehash", "verify_password"]

# OWASP Password Storage Cheat Sheet, Argon2id: m=19456 KiB (19 MiB), t=2, p=1.
_MEMORY_KIB, _ITERATIONS, _LANES = 19456, 2, 1
_SALT_BYTES, _HASH_BYTES = 16, 32
_VERSION = 19  # Argon2 version 1.3 (0x13), the only one cryptography computes
ARGON2_PARAMETERS = f"m={_MEMORY_KIB},t={_ITERATIONS},p={_LANES}"

# Costs past these are no hash keytrail wrote: a damaged or planted row verifies nothing
# rather than holding a sign-in for minutes or gigabytes.
_MAX_MEMORY_KIB, _MAX_ITERATIONS, _MAX_LANES = 1 << 20, 16, 16
_MAX_SCRYPT_MEMORY, _MAX_SCRYPT_P = 64 << 20, 16  # keytrail wrote N=2^14, r=8, p=1: 16 MiB


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _argon2id(password: str, salt: bytes, *, memory_kib: int, iterations: int, lanes: int, length: int) -> bytes:
    # Imported here: cryptography's KDF module is not needed until a password is hashed or checked.
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    kdf = Argon2id(salt=salt, length=length, iterations=iterations, lanes=lanes, memory_cost=memory_kib)
    return kdf.derive(password.encode("utf-8"))


def hash_password(password: str) -> str:
    """A fresh salt and Argon2id at OWASP's parameters, as a PHC string."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _argon2id(password, salt, memory_kib=_MEMORY_KIB, iterations=_ITERATIONS, lanes=_LANES, length=_HASH_BYTES)
    return f"$argon2id$v={_VERSION}${ARGON2_PARAMETERS}${_b64(salt)}${_b64(digest)}"


def _check_argon2id(password: str, stored: str) -> bool:
    empty, scheme, version, costs, salt_text, digest_text = stored.split("$")
    if empty or scheme != "argon2id" or version != f"v={_VERSION}":
        return False
    names, values = zip(*(cost.split("=", 1) for cost in costs.split(",")), strict=True)
    if names != ("m", "t", "p"):
        return False
    memory_kib, iterations, lanes = (int(v) for v in values)
    if not (8 * lanes <= memory_kib <= _MAX_MEMORY_KIB and 1 <= iterations <= _MAX_ITERATIONS and lanes <= _MAX_LANES):
        return False
    salt, expected = _unb64(salt_text), _unb64(digest_text)
    if len(salt) < 8 or not 4 <= len(expected) <= 64:
        return False
    actual = _argon2id(password, salt, memory_kib=memory_kib, iterations=iterations, lanes=lanes, length=len(expected))
    return hmac.compare_digest(actual, expected)


def _check_scrypt(password: str, stored: str) -> bool:
    """keytrail's hashes before Argon2id: ``scrypt$N$r$p$salt$hash`` (padded base64)."""
    scheme, n, r, p, salt_text, digest_text = stored.split("$")
    if scheme != "scrypt":
        return False
    cost, block, parallel = int(n), int(r), int(p)
    if not 1 <= parallel <= _MAX_SCRYPT_P:
        return False
    expected = base64.b64decode(digest_text, validate=True)
    if not expected:
        return False
    actual = hashlib.scrypt(
        password.encode("utf-8"),
        salt=base64.b64decode(salt_text, validate=True),
        n=cost,
        r=block,
        p=parallel,
        maxmem=_MAX_SCRYPT_MEMORY,  # past it, hashlib raises ValueError: no match
        dklen=len(expected),
    )
    return hmac.compare_digest(actual, expected)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (Argon2id, or keytrail's older scrypt).

    The digests meet only in :func:`hmac.compare_digest`. A stored value that is no hash
    keytrail could have written (damaged, another scheme, absurd costs) matches nothing.
    """
    try:
        if stored.startswith("$argon2id$"):
            return _check_argon2id(password, stored)
        if stored.startswith("scrypt$"):
            return _check_scrypt(password, stored)
    except (ValueError, TypeError, binascii.Error):
        return False
    return False


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` is anything but Argon2id at today's parameters: replace it once the password checks out."""
    return not stored.startswith(f"$argon2id$v={_VERSION}${ARGON2_PARAMETERS}$")


@cache
def dummy_hash() -> str:
    """A hash to check against when the account does not exist, so timing does not tell; made on first use."""
    return hash_password(secrets.token_urlsafe(16))
