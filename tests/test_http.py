"""The HTTP service (issue 11) through a real ``keytrail serve`` process, on SQLite and PostgreSQL.

One server per backend for this module; each test uses onboardings of its own.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keytrail.persistence.tables import DATABASE_SCHEMA
from keytrail.pgcluster import scratch_database
from tests.http_server import PASSWORD, Served, serve

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp(f"http-{request.param}")
    if request.param == "sqlite":
        with serve(f"sqlite:///{folder}/keytrail.db", folder) as server:
            yield from _with_tokens(server)
        return
    with scratch_database(request.getfixturevalue("postgres_server")) as url, serve(url, folder) as server:
        yield from _with_tokens(server)


def _with_tokens(server: Served) -> Iterator[Served]:
    for name, scope in (("admin-svc", "admin"), ("magento-svc", "drive"), ("auditor", "audit")):
        server.token(name, scope)
    yield server


def stream_id() -> str:
    return "store-" + uuid.uuid4().hex[:12]


def email() -> str:
    return f"ops-{uuid.uuid4().hex[:10]}@acme.test"


def problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """The response is the problem+json of ``kind`` with ``status``; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:keytrail:problem:{kind}", body
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def events_of(served: Served, stream: str) -> list[dict[str, Any]]:
    with served.client(served.tokens["auditor"]) as client:
        found = client.get(f"/v1/onboardings/{stream}/events")
    if found.status_code == 404:
        return []
    assert found.status_code == 200, found.text
    events: list[dict[str, Any]] = found.json()["events"]
    return events


def onboard(client: httpx.Client, stream: str, who: str | None = None) -> dict[str, Any]:
    """Drive ``stream`` from nothing to StoreIntegration; the generate_key response."""
    who = who or email()
    assert client.post(f"/v1/onboardings/{stream}/access").json()["state"] == "Prompted"
    body = {"email": who, "password": PASSWORD, "company": "Acme"}
    assert client.post(f"/v1/onboardings/{stream}/register", json=body).json()["state"] == "SignedIn"
    generated = client.post(f"/v1/onboardings/{stream}/generate_key", json={"description": "Amazon Sales Channel"})
    assert generated.status_code == 200, generated.text
    key = generated.json()["key"]
    assert client.post(f"/v1/onboardings/{stream}/save_config", json={"key": key}).json()["state"] == "ConfigSaved"
    assert client.post(f"/v1/onboardings/{stream}/access").json()["state"] == "Validated"
    assert client.post(f"/v1/onboardings/{stream}/proceed").json()["state"] == "StoreIntegration"
    result: dict[str, Any] = generated.json()
    return result


def test_the_whole_flow_and_the_reads(served: Served) -> None:
    stream = stream_id()
    with served.client(served.tokens["magento-svc"]) as drive, served.client(served.tokens["auditor"]) as audit:
        first = drive.post(f"/v1/onboardings/{stream}/access")
        assert first.status_code == 200 and first.headers["etag"] == '"1"'
        assert "no-store" not in first.headers.get("cache-control", "")
        out = first.json()
        assert {k: out[k] for k in ("stream", "state", "reason", "version", "replayed")} == {
            "stream": stream,
            "state": "Prompted",
            "reason": "missing",
            "version": 1,
            "replayed": False,
        }
        assert "key" not in out
        signed = drive.post(
            f"/v1/onboardings/{stream}/register", json={"email": email(), "password": PASSWORD, "company": "Acme"}
        )
        assert signed.json()["state"] == "SignedIn"
        generated = drive.post(f"/v1/onboardings/{stream}/generate_key", json={"description": "Amazon Sales Channel"})
        assert generated.status_code == 200 and generated.headers["cache-control"] == "no-store"
        assert generated.headers["etag"] == '"3"'
        key, key_id = generated.json()["key"], generated.json()["key_id"]
        assert key.startswith("kt_") and generated.json()["expires_at"]
        copied = drive.post(f"/v1/onboardings/{stream}/copy_key")
        assert copied.headers["cache-control"] == "no-store"
        assert (copied.json()["state"], copied.json()["key"], copied.json()["key_id"]) == ("KeyCopied", key, key_id)
        saved = drive.post(f"/v1/onboardings/{stream}/save_config", json={"key": key})
        assert saved.json()["state"] == "ConfigSaved" and "key" not in saved.json()
        assert drive.post(f"/v1/onboardings/{stream}/access").json()["state"] == "Validated"
        done = drive.post(f"/v1/onboardings/{stream}/proceed", headers={"If-Match": '"6"'})
        assert (done.json()["state"], done.json()["version"], done.headers["etag"]) == ("StoreIntegration", 7, '"7"')

        status = drive.get(f"/v1/onboardings/{stream}")
        assert status.headers["etag"] == '"7"'
        assert {k: status.json()[k] for k in ("stream", "state", "reason", "version")} == {
            "stream": stream,
            "state": "StoreIntegration",
            "reason": None,
            "version": 7,
        }
        assert status.json()["updated_at"] and len(status.json()["head_hash"]) == 64
        assert audit.get(f"/v1/onboardings/{stream}").status_code == 200  # drive or audit

        history = audit.get(f"/v1/onboardings/{stream}/events").json()
        assert history["stream"] == stream
        assert [e["trigger"] for e in history["events"]] == [
            "access",
            "register",
            "generate_key",
            "copy_key",
            "save_config",
            "access",
            "proceed",
        ]
        assert {e["actor"] for e in history["events"]} == {"magento-svc"}  # the token's name by default
        cut = history["events"][2]["occurred_at"]
        replayed = audit.get(f"/v1/onboardings/{stream}/replay", params={"as_of": cut}).json()
        assert (replayed["stream"], replayed["state"], replayed["version"], replayed["problems"]) == (
            stream,
            "KeyGenerated",
            3,
            [],
        )
        assert replayed["path"] == ["Unverified", "Prompted", "SignedIn", "KeyGenerated"]
        verified = audit.get("/v1/verify").json()
        assert verified["ok"] is True and verified["problems"] == []
        digest = audit.get("/v1/digest").json()
        assert digest["count"] >= 7 and len(digest["digest"]) == 64
        expiring = audit.get("/v1/expiring", params={"within_days": 400}).json()
        assert stream in {item["stream"] for item in expiring["expiring"]}
        listed = drive.get("/v1/onboardings", params={"limit": 1000}).json()
        assert stream in {item["stream"] for item in listed["onboardings"]}

        # The gateway check answers Commerce's question about the saved key, without a token.
        assert httpx.get(served.url + "/gateway/apikeycheck", headers={"magento-api-key": key}).status_code == 200
        with served.client(served.tokens["admin-svc"]) as admin:
            revoked = admin.post(f"/v1/keys/{key_id}/revoke")
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        refused = httpx.get(served.url + "/gateway/apikeycheck", headers={"magento-api-key": key})
        assert problem(refused, 401, "invalid-api-key")["reason"] == "invalid"
        again = drive.post(f"/v1/onboardings/{stream}/access", json={"actor": "storefront"}).json()
        assert (again["state"], again["reason"]) == ("Prompted", "invalid")
        assert events_of(served, stream)[-1]["actor"] == "storefront"
        # The audit says who revoked the key (the admin token), and that it was valid just before.
        with served.client(served.tokens["auditor"]) as auditor:
            now = auditor.get(f"/v1/onboardings/{stream}/audit")
            assert now.status_code == 200, now.text
            verdict = now.json()["verdict"]
            assert (verdict["status"], verdict["revoked_by"]) == ("revoked", "admin-svc")
            assert [e["trigger"] for e in now.json()["authority_events"]] == ["key_generated", "key_revoked"]
            before = auditor.get(f"/v1/onboardings/{stream}/audit", params={"at": history["events"][5]["occurred_at"]})
            assert before.json()["verdict"]["status"] == "valid" and before.json()["key"]["key_id"] == key_id
            problem(
                auditor.get(f"/v1/onboardings/{stream}/audit", params={"at": "2026-01-01T00:00:00"}),
                422,
                "invalid-input",
            )


def test_the_list_is_paged_by_id(served: Served) -> None:
    prefix = "page-" + uuid.uuid4().hex[:8]
    with served.client(served.tokens["magento-svc"]) as drive:
        for n in range(5):
            assert drive.post(f"/v1/onboardings/{prefix}-{n}/access").status_code == 200
        seen: list[str] = []
        after: str | None = f"{prefix}-"
        while after is not None:
            params: dict[str, Any] = {"after": after, "limit": 2}
            page = drive.get("/v1/onboardings", params=params).json()
            seen.extend(item["stream"] for item in page["onboardings"] if item["stream"].startswith(prefix))
            after = page["next"]
            if page["onboardings"] and not page["onboardings"][-1]["stream"].startswith(prefix):
                break
    assert seen == [f"{prefix}-{n}" for n in range(5)]


def test_the_gateway_check_is_commerces_contract(served: Served) -> None:
    gateway = served.url + "/gateway/apikeycheck"
    assert problem(httpx.get(gateway), 401, "invalid-api-key")["reason"] == "missing"
    unknown = httpx.get(gateway, headers={"magento-api-key": "kt_" + "x" * 43})
    assert problem(unknown, 401, "invalid-api-key")["reason"] == "invalid"
    malformed = httpx.get(gateway, headers={"magento-api-key": "short"})
    assert problem(malformed, 401, "invalid-api-key")["reason"] == "invalid"
    with served.client(served.tokens["magento-svc"]) as drive:
        key = onboard(drive, stream_id())["key"]
    assert httpx.get(gateway, headers={"magento-api-key": key}).status_code == 200


def test_an_idempotent_retry_replays_the_first_outcome(served: Served) -> None:
    stream = stream_id()
    with served.client(served.tokens["magento-svc"]) as drive:
        drive.post(f"/v1/onboardings/{stream}/access")
        body = {"email": email(), "password": PASSWORD, "company": "Acme"}
        drive.post(f"/v1/onboardings/{stream}/register", json=body)
        headers = {"Idempotency-Key": "gen-" + stream}
        path = f"/v1/onboardings/{stream}/generate_key"
        first = drive.post(path, json={"description": "Amazon Sales Channel"}, headers=headers)
        second = drive.post(path, json={"description": "Amazon Sales Channel"}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert (first.json()["replayed"], second.json()["replayed"]) == (False, True)
    assert second.json()["key_id"] == first.json()["key_id"] and second.json()["key"] == first.json()["key"]
    assert second.headers["cache-control"] == "no-store"
    assert [e["trigger"] for e in events_of(served, stream)] == ["access", "register", "generate_key"]


def test_a_stale_if_match_is_412_and_writes_nothing(served: Served) -> None:
    stream = stream_id()
    with served.client(served.tokens["magento-svc"]) as drive:
        drive.post(f"/v1/onboardings/{stream}/access")
        drive.post(f"/v1/onboardings/{stream}/access")
        stale = drive.post(f"/v1/onboardings/{stream}/access", headers={"If-Match": '"1"'})
        problem(stale, 412, "concurrency-conflict")
        bad = drive.post(f"/v1/onboardings/{stream}/access", headers={"If-Match": "two"})
        problem(bad, 422, "invalid-input")
        current = drive.post(f"/v1/onboardings/{stream}/access", headers={"If-Match": 'W/"2"'})
        assert current.status_code == 200 and current.headers["etag"] == '"3"'
        fresh = drive.post(f"/v1/onboardings/{stream_id()}/access", headers={"If-Match": '"0"'})
        assert fresh.status_code == 200
    assert len(events_of(served, stream)) == 3


def test_every_reachable_error_class_is_its_problem(served: Served) -> None:
    stream, who = stream_id(), email()
    with served.client(served.tokens["magento-svc"]) as drive, served.client(served.tokens["admin-svc"]) as admin:
        problem(drive.get(f"/v1/onboardings/{stream}"), 404, "unknown-onboarding")
        problem(drive.post("/v1/onboardings/bad id!/access"), 422, "invalid-input")
        drive.post(f"/v1/onboardings/{stream}/access")
        illegal = problem(drive.post(f"/v1/onboardings/{stream}/proceed"), 409, "illegal-transition")
        assert illegal["state"] == "Prompted" and set(illegal["allowed"]) >= {"sign_in", "register"}
        problem(drive.post(f"/v1/onboardings/{stream}/nope"), 404, "unknown-trigger")
        created = admin.post("/v1/accounts", json={"email": who, "password": PASSWORD, "company": "Acme"})
        assert created.status_code == 201 and "password" not in created.text
        duplicate = admin.post("/v1/accounts", json={"email": who, "password": PASSWORD, "company": "Acme"})
        problem(duplicate, 409, "duplicate-account")
        wrong = {"email": who, "password": "not the password at all"}
        for _ in range(4):
            problem(drive.post(f"/v1/onboardings/{stream}/sign_in", json=wrong), 422, "authentication-failed")
        locked = drive.post(f"/v1/onboardings/{stream}/sign_in", json=wrong)
        body = problem(locked, 423, "account-locked")
        assert body["retry_after"] > 0 and int(locked.headers["retry-after"]) == body["retry_after"]
        problem(admin.post("/v1/keys/key_0123456789abcdef/revoke"), 404, "unknown-key")
        problem(admin.post("/v1/keys/nope/revoke"), 422, "invalid-input")

        other = stream_id()
        key_id = onboard(drive, other)["key_id"]
        admin.post(f"/v1/keys/{key_id}/revoke")
        signed = stream_id()
        drive.post(f"/v1/onboardings/{signed}/access")
        drive.post(
            f"/v1/onboardings/{signed}/register", json={"email": email(), "password": PASSWORD, "company": "Acme"}
        )
        problem(drive.post(f"/v1/onboardings/{signed}/copy_key", json={"key_id": key_id}), 404, "unknown-key")
        headers = {"Idempotency-Key": "once-" + signed}
        drive.post(f"/v1/onboardings/{signed}/access", headers=headers)
        mismatch = drive.post(f"/v1/onboardings/{signed}/generate_key", json={"description": "x"}, headers=headers)
        problem(mismatch, 422, "idempotency-mismatch")
    assert [e["trigger"] for e in events_of(served, stream)] == ["access"]


def test_tokens_and_scopes(served: Served) -> None:
    stream = stream_id()
    path = f"/v1/onboardings/{stream}/access"
    missing = problem(httpx.post(served.url + path), 401, "unauthorized")
    assert "Bearer" in missing["detail"]
    assert httpx.post(served.url + path).headers["www-authenticate"].startswith("Bearer")
    for header in ("Bearer ktt_" + "a" * 43, "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer"):
        problem(httpx.post(served.url + path, headers={"Authorization": header}), 401, "unauthorized")
    gone = served.token("retired-" + stream[-6:], "admin")
    with served.client(gone) as client:
        assert client.get("/v1/verify").status_code == 200
        revoked = served.cli("token", "revoke", "retired-" + stream[-6:])
        assert revoked.returncode == 0, revoked.stderr
        problem(client.post(path), 401, "unauthorized")
    with served.client(served.tokens["auditor"]) as audit:
        assert problem(audit.post(path), 403, "forbidden")["scope"] == "audit"
        problem(
            audit.post("/v1/accounts", json={"email": email(), "password": PASSWORD, "company": "A"}), 403, "forbidden"
        )
    with served.client(served.tokens["magento-svc"]) as drive:
        problem(drive.get("/v1/verify"), 403, "forbidden")
        problem(drive.get(f"/v1/onboardings/{stream}/events"), 403, "forbidden")
        problem(drive.post("/v1/keys/key_0123456789abcdef/revoke"), 403, "forbidden")
    assert events_of(served, stream) == []
    listed = served.cli("token", "list", "--json")
    tokens = json.loads(listed.stdout)["tokens"]
    assert {t["name"] for t in tokens} >= {"admin-svc", "magento-svc", "auditor"}
    assert all(set(t) == {"name", "scope", "created_at", "revoked_at"} for t in tokens)
    assert not any(secret in listed.stdout for secret in served.tokens.values())


def test_oversized_and_malformed_bodies_write_nothing(served: Served) -> None:
    stream = stream_id()
    base = f"/v1/onboardings/{stream}"
    with served.client(served.tokens["magento-svc"]) as drive:
        huge = {"email": email(), "password": "p" * 200_000, "company": "Acme"}
        body = problem(drive.post(base + "/register", json=huge), 413, "payload-too-large")
        assert body["limit"] == 64 * 1024

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as the body arrives
            yield b'{"description": "'
            for _ in range(100):
                yield b"x" * 1024
            yield b'"}'

        streamed = drive.post(base + "/generate_key", content=chunks(), headers={"content-type": "application/json"})
        problem(streamed, 413, "payload-too-large")
        bad_json = drive.post(base + "/save_config", content=b'{"key": ', headers={"content-type": "application/json"})
        problem(bad_json, 422, "invalid-input")
        typo = problem(
            drive.post(base + "/sign_in", json={"email": email(), "pasword": PASSWORD}), 422, "invalid-input"
        )
        assert PASSWORD not in json.dumps(typo)
        problem(drive.post(base + "/save_config", json={"key": 12345}), 422, "invalid-input")
        problem(drive.post(base + "/save_config", json=["not", "an", "object"]), 422, "invalid-input")
        problem(drive.post(base + "/save_config", json={"key": "short"}), 422, "invalid-input")
        problem(drive.post(base + "/access", json={"actor": "x" * 500}), 422, "invalid-input")
        problem(drive.post(base + "/access", headers={"Idempotency-Key": "has spaces in it"}), 422, "invalid-input")
        problem(drive.delete(base + "/access"), 405, "method-not-allowed")
        problem(drive.get("/v1/nothing-here"), 404, "not-found")
    assert events_of(served, stream) == []


def test_metrics_count_requests_commands_and_transitions(served: Served) -> None:
    with served.client(served.tokens["magento-svc"]) as drive:
        drive.post(f"/v1/onboardings/{stream_id()}/access")
    text = httpx.get(served.url + "/metrics").text
    assert 'keytrail_http_requests_total{method="POST",route="/v1/onboardings/{stream}/access",status="200"}' in text
    assert 'keytrail_command_seconds_bucket{le="0.005",trigger="access"}' in text
    assert 'keytrail_transitions_total{dest="Prompted",trigger="access"}' in text
    # Group commit's batch sizes and latency, where it is on (SQLite's default), absent where it is off.
    commits = re.search(r"^keytrail_group_commits_total (\S+)$", text, re.MULTILINE)
    commands = re.search(r"^keytrail_group_commit_commands_total (\S+)$", text, re.MULTILINE)
    if served.db_url.startswith("sqlite"):
        assert commits is not None and commands is not None
        assert float(commands.group(1)) >= float(commits.group(1)) >= 1
        assert re.search(r"^keytrail_group_commit_seconds_total \S+$", text, re.MULTILINE)
    else:
        assert commits is None


def test_operations_endpoints_and_the_openapi_document(served: Served) -> None:
    assert httpx.get(served.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(served.url + "/readyz").json() == {"status": "ready", "schema_version": DATABASE_SCHEMA}
    document = httpx.get(served.url + "/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    paths = set(document["paths"])
    for trigger in ("access", "sign_in", "register", "generate_key", "copy_key", "save_config", "proceed"):
        assert f"/v1/onboardings/{{stream}}/{trigger}" in paths
    assert {
        "/v1/onboardings/{stream}",
        "/v1/onboardings",
        "/v1/onboardings/{stream}/events",
        "/v1/onboardings/{stream}/replay",
        "/v1/onboardings/{stream}/audit",
        "/v1/verify",
        "/v1/digest",
        "/v1/accounts",
        "/v1/keys/{key_id}/revoke",
        "/gateway/apikeycheck",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= paths
    docs = httpx.get(served.url + "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert httpx.get(served.url + "/healthz").headers["x-request-id"]
    assert httpx.get(served.url + "/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
