"""keytrail: the Amazon Sales Channel API-key onboarding as an audited finite-state machine.

Users import from here; everything else may change between releases.

The names load on first use (PEP 562), not on ``import keytrail``: pytest imports the
plugin ``keytrail.testing`` in every project that has keytrail installed, and importing a
submodule runs this file first, so an eager import here would load the engine, SQLAlchemy
and the state machine into every test run.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from keytrail.engine import (
        Admin,
        Audit,
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
    "Audit",
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

_HOMES = {
    **dict.fromkeys(
        [
            "Admin",
            "Audit",
            "Engine",
            "Event",
            "KeyOutcome",
            "OnboardingStatus",
            "Outcome",
            "Problem",
            "Replay",
            "SavedKeyRecord",
            "VerifyReport",
        ],
        "keytrail.engine",
    ),
    "KeytrailError": "keytrail.errors",
    **dict.fromkeys(["Account", "ApiKey", "KeyVerifier", "SavedKey", "Verdict"], "keytrail.portal"),
    **dict.fromkeys(["Reason", "State", "Trigger"], "keytrail.states"),
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'keytrail' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
