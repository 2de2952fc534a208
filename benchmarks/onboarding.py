"""Workload 2: full onboarding of N stores through the seven steps of the source document.

access (Prompted, missing) -> sign_in -> generate_key -> copy_key -> save_config -> access
(Validated) -> proceed (StoreIntegration): seven commands, seven durable events per store.
Two ways to sign in, in interleaved rounds: with the password every time (a deliberately slow
password check per store), or reusing the live session the onboarding opened earlier with the
password (no password, no hash), as the source document's "already signed in" does. Their
difference is the password hashing.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

from common import Clock, Contest, report_in_scratch

from keytrail import Engine, State
from keytrail.portal.passwords import hash_password, verify_password

EMAIL, PASSWORD = "ops@onboard.test", "correct horse battery"


def run(stores: int, rounds: int, workdir: Path) -> dict[str, Any]:
    engine = Engine.open(f"sqlite:///{workdir / 'onboarding.db'}", clock=Clock())
    engine.portal.create_account(EMAIL, PASSWORD, company="Acme")
    counter = itertools.count()

    def fresh_streams() -> list[str]:
        return [f"store-{next(counter):07d}" for _ in range(stores)]

    def signed_in_before() -> list[str]:
        """Onboardings that signed in with the password once and were prompted again: each holds its own session."""
        streams = fresh_streams()
        for stream in streams:
            engine.access(stream)
            engine.sign_in(stream, email=EMAIL, password=PASSWORD)
            engine.access(stream)
        return streams

    def onboard(password: str | None, streams: list[str]) -> int:
        for stream in streams:
            engine.access(stream)
            engine.sign_in(stream, email=EMAIL, password=password)
            key = engine.generate_key(stream, description="Amazon Sales Channel").key
            engine.copy_key(stream)
            engine.save_config(stream, key=key)
            engine.access(stream)
            assert engine.proceed(stream).state is State.StoreIntegration
        return stores * 7

    # A session belongs to the onboarding that opened it: each round of the session variant gets
    # onboardings prepared (untimed) with a password sign-in of their own.
    prepared = [signed_in_before() for _ in range(rounds)]
    contest = Contest(
        f"full onboarding, {stores} stores per round, 7 commands each (commands/s)",
        {
            "sign-in with live session": lambda: onboard(None, prepared.pop()),
            "sign-in with password (Argon2id)": lambda: onboard(PASSWORD, fresh_streams()),
        },
        rounds,
    ).run()
    result = contest.report("sign-in with live session", [])
    stored = hash_password(PASSWORD)
    t0 = time.perf_counter()
    for _ in range(5):
        verify_password(PASSWORD, stored)
    check = (time.perf_counter() - t0) / 5
    session, password = (contest.median(n) for n in contest.contenders)
    per_store_session, per_store_password = 7 / session, 7 / password
    share = (per_store_password - per_store_session) / per_store_password
    print(
        f"  per store: {per_store_session * 1000:.1f} ms with a live session, {per_store_password * 1000:.1f} ms with "
        f"the password; one password check takes {check * 1000:.1f} ms, {share:.0%} of a password onboarding"
    )
    assert engine.verify().ok
    engine.close()
    result.update(stores=stores, password_check_ms=check * 1000, password_check_share=share)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    report_in_scratch(lambda workdir: run(args.stores, args.rounds, workdir))


if __name__ == "__main__":
    main()
