"""keytrail: the Amazon Sales Channel API-key onboarding as an audited finite-state machine.

Users import from here; everything else may change between releases.
"""

import importlib
import typing

if typing.TYPE_CHECKING:
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

# The one place the version is written: pyproject.toml reads it from here ([tool.hatch.version]).
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

# Where each public name lives. They load on first use (PEP 562), so ``keytrail --help`` and
# ``import keytrail`` stay fast: the engine brings SQLAlchemy and the database drivers with it.
_HOMES = {
    **dict.fromkeys(
        (
            "Admin",
            "Engine",
            "Event",
            "KeyOutcome",
            "OnboardingStatus",
            "Outcome",
            "Problem",
            "Replay",
            "SavedKeyRecord",
            "VerifyReport",
        ),
        "keytrail.engine",
    ),
    "KeytrailError": "keytrail.errors",
    **dict.fromkeys(("Account", "ApiKey", "KeyVerifier", "SavedKey", "Verdict"), "keytrail.portal"),
    **dict.fromkeys(("Reason", "State", "Trigger"), "keytrail.states"),
}


def __getattr__(name: str) -> typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'keytrail' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once loaded, an ordinary module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
