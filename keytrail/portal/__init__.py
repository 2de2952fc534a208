"""The embedded key authority (accounts, sign-in, API keys) and the verification port."""

from keytrail.portal.authority import Account, ApiKey, IssuedKey, KeyAuthority, SignInAttempt
from keytrail.portal.ports import KeyVerifier, SavedKey, TransactionalKeyVerifier, Verdict

__all__ = [
    "Account",
    "ApiKey",
    "IssuedKey",
    "KeyAuthority",
    "KeyVerifier",
    "SavedKey",
    "SignInAttempt",
    "TransactionalKeyVerifier",
    "Verdict",
]
