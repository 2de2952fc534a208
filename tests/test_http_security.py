"""Secrets over HTTP: a key only in the responses that create it, never a password or a token, never in the log.

Also the API tokens themselves: stored only as a hash, listed without the secret, revocable,
and the table added to a database made before it existed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from keytrail import Engine
from keytrail.engine import upgrading
from keytrail.engine.tokens import Tokens
from keytrail.errors import SchemaMismatch
from keytrail.pgcluster import scratch_database
from tests.http_server import PASSWORD, SCRIPT, serve, server_env


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/keytrail.db"
        return
    with scratch_database(request.getfixturevalue("postgres_server")) as url:
        yield url


def test_no_secret_in_any_response_but_the_key_creating_ones_nor_in_the_log(server_db: str, tmp_path: Path) -> None:
    with serve(server_db, tmp_path) as served:
        admin_token = served.token("admin-svc", "admin")
        drive_token = served.token("magento-svc", "drive")
        seen: list[tuple[str, httpx.Response]] = []

        def call(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
            response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
            seen.append((path, response))
            return response

        stream = "store-secrets"
        base = f"/v1/onboardings/{stream}"
        with served.client(drive_token) as drive, served.client(admin_token) as admin:
            call(admin, "POST", "/v1/accounts", json={"email": "a@acme.test", "password": PASSWORD, "company": "Acme"})
            call(drive, "POST", base + "/access")
            call(drive, "POST", base + "/sign_in", json={"email": "a@acme.test", "password": "wrong password here"})
            call(drive, "POST", base + "/sign_in", json={"email": "a@acme.test", "password": PASSWORD})
            key = call(drive, "POST", base + "/generate_key", json={"description": "Amazon Sales Channel"}).json()[
                "key"
            ]
            call(drive, "POST", base + "/copy_key")
            call(drive, "POST", base + "/save_config", json={"key": key})
            call(
                drive, "POST", base + "/save_config", json={"key": key + " x"}
            )  # refused: the message must not echo it
            call(drive, "POST", base + "/save_config", json={"key": "*" * 12})
            call(drive, "POST", base + "/access")
            call(drive, "POST", base + "/proceed")
            call(admin, "GET", base)
            call(admin, "GET", base + "/events")
            call(admin, "GET", base + "/replay")
            call(admin, "GET", "/v1/verify")
            call(admin, "GET", "/v1/expiring")
            call(admin, "GET", "/v1/onboardings")
            # The auditor's pages (issue 15): the list and the report, at now and at an instant.
            call(admin, "GET", "/ui/")
            call(admin, "GET", "/ui/?q=store&sort=-expires")
            call(admin, "GET", f"/ui/onboardings/{stream}")
            call(admin, "GET", f"/ui/onboardings/{stream}?at=2020-01-01T00:00:00Z")
            call(drive, "POST", base + "/register", json={"email": "b@acme.test", "password": PASSWORD, "compny": "x"})
            call(admin, "GET", "/metrics")
            gateway = httpx.get(served.url + "/gateway/apikeycheck", headers={"magento-api-key": key})
            seen.append(("/gateway/apikeycheck", gateway))
            assert gateway.status_code == 200
        log = served.log()
    secrets = {"key": key, "password": PASSWORD, "admin token": admin_token, "drive token": drive_token}
    pages = [response for path, response in seen if path.startswith("/ui/")]
    assert [r.status_code for r in pages] == [200] * 4 and all("text/html" in r.headers["content-type"] for r in pages)
    for path, response in seen:
        text = response.text + json.dumps(dict(response.headers))
        for name, secret in secrets.items():
            if name == "key" and path.endswith(("/generate_key", "/copy_key")):
                assert response.headers["cache-control"] == "no-store"
                continue
            assert secret not in text, f"the {name} is in the response of {path}"
    assert '"request"' in log and "request_id" in log  # the access log is there ...
    for name, secret in secrets.items():
        assert secret not in log, f"the {name} is in the server's log"  # ... and carries no secret
    assert "Authorization" not in log and "Bearer" not in log


def test_tokens_are_stored_only_as_a_hash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/k.db"
    with Engine.open(url) as engine:
        created = Tokens(engine).create("svc", "drive")
        assert repr(created) == "NewToken(name='svc', scope='drive')"
    raw = sqlite3.connect(tmp_path / "k.db")
    rows = raw.execute("SELECT name, scope, token_hash FROM api_tokens").fetchall()
    raw.close()
    assert rows == [("svc", "drive", hashlib.sha256(created.token.encode()).hexdigest())]
    assert created.token not in (tmp_path / "k.db").read_bytes().decode("latin-1")


def test_token_commands(tmp_path: Path) -> None:
    env = server_env(tmp_path)

    def keytrail(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), "--db", f"sqlite:///{tmp_path}/k.db", "token", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )

    created = keytrail("create", "--name", "magento-svc", "--scope", "drive", "--json")
    assert created.returncode == 0 and set(json.loads(created.stdout)) == {"name", "scope", "token"}
    token = json.loads(created.stdout)["token"]
    shown = keytrail("create", "--name", "auditor", "--scope", "audit")
    assert shown.returncode == 0 and shown.stdout.splitlines()[-1].startswith("ktt_")
    listed = keytrail("list")
    assert "magento-svc" in listed.stdout and "auditor" in listed.stdout and token not in listed.stdout
    for args, words in (
        (("create", "--name", "magento-svc", "--scope", "drive"), "already exists"),
        (("create", "--name", "x", "--scope", "root"), "drive, audit or admin"),
        (("create", "--name", "", "--scope", "drive"), "needs a name"),
        (("revoke", "nobody"), "no token named"),
    ):
        refused = keytrail(*args)
        assert refused.returncode == 2 and refused.stderr.startswith("keytrail: ") and words in refused.stderr, args
    revoked = keytrail("revoke", "magento-svc", "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
    again = keytrail("revoke", "magento-svc", "--json")
    assert json.loads(again.stdout)["revoked_at"] == json.loads(revoked.stdout)["revoked_at"]


def test_a_database_from_before_tokens_is_upgraded_to_them(db_url: str) -> None:
    """A database at revision 0002 (no api_tokens) is refused on open, naming the command; after
    `db upgrade` (revisions 0003 and 0004) tokens work and the log is untouched."""
    with Engine.open(db_url) as engine:
        engine.access("store-1")
    raw = sa.create_engine(db_url)
    with raw.begin() as conn:
        conn.execute(sa.text("DROP TABLE api_tokens"))
        conn.execute(sa.text("UPDATE keytrail_alembic_version SET version_num = '0002'"))
        conn.execute(sa.text("UPDATE keytrail_meta SET value = '2' WHERE name = 'schema_version'"))
    raw.dispose()
    with pytest.raises(SchemaMismatch, match="keytrail db upgrade"):
        Engine.open(db_url)
    before, after = upgrading.upgrade(db_url)
    assert (before.revision, after.revision) == ("0002", "0004")
    with Engine.open(db_url) as engine:
        created = Tokens(engine).create("svc", "admin")
        assert Tokens(engine).check(created.token) is not None
        assert engine.status("store-1").version == 1
        assert engine.verify().ok


def test_the_library_and_the_cli_do_not_load_the_web_stack() -> None:
    probe = (
        "import sys, keytrail, keytrail.cli; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'prometheus_client') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"
