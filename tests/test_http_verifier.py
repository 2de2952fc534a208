"""The HTTP verification port against a real gateway on loopback: the contract, timeouts, bounded retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import structlog
from structlog.testing import capture_logs

from keytrail import Engine, Reason, State
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
        pytest.raises(AuthorityUnavailable, match=r"did not answer within 0.2 s \(ReadTimeout\) after 2") as caught,
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
