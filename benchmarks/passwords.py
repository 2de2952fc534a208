"""What one password check costs: today's Argon2id against the scrypt hashes keytrail wrote before.

``python benchmarks/passwords.py [--rounds N]``. Each round times one ``verify_password`` of
each kind, interleaved so load on the machine hits both alike; figures are medians, and the
ratio is the median of same-round ratios. Every sign-in with a password, and every sign-in
as an unknown email (checked against a dummy hash of the same cost), pays one check; an
older scrypt hash pays one more Argon2id hash once, at its first successful sign-in.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keytrail.portal.passwords import ARGON2_PARAMETERS, hash_password, verify_password

PASSWORD = "correct horse battery staple"  # noqa: S105 - a benchmark input, not a secret


def _scrypt_hash(password: str) -> str:
    """A hash as keytrail wrote them before Argon2id (N=2^14, r=8, p=1)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def measure(rounds: int = 15) -> dict[str, Any]:
    """Median milliseconds of one check per scheme, and Argon2id's cost as a multiple of scrypt's."""
    stored = {
        f"argon2id ({ARGON2_PARAMETERS})": hash_password(PASSWORD),
        "scrypt (N=2^14, r=8, p=1)": _scrypt_hash(PASSWORD),
    }
    times: dict[str, list[float]] = {name: [] for name in stored}
    for value in stored.values():  # warm up: first calls pay imports and allocations
        assert verify_password(PASSWORD, value)
    for _ in range(rounds):
        for name, value in stored.items():
            start = time.perf_counter()
            verify_password(PASSWORD, value)
            times[name].append(time.perf_counter() - start)
    argon, scrypt = times
    ratios = [a / s for a, s in zip(times[argon], times[scrypt], strict=True)]
    return {
        "ms": {name: statistics.median(spent) * 1000 for name, spent in times.items()},
        "argon2id_over_scrypt": statistics.median(ratios),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15)
    result = measure(parser.parse_args().rounds)
    print(f"one password check, median of {result['rounds']} interleaved rounds:")
    for name, ms in result["ms"].items():
        print(f"  {name}: {ms:.1f} ms")
    print(f"  argon2id / scrypt: {result['argon2id_over_scrypt']:.2f}x")


if __name__ == "__main__":
    main()
