"""Commerce's key validation, answered by the embedded key authority: is this key good right now?

``GET /gateway/apikeycheck`` (the HTTP service) asks it with the key a Commerce instance sends
in its ``magento-api-key`` header. A key is valid when its fingerprint is a key the authority
issued, not revoked and not expired at the engine's clock; nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keytrail import inputs
from keytrail.crypto import fingerprint, hint
from keytrail.errors import InvalidInput
from keytrail.portal import SavedKey, Verdict
from keytrail.states import Reason

if TYPE_CHECKING:
    from keytrail.engine.core import Engine

__all__ = ["check_api_key"]


def check_api_key(engine: Engine, key: str | None) -> Verdict:
    """The authority's verdict on ``key`` at the engine's clock: missing, invalid (a malformed key too), expired or valid."""
    if key is None or not key.strip():
        return Verdict.missing()
    try:
        plaintext = inputs.check_key(key.strip())
    except InvalidInput:
        return Verdict(False, Reason.invalid)
    saved = SavedKey(fingerprint(plaintext), hint(plaintext), lambda: plaintext)
    return engine.portal.verify(saved, engine.now())
