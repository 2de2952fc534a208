"""The verification port over HTTP: keytrail pointed at a real Commerce key gateway.

The contract is the Commerce gateway's: ``GET /gateway/apikeycheck`` with the key in the
``magento-api-key`` header; any 2xx answer means valid, any 4xx or 5xx invalid, and no saved
key is ``missing`` without a request. The gateway answers only valid or not, so an invalid
key is reported as ``invalid`` (never ``expired``). A connection that fails or times out is
retried a bounded number of times; after that :class:`AuthorityUnavailable` is raised, and
the engine writes nothing (it asks the verifier before it opens its transaction).

The status line is the whole verdict, so the body is never read: the connection is closed as
soon as the headers are in. Each attempt has one deadline for everything (connect, send,
status line, headers, and resolving the gateway's name), which a gateway sending a byte at a
time cannot stretch: httpx's timeouts bound each read, not their sum, so the request runs on
httpx's async client under ``asyncio.timeout``, in an event loop of the verification's own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from keytrail.errors import AuthorityUnavailable, InvalidInput
from keytrail.logs import get_logger
from keytrail.portal.ports import SavedKey, Verdict
from keytrail.states import Reason

__all__ = ["CHECK_PATH", "KEY_HEADER", "HttpKeyVerifier"]

CHECK_PATH = "/gateway/apikeycheck"
KEY_HEADER = "magento-api-key"
_log = get_logger("keytrail.portal.http")


_T = TypeVar("_T")


class _Abandoning(ThreadPoolExecutor):
    """An event loop's executor, where it resolves host names, that does not wait for them at the end.

    ``asyncio.run`` waits for its executor's threads before it returns; a lookup that the
    deadline gave up on would hold the command until the resolver's own timeouts. Left running,
    the lookup ends on its own and its thread with it.
    """

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=cancel_futures)


def _run_to_end(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` in a new event loop; from inside a running loop (async callers), in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="keytrail-gateway") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _is_seconds(value: object) -> bool:
    """A finite int or float: NaN makes a deadline that asyncio refuses, infinity one that never comes."""
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def _shown_url(url: httpx.URL) -> str:
    """The URL without credentials, for messages."""
    return str(url.copy_with(username=None, password=None)) if url.userinfo else str(url)


class HttpKeyVerifier:
    """A :class:`~keytrail.portal.KeyVerifier` that asks a Commerce key gateway over HTTP.

    ``timeout`` bounds each attempt as a whole (connect, send, status line and headers), in
    seconds; ``retries`` is how many more attempts follow a failed connection or a timeout,
    ``backoff`` seconds apart (doubling). HTTP answers are never retried: they are the
    gateway's verdict. ``transport`` replaces httpx's own (an ``httpx.AsyncBaseTransport``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not _is_seconds(timeout) or timeout <= 0:
            raise InvalidInput(f"The gateway timeout must be positive, a finite number of seconds, not {timeout!r}.")
        if type(retries) is not int or not 0 <= retries <= 10:
            raise InvalidInput(f"The gateway retries must be 0 to 10, a whole number, not {retries!r}.")
        if not _is_seconds(backoff) or backoff < 0:
            raise InvalidInput(f"The gateway backoff must be 0 or more seconds, a finite number, not {backoff!r}.")
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
        self._transport = transport
        # Built once: loading the CA bundle costs milliseconds, and each verification has a client of its
        # own (an async client belongs to the event loop it was made in, and each verification has its own).
        self._tls = httpx.create_ssl_context()
        self._closed = False

    def __repr__(self) -> str:
        return f"HttpKeyVerifier({self.shown!r}, timeout={self.timeout}, retries={self.retries})"

    def __enter__(self) -> HttpKeyVerifier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Refuse further verifications (each one's connection is closed when it ends)."""
        self._closed = True

    def verify(self, saved: SavedKey | None, at: datetime) -> Verdict:
        """Ask the gateway about the saved key; ``at`` is not sent (the gateway judges at its own now)."""
        if saved is None:
            return Verdict.missing()
        key = saved.reveal()
        if not key:
            return Verdict.missing()
        if self._closed:
            raise AuthorityUnavailable(f"The verifier of the key gateway at {self.shown} was closed.")
        return _run_to_end(self._verify(key, saved.hint))

    async def _verify(self, key: str, shown_hint: str) -> Verdict:
        # Threads start only when a name is resolved (a gateway given by IP address needs none).
        asyncio.get_running_loop().set_default_executor(_Abandoning(thread_name_prefix="keytrail-resolve"))
        attempts = self.retries + 1
        failure = ""
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            transport=self._transport,
            verify=self._tls,
            follow_redirects=False,
        ) as client:
            for attempt in range(1, attempts + 1):
                try:
                    async with asyncio.timeout(self.timeout):
                        status = await self._ask(client, key)
                except (TimeoutError, httpx.TimeoutException):
                    failure = f"did not answer within {self.timeout:g} s"
                except httpx.TransportError as exc:
                    failure = f"could not be reached ({exc.__class__.__name__})"
                else:
                    _log.debug("gateway_answered", status=status, hint=shown_hint, valid=200 <= status < 300)
                    if 200 <= status < 300:
                        return Verdict(True, None)
                    if 400 <= status < 600:
                        return Verdict(False, Reason.invalid)
                    # 1xx and 3xx are not part of the contract: treat as an unusable answer.
                    failure = f"answered HTTP {status}, which the gateway contract does not define"
                    break
                _log.warning("gateway_unavailable", url=self.shown, attempt=attempt, of=attempts, failure=failure)
                if attempt < attempts and self.backoff:
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        raise AuthorityUnavailable(
            f"The key gateway at {self.shown} {failure} after {attempt} attempt(s); "
            "nothing was written and the onboarding is unchanged."
        )

    async def _ask(self, client: httpx.AsyncClient, key: str) -> int:
        """One request: the status code, as soon as the headers are in; the body is left unread and the
        connection closed with it (a gateway could announce gigabytes, or send them a byte at a time)."""
        async with client.stream("GET", self.url, headers={KEY_HEADER: key}) as response:
            return response.status_code
