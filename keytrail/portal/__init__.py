"""The embedded key authority (accounts, sign-in, API keys) and the verification port.

``keytrail.portal.http.HttpKeyVerifier`` implements the port against a real Commerce key
gateway; it lives in its own module so that importing keytrail does not import httpx.
"""

from keytrail.portal.authority import Account, ApiKey, IssuedKey, KeyAuthority, SignInAttempt
from keytrail.portal.ports import (
    AuthorityRecords,
    AuthorityStorage,
    KeyVerifier,
    SavedKey,
    TransactionalKeyVerifier,
    Verdict,
)

__all__ = [
    "Account",
    "ApiKey",
    "AuthorityRecords",
    "AuthorityStorage",
    "IssuedKey",
    "KeyAuthority",
    "KeyVerifier",
    "SavedKey",
    "SignInAttempt",
    "TransactionalKeyVerifier",
    "Verdict",
]
