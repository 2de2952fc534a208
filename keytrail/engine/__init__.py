"""Drives transitions: commands, guards, the clock, key verification, replay and audit."""

from keytrail.engine.admin import Admin, SavedKeyRecord
from keytrail.engine.core import Clock, Engine, system_clock
from keytrail.engine.results import Event, KeyOutcome, OnboardingStatus, Outcome, Problem, Replay, VerifyReport

__all__ = [
    "Admin",
    "Clock",
    "Engine",
    "Event",
    "KeyOutcome",
    "OnboardingStatus",
    "Outcome",
    "Problem",
    "Replay",
    "SavedKeyRecord",
    "VerifyReport",
    "system_clock",
]
