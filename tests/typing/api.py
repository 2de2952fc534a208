"""A typed tour of the public API: never run, only checked by ``mypy --strict`` (as structlog's tests/typing/api.py).

If a public signature changes in a way that breaks callers, mypy fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keytrail import (
    Engine,
    Event,
    KeyOutcome,
    OnboardingStatus,
    Outcome,
    Reason,
    Replay,
    SavedKeyRecord,
    State,
    Verdict,
    VerifyReport,
)
from keytrail.errors import IllegalTransition, KeytrailError


def tour(url: str) -> None:
    engine: Engine = Engine.open(url, key_lifetime=timedelta(days=30), clock=lambda: datetime.now(UTC))
    engine.portal.create_account("ops@acme.test", "correct horse battery", company="Acme")
    first: Outcome = engine.access("acme", actor="admin:jane", idempotency_key="view-1")
    reason: Reason | None = first.reason
    engine.sign_in("acme", email="ops@acme.test", password="correct horse battery")
    generated: KeyOutcome = engine.generate_key("acme", description="Amazon Sales Channel")
    key: str = generated.key
    engine.copy_key("acme", key_id=generated.key_id)
    engine.save_config("acme", key=key, expected_version=first.version + 4)
    state: State = engine.proceed("acme").state
    events: list[Event] = engine.history("acme")
    replay: Replay = engine.replay("acme", as_of=events[0].occurred_at)
    path: list[State] = replay.path
    report: VerifyReport = engine.verify()
    status: OnboardingStatus = engine.status("acme")
    saved: SavedKeyRecord | None
    verdict: Verdict
    saved, verdict = engine.saved_key_status("acme")
    put: SavedKeyRecord = engine.admin.put_saved_key("globex", key)
    resealed: int = engine.admin.rotate_secret_key("a Fernet key from keytrail.crypto.generate_secret_key()")
    print(status.state.value, status.as_dict(), saved, verdict.valid, put.hint, resealed)
    try:
        engine.copy_key("acme")
    except IllegalTransition as refused:
        allowed: list[str] = refused.allowed_now
        print(allowed, state, path, report.ok, reason)
    except KeytrailError as other:
        exit_code: int = other.exit_code
        print(exit_code)
    finally:
        engine.close()
