"""keytrail: the Amazon Sales Channel API-key onboarding as an audited finite-state machine.

Users import from here; everything else may change between releases.
"""

from keytrail.engine import (
    Admin,
    Engine,
    Event,
    KeyOutcome,
    OnboardingStatus,
    Outcome,
    Problem,
    Replay,
    SavedKeyRecord,
    VerifyReport,
)
from keytrail.errors import KeytrailError
from keytrail.portal import Account, ApiKey, KeyVerifier, SavedKey, Verdict
from keytrail.states import Reason, State, Trigger

__version__ = "0.1.0"

__all__ = [
    "Account",
    "Admin",
    "ApiKey",
    "Engine",
    "Event",
    "KeyOutcome",
    "KeyVerifier",
    "KeytrailError",
    "OnboardingStatus",
    "Outcome",
    "Problem",
    "Reason",
    "Replay",
    "SavedKey",
    "SavedKeyRecord",
    "State",
    "Trigger",
    "Verdict",
    "VerifyReport",
    "__version__",
]
