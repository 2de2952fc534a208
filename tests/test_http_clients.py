"""Clients no one here wrote a server for: the docs' curl examples, a Node script, PHP's curl as Commerce calls the gateway.

A missing program (node, php with its curl extension, curl) skips its test only on a developer's
machine; as root (where ``make system-deps`` installs them) or with ``KEYTRAIL_REQUIRE_CLIENTS=1``
(CI) it is a failure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keytrail.http.problems import PROBLEMS
from tests.helpers import missing_package
from tests.http_server import Served, serve

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "http.md"
CLIENTS = Path(__file__).resolve().parent / "clients"


def require(program: str, why: str) -> str:
    found = shutil.which(program)
    if found is not None:
        return found
    missing_package("make system-deps", f"{program} is not installed ({why})")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve(f"sqlite:///{tmp_path}/keytrail.db", tmp_path) as server:
        server.token("magento-svc", "drive")
        server.token("auditor", "audit")
        server.token("admin-svc", "admin")
        yield server


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_the_docs_curl_examples_run_against_a_real_server(served: Served) -> None:
    require("curl", "the docs' examples use it")
    blocks = sh_blocks(DOCS.read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    env = {
        **served.env,
        "KT": served.url,
        "TOKEN": served.tokens["magento-svc"],
        "AUDIT_TOKEN": served.tokens["auditor"],
        "ADMIN_TOKEN": served.tokens["admin-svc"],
    }
    done = subprocess.run(
        [require("bash", "the docs' examples are shell"), "-euo", "pipefail", "-c", "\n".join(blocks)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert '"state":"Validated"' in out and '"state":"StoreIntegration","reason":null,"version":6' in out
    assert re.search(r"[}\n]200\n", out) and 'etag: "6"' in out.lower()  # the gateway check's status line
    verified = re.search(r'\{"ok":true,"streams":1,"authority_streams":(\d+),"events":(\d+),"problems":\[\]\}', out)
    assert verified is not None, out
    assert "# " + verified.group(0) in (ROOT / "docs" / "http.md").read_text(encoding="utf-8")
    assert "urn:keytrail:problem:illegal-transition" in out and "urn:keytrail:problem:unknown-key" in out


def test_the_docs_error_table_is_the_one_the_service_answers_with() -> None:
    rows = re.findall(
        r"^\| `(\w+)`[^|]* \| (\d{3})[^|]* \| `urn:keytrail:problem:([a-z-]+)` \|$", DOCS.read_text(), re.M
    )
    documented = {name: (int(status), slug) for name, status, slug in rows}
    served = {cls.__name__: (status, slug) for cls, (status, slug, _) in PROBLEMS.items()}
    served["ConcurrencyConflict"] = (412, "concurrency-conflict")  # the table gives the If-Match status first
    assert documented == served


def test_a_node_client_walks_the_flow_from_the_openapi_document(served: Served) -> None:
    node = require("node", "the Node client of the HTTP tests")
    env = {**served.env, "KEYTRAIL_URL": served.url, "KEYTRAIL_TOKEN": served.tokens["magento-svc"]}
    done = subprocess.run(
        [node, str(CLIENTS / "flow.mjs"), "node-store", "node@acme.test"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["states"] == [
        "Prompted",
        "SignedIn",
        "KeyGenerated",
        "KeyCopied",
        "ConfigSaved",
        "Validated",
        "StoreIntegration",
    ]
    assert result["gateway"] == 200 and result["stale"] == "urn:keytrail:problem:concurrency-conflict"


def test_php_curl_calls_the_gateway_check_as_commerce_does(served: Served) -> None:
    php = require("php", "the Commerce-side gateway check")
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, check=True, timeout=60).stdout
    if "curl" not in modules.split():
        require("php-curl-extension", "PHP's curl extension (php-curl)")
    with served.client(served.tokens["magento-svc"]) as drive:
        stream = "php-store"
        drive.post(f"/v1/onboardings/{stream}/access")
        drive.post(
            f"/v1/onboardings/{stream}/register",
            json={"email": "php@acme.test", "password": "correct horse battery staple", "company": "Acme"},
        )
        generated = drive.post(f"/v1/onboardings/{stream}/generate_key", json={"description": "Amazon Sales Channel"})
        key, key_id = generated.json()["key"], generated.json()["key_id"]

    def check(api_key: str | None) -> tuple[int, str]:
        env = {**served.env, "KEYTRAIL_GATEWAY": served.url + "/gateway/apikeycheck"}
        if api_key is not None:
            env["MAGENTO_API_KEY"] = api_key
        done = subprocess.run(
            [php, str(CLIENTS / "apikeycheck.php")], capture_output=True, text=True, env=env, check=False, timeout=60
        )
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, done.stdout.strip()

    assert check(key) == (0, "200 valid")
    assert check(None) == (1, "401 invalid")
    assert check("kt_" + "0" * 43) == (1, "401 invalid")
    with served.client(served.tokens["admin-svc"]) as admin:
        assert admin.post(f"/v1/keys/{key_id}/revoke").status_code == 200
    assert check(key) == (1, "401 invalid")
    assert httpx.get(served.url + "/healthz").status_code == 200


def test_the_readme_links_to_the_executed_http_page() -> None:
    """docs/http.md is the one executed copy: the README links to it, and each curl line of its short
    taste is a line of that page, so the README shows nothing the examples above did not run."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/http.md)" in readme
    page_lines = set(DOCS.read_text(encoding="utf-8").splitlines())
    taste = [line for block in sh_blocks(readme) for line in block.splitlines() if line.startswith("curl ")]
    assert taste, "the README shows no curl line of the HTTP service"
    assert [line for line in taste if line not in page_lines] == []
