"""``create_app`` mounted in a user's own uvicorn (a real socket), and keytrail's own gateway client against ``serve``.

The errors a stock ``keytrail serve`` cannot meet (a remote key authority that does not answer,
a tampered row) are met here, with an engine the test builds, over real HTTP.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from keytrail import Engine, State
from keytrail.engine.tokens import Tokens
from keytrail.http import create_app
from keytrail.portal.http import HttpKeyVerifier
from tests.http_server import PASSWORD, free_port, serve
from tests.test_http import problem


@contextmanager
def mounted(engine: Engine) -> Iterator[str]:
    """create_app(engine) in an in-process uvicorn on a free port, as an application would mount it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(engine), port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # generous: only a hang is cut
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def test_a_remote_authority_that_does_not_answer_is_503(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    verifier = HttpKeyVerifier(dead, timeout=0.5, retries=0)
    with Engine.open(f"sqlite:///{tmp_path}/k.db", verifier=verifier) as engine, mounted(engine) as url:
        token = Tokens(engine).create("svc", "admin").token
        engine.admin.put_saved_key("store-1", "kt_" + "a" * 43)
        headers = {"Authorization": f"Bearer {token}"}
        refused = httpx.post(url + "/v1/onboardings/store-1/access", headers=headers, timeout=30)
        problem(refused, 503, "authority-unavailable")
        problem(httpx.get(url + "/v1/onboardings/store-1", headers=headers), 404, "unknown-onboarding")


def test_a_tampered_event_is_a_500_that_names_it(tmp_path: Path) -> None:
    with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine:
        engine.access("store-1")
        token = Tokens(engine).create("auditor", "audit").token
    raw = sqlite3.connect(tmp_path / "k.db")
    raw.execute("UPDATE events SET trigger = 'teleport' WHERE stream_id = 'store-1'")
    raw.commit()
    raw.close()
    with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine, mounted(engine) as url:
        headers = {"Authorization": f"Bearer {token}"}
        found = problem(httpx.get(url + "/v1/onboardings/store-1/events", headers=headers), 500, "corrupt-event")
        assert "store-1" in found["detail"] and "version 1" in found["detail"]
        verified = httpx.get(url + "/v1/verify", headers=headers).json()
        assert verified["ok"] is False and verified["problems"][0]["stream"] == "store-1"


def test_keytrails_own_gateway_client_accepts_the_served_check(tmp_path: Path) -> None:
    """Another keytrail, verifying through HttpKeyVerifier, trusts a key exactly while the served authority does."""
    with serve(f"sqlite:///{tmp_path}/authority.db", tmp_path) as served:
        token = served.token("svc", "admin")
        with served.client(token) as client:
            client.post("/v1/onboardings/store-1/access")
            client.post(
                "/v1/onboardings/store-1/register",
                json={"email": "ops@acme.test", "password": PASSWORD, "company": "Acme"},
            )
            issued = client.post("/v1/onboardings/store-1/generate_key", json={"description": "Amazon Sales Channel"})
            key, key_id = issued.json()["key"], issued.json()["key_id"]
            verifier = HttpKeyVerifier(served.url)
            with Engine.open(f"sqlite:///{tmp_path}/shop.db", verifier=verifier) as shop:
                shop.save_config("shop-1", key=key)
                assert shop.access("shop-1").state is State.Validated
                assert client.post(f"/v1/keys/{key_id}/revoke").status_code == 200
                after = shop.access("shop-1")
                assert (after.state, after.reason is not None and after.reason.value) == (State.Prompted, "invalid")
