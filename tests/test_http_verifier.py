"""The HTTP verification port against a real gateway on loopback: the contract, timeouts, bounded retries."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from keytrail import Engine, Outcome, Reason, State
from keytrail.crypto import fingerprint, hint
from keytrail.errors import AuthorityUnavailable, InvalidInput
from keytrail.portal import SavedKey
from keytrail.portal.http import CHECK_PATH, KEY_HEADER, HttpKeyVerifier
from tests.conftest import MovableClock
from tests.helpers import EMAIL, PASSWORD, ensure_account, snapshot

GOOD_KEY = "kt_" + "G" * 43
AT = datetime(2026, 1, 1, tzinfo=UTC)


class Gateway:
    """A Commerce key gateway on loopback whose behaviour the test sets: answers, delays, dropped connections."""

    def __init__(self) -> None:
        self.valid_keys: set[str] = set()
        self.status_for_valid = 200
        self.status_for_invalid = 401
        self.delay = 0.0
        self.drop_next = 0
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                key = self.headers.get(KEY_HEADER)
                with gateway._lock:
                    gateway.requests.append(("GET", self.path, key))
                    drop = gateway.drop_next > 0
                    if drop:
                        gateway.drop_next -= 1
                if drop:  # the connection dies without an answer
                    self.close_connection = True
                    self.connection.close()
                    return
                if gateway.delay:
                    time.sleep(gateway.delay)
                if self.path != CHECK_PATH:
                    code = 404
                else:
                    code = gateway.status_for_valid if key in gateway.valid_keys else gateway.status_for_invalid
                body = b"{}"
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up first
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    served = Gateway()
    try:
        yield served
    finally:
        served.stop()


def _saved(key: str) -> SavedKey:
    return SavedKey(fingerprint(key), hint(key), lambda: key)


@pytest.mark.parametrize(
    ("valid_status", "invalid_status"), [(200, 401), (204, 403), (299, 404), (200, 500), (200, 503)]
)
def test_the_gateway_contract(gateway: Gateway, valid_status: int, invalid_status: int) -> None:
    """2xx is valid, 4xx and 5xx invalid; the key travels in the magento-api-key header of a GET."""
    gateway.valid_keys.add(GOOD_KEY)
    gateway.status_for_valid, gateway.status_for_invalid = valid_status, invalid_status
    with HttpKeyVerifier(gateway.url, timeout=2, retries=0) as verifier:
        assert verifier.verify(_saved(GOOD_KEY), AT) == _verdict(valid=True)
        other = "kt_" + "B" * 43
        assert verifier.verify(_saved(other), AT) == _verdict(valid=False)
    assert gateway.requests == [("GET", CHECK_PATH, GOOD_KEY), ("GET", CHECK_PATH, other)]


def _verdict(*, valid: bool) -> object:
    from keytrail.portal import Verdict

    return Verdict(True, None) if valid else Verdict(False, Reason.invalid)


def test_an_async_caller_can_verify(gateway: Gateway) -> None:
    """Called from inside a running event loop (an async web handler), the verifier still answers."""
    import asyncio

    gateway.valid_keys.add(GOOD_KEY)

    async def handler(verifier: HttpKeyVerifier) -> bool:
        return verifier.verify(_saved(GOOD_KEY), AT).valid

    with HttpKeyVerifier(gateway.url, timeout=2, retries=0) as verifier:
        assert asyncio.run(handler(verifier))
        assert verifier.verify(_saved(GOOD_KEY), AT).valid
    assert len(gateway.requests) == 2


def test_no_saved_key_is_missing_without_asking(gateway: Gateway) -> None:
    with HttpKeyVerifier(gateway.url) as verifier:
        verdict = verifier.verify(None, AT)
        empty = verifier.verify(SavedKey("sha256:x", "", lambda: ""), AT)
    assert (verdict.valid, verdict.reason) == (False, Reason.missing)
    assert (empty.valid, empty.reason) == (False, Reason.missing)
    assert gateway.requests == []


def test_dropped_connections_are_retried_a_bounded_number_of_times(gateway: Gateway) -> None:
    gateway.valid_keys.add(GOOD_KEY)
    gateway.drop_next = 2
    with HttpKeyVerifier(gateway.url, timeout=2, retries=2, backoff=0) as verifier:
        assert verifier.verify(_saved(GOOD_KEY), AT).valid
    assert len(gateway.requests) == 3
    gateway.requests.clear()
    gateway.drop_next = 5
    with (
        HttpKeyVerifier(gateway.url, timeout=2, retries=1, backoff=0) as verifier,
        pytest.raises(AuthorityUnavailable, match=r"could not be reached .* after 2 attempt\(s\)"),
    ):
        verifier.verify(_saved(GOOD_KEY), AT)
    assert len(gateway.requests) == 2


def test_a_slow_gateway_times_out_after_the_bounded_retries(gateway: Gateway) -> None:
    gateway.valid_keys.add(GOOD_KEY)
    gateway.delay = 2.0
    with (
        HttpKeyVerifier(gateway.url, timeout=0.2, retries=1, backoff=0) as verifier,
        pytest.raises(AuthorityUnavailable, match=r"did not answer within 0.2 s after 2") as caught,
    ):
        verifier.verify(_saved(GOOD_KEY), AT)
    assert GOOD_KEY not in str(caught.value) and GOOD_KEY not in repr(caught.value)
    assert len(gateway.requests) == 2


def test_an_undefined_answer_is_not_a_verdict(gateway: Gateway) -> None:
    """A redirect is outside the contract: the verifier neither follows it nor calls the key valid."""
    gateway.status_for_valid = gateway.status_for_invalid = 302
    with (
        HttpKeyVerifier(gateway.url, timeout=2, retries=3, backoff=0) as verifier,
        pytest.raises(AuthorityUnavailable, match="HTTP 302"),
    ):
        verifier.verify(_saved(GOOD_KEY), AT)
    assert len(gateway.requests) == 1


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("ftp://gateway.example", {}, "must be http"),
        ("not a url at all", {}, "must be http"),
        ("http://gateway.example", {"timeout": 0}, "timeout must be positive"),
        ("http://gateway.example", {"retries": -1}, "retries must be 0 to 10"),
        ("http://gateway.example", {"retries": 11}, "retries must be 0 to 10"),
        ("http://gateway.example", {"backoff": -1.0}, "backoff must be 0 or more"),
    ],
)
def test_bad_settings_are_refused(url: str, options: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        HttpKeyVerifier(url, **options)  # type: ignore[arg-type]


def test_credentials_in_the_gateway_url_stay_out_of_messages() -> None:
    """The URL's password is not shown by repr() nor by the unavailable error."""
    with HttpKeyVerifier("http://user:s3cret-pass@127.0.0.1:9", timeout=0.2, retries=0) as verifier:
        assert "s3cret-pass" not in repr(verifier)
        with pytest.raises(AuthorityUnavailable) as caught:
            verifier.verify(_saved(GOOD_KEY), AT)
    assert "s3cret-pass" not in str(caught.value)


def _engine_at_config_saved(db_url: str, clock: MovableClock, verifier: HttpKeyVerifier, gateway: Gateway) -> Engine:
    engine = Engine.open(db_url, clock=clock, verifier=verifier)
    ensure_account(engine)
    assert engine.access("acme").reason is Reason.missing
    engine.sign_in("acme", email=EMAIL, password=PASSWORD)
    key = engine.generate_key("acme", description="Amazon Sales Channel").key
    gateway.valid_keys.add(key)
    engine.copy_key("acme")
    engine.save_config("acme", key=key)
    return engine


def test_the_engine_speaks_to_the_gateway(db_url: str, clock: MovableClock, gateway: Gateway) -> None:
    """The whole flow with the gateway as the verifier; a key the gateway refuses prompts again as invalid."""
    with HttpKeyVerifier(gateway.url, timeout=2, retries=0) as verifier:
        engine = _engine_at_config_saved(db_url, clock, verifier, gateway)
        try:
            assert engine.access("acme").state is State.Validated
            assert engine.proceed("acme").state is State.StoreIntegration
            gateway.valid_keys.clear()  # the gateway revoked it
            out = engine.access("acme")
            assert (out.state, out.reason) == (State.Prompted, Reason.invalid)
            assert engine.verify().ok
        finally:
            engine.close()
    assert [r[2] is not None for r in gateway.requests] == [True, True, True]


@pytest.mark.parametrize("failure", ["stopped", "slow"])
def test_an_unavailable_gateway_writes_nothing(
    db_url: str, clock: MovableClock, gateway: Gateway, failure: str
) -> None:
    """Stopped or timing out: access and proceed raise AuthorityUnavailable, nothing is written, state unchanged."""
    with HttpKeyVerifier(gateway.url, timeout=1.0, retries=1, backoff=0) as verifier:
        engine = _engine_at_config_saved(db_url, clock, verifier, gateway)
        try:
            assert engine.access("acme").state is State.Validated
            before = snapshot(engine)
            if failure == "stopped":
                gateway.stop()
            else:
                gateway.delay = 4.0
            with capture_logs() as logs:
                for command in (engine.access, engine.proceed):
                    with pytest.raises(AuthorityUnavailable, match="nothing was written") as caught:
                        command("acme")
                    assert caught.value.exit_code == 3
            assert snapshot(engine) == before
            assert engine.state("acme") is State.Validated
            assert engine.verify().ok
            assert any(entry["event"] == "gateway_unavailable" for entry in logs)
            (key,) = gateway.valid_keys
            assert key not in repr(logs) and key not in str(caught.value) and key not in repr(verifier)
            if failure == "stopped":
                gateway.start()
            else:
                gateway.delay = 0.0
            assert engine.proceed("acme").state is State.StoreIntegration
            assert engine.verify().ok
        finally:
            engine.close()
            structlog.reset_defaults()


# -- hostile gateways ---------------------------------------------------------------------------

FOUR_GIB = 4 * 2**30
SENT_CAP = 256 * 2**20  # the big body's server gives up here: a client reading it all would then time out


class HostileGateway:
    """A raw socket server on loopback that answers in one hostile way.

    ``drip-head``: the status line and headers one byte every 0.2 s, forever. ``drip-body``:
    the headers at once (status 200), then the body one byte every 0.2 s. ``huge-body``: the
    headers announce a 4 GiB body (status ``status``) and zeros follow as fast as the client
    takes them. The server counts what it sent and whether the client closed the connection.
    """

    def __init__(self, behaviour: str, status: int = 200) -> None:
        self.behaviour = behaviour
        self.status = status
        self.requests = 0
        self.sent: list[int] = []  # bytes sent after the request, one entry per finished connection
        self.closed_by_client = 0
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        sent = 0
        closed = False
        with conn:
            request = b""
            conn.settimeout(5)
            try:
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
            except OSError:
                return
            with self._lock:
                self.requests += 1
            reason = {200: b"OK", 401: b"Unauthorized"}.get(self.status, b"Whatever")
            status_line = b"HTTP/1.1 %d %s\r\n" % (self.status, reason)
            try:
                if self.behaviour == "drip-head":
                    head = status_line + b"Content-Length: 2\r\nX-Padding: "
                    for byte in itertools.chain(head, itertools.repeat(ord("a"))):
                        if self._stopping.wait(0.2):
                            break
                        sent += conn.send(bytes([byte]))
                elif self.behaviour == "drip-body":
                    sent += conn.send(status_line + b"Content-Length: 1000000\r\n\r\n")
                    while not self._stopping.wait(0.2):
                        sent += conn.send(b"0")
                else:
                    conn.sendall(status_line + b"Content-Length: %d\r\n\r\n" % FOUR_GIB)
                    zeros = bytes(64 * 1024)
                    while sent < SENT_CAP and not self._stopping.is_set():
                        conn.sendall(zeros)
                        sent += len(zeros)
                    self._stopping.wait()  # then silence: a client still reading waits for the rest
            except OSError:  # BrokenPipe, ConnectionReset: the client closed its end
                closed = True
        with self._lock:
            self.sent.append(sent)
            self.closed_by_client += closed

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileGateway]]:
    started: list[HostileGateway] = []

    def start(behaviour: str, status: int = 200) -> HostileGateway:
        started.append(HostileGateway(behaviour, status))
        return started[-1]

    yield start
    for server in started:
        server.stop()


# A hostile gateway could hold a command for ever, so how long the command takes is the very
# property under test: each call runs in a thread and must be done within BOUND seconds, far
# above the verifier's own 0.5 s deadline per attempt (two attempts, no backoff), so that a slow
# machine passes and a verifier without a total deadline fails instead of hanging the suite.
BOUND = 15.0


def _within_bound(call: Callable[[], object]) -> tuple[object, float]:
    """The call's result (or the exception it raised) and how long it took; fails if it outlives BOUND."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(call())
        except Exception as exc:
            result.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(BOUND)
    elapsed = time.monotonic() - started
    assert not worker.is_alive(), f"the call was still waiting for the gateway after {BOUND} s"
    return result[0], elapsed


def test_a_gateway_dripping_its_headers_cannot_hold_a_command(
    db_url: str, clock: MovableClock, gateway: Gateway, hostile: Callable[..., HostileGateway]
) -> None:
    """Headers one byte every 0.2 s for ever: each attempt ends at its deadline, then AuthorityUnavailable, nothing written."""
    drip = hostile("drip-head")
    with HttpKeyVerifier(gateway.url, timeout=0.5, retries=1, backoff=0) as setup:
        engine = _engine_at_config_saved(db_url, clock, setup, gateway)
    try:
        before = snapshot(engine)
        with HttpKeyVerifier(drip.url, timeout=0.5, retries=1, backoff=0) as verifier:
            engine.verifier = verifier
            outcome, _elapsed = _within_bound(lambda: engine.access("acme"))
        assert isinstance(outcome, AuthorityUnavailable), outcome
        assert "did not answer within 0.5 s" in str(outcome) and "after 2 attempt(s)" in str(outcome)
        assert drip.requests == 2
        assert snapshot(engine) == before
        assert engine.verify().ok
    finally:
        engine.close()


@pytest.mark.parametrize(("behaviour", "status"), [("drip-body", 200), ("huge-body", 200), ("huge-body", 401)])
def test_the_verdict_never_waits_for_the_body(
    db_url: str,
    clock: MovableClock,
    gateway: Gateway,
    hostile: Callable[..., HostileGateway],
    behaviour: str,
    status: int,
) -> None:
    """A body dripped byte by byte, or announced as 4 GiB: the status is the verdict, and the body is not read."""
    server = hostile(behaviour, status)
    with HttpKeyVerifier(gateway.url, timeout=0.5, retries=1, backoff=0) as setup:
        engine = _engine_at_config_saved(db_url, clock, setup, gateway)
    try:
        with HttpKeyVerifier(server.url, timeout=0.5, retries=1, backoff=0) as verifier:
            engine.verifier = verifier
            outcome, _elapsed = _within_bound(lambda: engine.access("acme"))
        assert isinstance(outcome, Outcome), outcome
        if status == 200:
            assert (outcome.state, outcome.reason) == (State.Validated, None)
        else:
            assert (outcome.state, outcome.reason) == (State.Prompted, Reason.invalid)
        assert server.requests == 1
        deadline = time.monotonic() + BOUND  # a dripping server notices the close at its next byte
        while not server.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        # The client closed at once: the server saw it close, having sent a few socket buffers at most.
        assert server.closed_by_client == 1
        assert server.sent[0] < 64 * 2**20
        assert engine.verify().ok
    finally:
        engine.close()


def test_a_stalled_name_lookup_cannot_hold_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's name resolves for ever: the deadline ends the attempt, and nothing waits for the lookup.

    The resolver is the one stand-in here (a real DNS server would need the machine's resolver
    configuration changed): socket.getaddrinfo blocks until the test ends, as a lookup does when
    the gateway's name servers do not answer.
    """
    real_getaddrinfo = socket.getaddrinfo
    stalled = threading.Event()

    def stalled_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        stalled.wait(60)
        return real_getaddrinfo(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stalled_getaddrinfo)
    try:
        with HttpKeyVerifier("http://gateway.keytrail.invalid", timeout=0.3, retries=1, backoff=0) as verifier:
            outcome, _elapsed = _within_bound(lambda: verifier.verify(_saved(GOOD_KEY), AT))
        assert isinstance(outcome, AuthorityUnavailable), outcome
        assert "did not answer within 0.3 s after 2 attempt(s)" in str(outcome)
    finally:
        stalled.set()
