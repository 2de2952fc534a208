"""Drives transitions: commands, guards, the clock, key verification, replay and audit."""

from keytrail.engine.admin import Admin, SavedKeyRecord
from keytrail.engine.audit_at import Audit, AuditedKey, KeyVerdictAt
from keytrail.engine.core import Clock, Engine, system_clock
from keytrail.engine.results import Event, KeyOutcome, OnboardingStatus, Outcome, Problem, Replay, VerifyReport

__all__ = [
    "Admin",
    "Audit",
    "AuditedKey",
    "Clock",
    "Engine",
    "Event",
    "KeyOutcome",
    "KeyVerdictAt",
    "OnboardingStatus",
    "Outcome",
    "Problem",
    "Replay",
    "SavedKeyRecord",
    "VerifyReport",
    "system_clock",
]
