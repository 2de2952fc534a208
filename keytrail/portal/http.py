"""The verification port over HTTP: keytrail pointed at a real Commerce key gateway.

The contract is the Commerce gateway's: ``GET /gateway/apikeycheck`` with the key in the
``magento-api-key`` header; any 2xx answer means valid, any 4xx or 5xx invalid, and no saved
key is ``missing`` without a request. The gateway answers only valid or not, so an invalid
key is reported as ``invalid`` (never ``expired``). A connection that fails or times out is
retried a bounded number of times; after that :class:`AuthorityUnavailable` is raised, and
the engine writes nothing (it asks the verifier before it opens its transaction).
"""

from __future__ import annotations

import time
from datetime import datetime
from types import TracebackType

import httpx
import structlog

from keytrail.errors import AuthorityUnavailable, InvalidInput
from keytrail.portal.ports import SavedKey, Verdict
from keytrail.states import Reason

__all__ = ["CHECK_PATH", "KEY_HEADER", "HttpKeyVerifier"]

CHECK_PATH = "/gateway/apikeycheck"
KEY_HEADER = "magento-api-key"
_log = structlog.get_logger("keytrail.portal.http")


def _shown_url(url: httpx.URL) -> str:
    """The URL without credentials, for messages."""
    return str(url.copy_with(username=None, password=None)) if url.userinfo else str(url)


class HttpKeyVerifier:
    """A :class:`~keytrail.portal.KeyVerifier` that asks a Commerce key gateway over HTTP.

    ``timeout`` bounds each attempt (connect, read, write, pool), in seconds; ``retries`` is how
    many more attempts follow a failed connection or a timeout, ``backoff`` seconds apart
    (doubling). HTTP answers are never retried: they are the gateway's verdict.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if timeout <= 0:
            raise InvalidInput(f"The gateway timeout must be positive, not {timeout}.")
        if retries < 0 or retries > 10:
            raise InvalidInput(f"The gateway retries must be 0 to 10, not {retries}.")
        if backoff < 0:
            raise InvalidInput(f"The gateway backoff must be 0 or more seconds, not {backoff}.")
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError):
            raise InvalidInput("The gateway URL is not a URL; use http(s)://host[:port].") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise InvalidInput(f"The gateway URL must be http(s)://host[:port], not {_shown_url(url)!r}.")
        self.url = url.join(CHECK_PATH)
        self.shown = _shown_url(self.url)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False)

    def __repr__(self) -> str:
        return f"HttpKeyVerifier({self.shown!r}, timeout={self.timeout}, retries={self.retries})"

    def __enter__(self) -> HttpKeyVerifier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def verify(self, saved: SavedKey | None, at: datetime) -> Verdict:
        """Ask the gateway about the saved key; ``at`` is not sent (the gateway judges at its own now)."""
        if saved is None:
            return Verdict.missing()
        key = saved.reveal()
        if not key:
            return Verdict.missing()
        attempts = self.retries + 1
        failure = ""
        for attempt in range(1, attempts + 1):
            try:
                response = self._client.get(self.url, headers={KEY_HEADER: key})
            except httpx.TimeoutException as exc:
                failure = f"did not answer within {self.timeout:g} s ({exc.__class__.__name__})"
            except httpx.TransportError as exc:
                failure = f"could not be reached ({exc.__class__.__name__})"
            else:
                valid = response.is_success
                _log.debug("gateway_answered", status=response.status_code, hint=saved.hint, valid=valid)
                if valid:
                    return Verdict(True, None)
                if response.is_client_error or response.is_server_error:
                    return Verdict(False, Reason.invalid)
                # 1xx and 3xx are not part of the contract: treat as an unusable answer.
                failure = f"answered HTTP {response.status_code}, which the gateway contract does not define"
                break
            _log.warning("gateway_unavailable", url=self.shown, attempt=attempt, of=attempts, failure=failure)
            if attempt < attempts and self.backoff:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        raise AuthorityUnavailable(
            f"The key gateway at {self.shown} {failure} after {attempt} attempt(s); "
            "nothing was written and the onboarding is unchanged."
        )
