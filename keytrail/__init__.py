"""keytrail: the Amazon Sales Channel API-key onboarding as an audited finite-state machine.

Users import from here; everything else may change between releases.
"""

from keytrail.engine import Engine, Event, KeyOutcome, Outcome, Problem, Replay, VerifyReport
from keytrail.errors import KeytrailError
from keytrail.portal import Account, ApiKey, KeyVerifier, SavedKey, Verdict
from keytrail.states import Reason, State, Trigger

__version__ = "0.1.0"

__all__ = [
    "Account",
    "ApiKey",
    "Engine",
    "Event",
    "KeyOutcome",
    "KeyVerifier",
    "KeytrailError",
    "Outcome",
    "Problem",
    "Reason",
    "Replay",
    "SavedKey",
    "State",
    "Trigger",
    "Verdict",
    "VerifyReport",
    "__version__",
]
