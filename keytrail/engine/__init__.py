"""Drives transitions: commands, guards, the clock, key verification, replay and audit."""

from keytrail.engine.admin import Admin, SavedKeyRecord
from keytrail.engine.core import Clock, Engine, system_clock
from keytrail.engine.machine import OnboardingMachine, machine
from keytrail.engine.results import Event, KeyOutcome, OnboardingStatus, Outcome, Problem, Replay, VerifyReport

__all__ = [
    "Admin",
    "Clock",
    "Engine",
    "Event",
    "KeyOutcome",
    "OnboardingMachine",
    "OnboardingStatus",
    "Outcome",
    "Problem",
    "Replay",
    "SavedKeyRecord",
    "VerifyReport",
    "machine",
    "system_clock",
]
