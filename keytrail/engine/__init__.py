"""Drives transitions: commands, guards, the clock, key verification, replay and audit."""

from keytrail.engine.core import Clock, Engine, system_clock
from keytrail.engine.results import Event, KeyOutcome, Outcome, Problem, Replay, VerifyReport

__all__ = [
    "Clock",
    "Engine",
    "Event",
    "KeyOutcome",
    "Outcome",
    "Problem",
    "Replay",
    "VerifyReport",
    "system_clock",
]
