"""The auditor's page in a real browser (issue 15): Debian's chromium through Playwright, JavaScript off.

What a person sees: the timeline's rows in order, the path numbered on the diagram and the current
state marked in words, the verdict at T, a tampered log's failure in red and in words, hostile text
shown as text, nothing requested but the page, headers on every table, nothing cut when printed.
The saved file (``keytrail report -o``) and the served pages (``keytrail serve``, ``/ui/``) both.
A screenshot of each page is kept under the test's tmp_path and in test-output/screenshots/.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from typer.testing import CliRunner

from keytrail import Engine
from keytrail.engine import reports
from tests.browser import SCREENSHOTS, chromium, find_chromium, require_chromium
from tests.conftest import MovableClock
from tests.helpers import EMAIL, PASSWORD, ensure_account
from tests.http_server import SCRIPT, Served, serve, server_env

runner = CliRunner()
HOSTILE_ACTOR = "<script>document.title='owned'</script><b>eve</b>"
A4_WIDTH = 794  # CSS pixels of an A4 page's width, as chromium prints


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(require_chromium(find_chromium())) as launched:
        yield launched


def _without_chromium() -> str:
    """What the browser tests do where chromium is missing: "fail" or "skip"."""
    try:
        require_chromium(None)
    except pytest.fail.Exception as exc:
        said, outcome = str(exc), "fail"
    except pytest.skip.Exception as exc:
        said, outcome = str(exc), "skip"
    else:
        return "ran"
    return outcome if "chromium is not installed" in said else f"{outcome}, saying {said!r}"


def test_a_missing_chromium_fails_in_ci_and_skips_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """.ci/run sets KEYTRAIL_REQUIRE_CLIENTS=1: there a missing browser fails the tests instead of skipping them."""
    assert find_chromium(str(tmp_path), tmp_path / "chromium") is None
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # a developer, not root: `make setup` could not install it
    monkeypatch.delenv("KEYTRAIL_REQUIRE_POSTGRES", raising=False)
    monkeypatch.setenv("KEYTRAIL_REQUIRE_CLIENTS", "1")
    assert _without_chromium() == "fail"
    monkeypatch.delenv("KEYTRAIL_REQUIRE_CLIENTS")
    assert _without_chromium() == "skip"
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # root: it could have been installed
    assert _without_chromium() == "fail"
    assert require_chromium("/usr/bin/chromium") == "/usr/bin/chromium"


class Visit:
    """A page opened in a fresh context, JavaScript disabled, every request the context makes recorded."""

    def __init__(self, browser: Browser, **options: Any) -> None:
        self.context: BrowserContext = browser.new_context(java_script_enabled=False, **options)
        self.requests: list[tuple[str, str]] = []
        self.context.on("request", lambda request: self.requests.append((request.resource_type, request.url)))
        self.page: Page = self.context.new_page()

    def open(self, url: str) -> Page:
        response = self.page.goto(url)
        assert response is not None and response.ok, (url, response and response.status)
        return self.page

    def keep(self, tmp_path: Path, name: str) -> Path:
        """A full-page screenshot, under tmp_path and test-output/screenshots/ (for review)."""
        shot = tmp_path / f"{name}.png"
        self.page.screenshot(path=str(shot), full_page=True)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / shot.name).write_bytes(shot.read_bytes())
        return shot

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser: Browser) -> Iterator[Any]:
    opened: list[Visit] = []

    def make(**options: Any) -> Visit:
        opened.append(Visit(browser, **options))
        return opened[-1]

    yield make
    for each in opened:
        each.close()


def _story(url: str) -> list[datetime]:
    """acme, as the demo: onboarded 400 days ago (the first access by a hostile actor), its key expired a year
    later, onboarded again a month ago; then beta, prompted. The times of acme's events, oldest first."""
    clock = MovableClock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=400))
    times: list[datetime] = []
    with Engine.open(url, clock=clock) as engine:
        ensure_account(engine)
        for year in range(2):
            if year:
                clock.advance(timedelta(days=366))
            actor = HOSTILE_ACTOR if year == 0 else "omar@acme.test"
            times.append(engine.access("acme", actor=actor).occurred_at)
            clock.advance(timedelta(minutes=3))
            times.append(engine.sign_in("acme", email=EMAIL, password=PASSWORD, actor="jane@acme.test").occurred_at)
            clock.advance(timedelta(minutes=3))
            times.append(engine.generate_key("acme", description="Amazon Sales Channel").occurred_at)
            clock.advance(timedelta(minutes=2))
            copied = engine.copy_key("acme")
            times.append(copied.occurred_at)
            clock.advance(timedelta(minutes=4))
            times.append(engine.save_config("acme", key=copied.key).occurred_at)
            clock.advance(timedelta(minutes=4))
            times.append(engine.access("acme").occurred_at)
            clock.advance(timedelta(minutes=4))
            times.append(engine.proceed("acme").occurred_at)
        clock.advance(timedelta(minutes=5))
        engine.access("beta")
    return times


def _report(url: str, target: Path, *args: str, env: dict[str, str] | None = None) -> int:
    """``keytrail report acme`` as a user runs it (the console script), the page in ``target``; the exit code."""
    done = subprocess.run(
        [str(SCRIPT), "--db", url, "report", "acme", *args, "-o", str(target)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode in (0, 1) and done.stdout == "", done.stderr
    assert target.is_file(), done.stderr
    return done.returncode


def _cells(page: Page, column: int) -> list[str]:
    return page.locator(f"#timeline-table tbody tr > :nth-child({column})").all_inner_texts()


def _assert_accessible_tables(page: Page) -> None:
    """Every table has a header row and every header says what it heads (scope)."""
    tables = page.locator("table")
    assert tables.count() >= 1
    for index in range(tables.count()):
        table = tables.nth(index)
        assert table.locator("thead th").count() >= 5
        assert table.locator("caption").count() == 1
    assert page.locator("th:not([scope])").count() == 0


def _assert_nothing_cut_when_printed(page: Page) -> None:
    """Printed on A4, nothing is wider than the page (so nothing is cut) and the screen-only parts are gone."""
    page.set_viewport_size({"width": A4_WIDTH, "height": 1123})
    page.emulate_media(media="print")
    widest = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    assert widest <= A4_WIDTH, f"the printed page is {widest}px wide, wider than A4's {A4_WIDTH}px"
    assert page.locator("#timeline-table tbody tr").last.is_visible()
    assert page.locator("nav").count() == 0 or not page.locator("nav").is_visible()
    page.pdf()  # chromium prints it (headless)
    page.emulate_media(media="screen")


def test_the_saved_report_as_a_person_sees_it(visit: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/keytrail.db"
    _story(url)
    with Engine.open(url) as engine:
        history = engine.history("acme")
        digest = reports.digest(engine).token
    at = history[11].occurred_at + timedelta(minutes=1)  # the renewed key saved, not yet verified
    target = tmp_path / "report.html"
    assert _report(url, target, "--at", at.isoformat()) == 0
    seen = visit()
    page = seen.open(target.as_uri())

    # The timeline: one row per event, in order.
    assert _cells(page, 2) == [str(e.version) for e in history]
    assert _cells(page, 1) == [f"#{n}" for n in range(1, len(history) + 1)]
    assert _cells(page, 4) == [e.trigger.value for e in history]
    assert _cells(page, 5)[7] == "StoreIntegration → Prompted"
    assert _cells(page, 8) == [e.hash[:12] for e in history]
    later = page.locator("#timeline-table tbody tr.after")
    assert later.count() == 2 and "(after T)" in later.first.inner_text()

    # Hostile text is text: the actor reads as typed, and made no element.
    assert _cells(page, 7)[0] == HOSTILE_ACTOR
    assert page.locator("script").count() == 0 and page.locator("#timeline-table b").count() == 0
    assert page.title() == "keytrail report: acme"

    # The diagram: every step number on the path, repeats counted, the current state marked in words.
    diagram = page.locator("svg.diagram")
    assert diagram.is_visible() and diagram.get_attribute("role") == "img"
    labels = diagram.locator("text").all_text_contents()  # SVG text has no innerText
    numbered = {
        part.strip() for text in labels for part in text.split("(")[0].split(",") if part.strip().startswith("#")
    }
    assert numbered == {f"#{n}" for n in range(1, len(history) + 1)}, labels
    assert any("(2x)" in text for text in labels)
    current = diagram.locator("g.node", has=page.locator("title", has_text="StoreIntegration")).first
    assert "(current)" in (current.text_content() or "")
    assert page.locator("#current-state").inner_text().startswith("StoreIntegration")

    # The verdict at T, the verification and the digest.
    assert page.locator("#state-at").inner_text() == "ConfigSaved, version 12"
    assert page.locator("#event-at").inner_text().startswith("event version 12, save_config (KeyCopied → ConfigSaved)")
    key_id = history[9].data["key_id"]  # the renewed key, saved at version 12
    assert page.locator("#key-verdict").inner_text().startswith(f"valid Key {key_id} (ending in ")
    assert page.locator("#authority-table tbody tr").all_inner_texts()[0].startswith(f"@key:{key_id}\t1\t")
    assert "Verification passed" in page.locator("#verify-result").inner_text()
    assert page.locator("#digest-token").inner_text() == digest

    _assert_accessible_tables(page)
    assert seen.requests == [("document", target.as_uri())]  # the page, and nothing else
    seen.keep(tmp_path, "report-file")
    _assert_nothing_cut_when_printed(page)


def test_a_tampered_log_shows_the_failure_in_red_and_in_words(visit: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/keytrail.db"
    _story(url)
    raw = sqlite3.connect(tmp_path / "keytrail.db")
    with raw:  # an event's data edited behind keytrail's back
        raw.execute(
            "UPDATE events SET data = json_set(data, '$.hint', 'XXXX') WHERE stream_id = 'acme' AND version = 3"
        )
    raw.close()
    target = tmp_path / "report.html"
    assert _report(url, target) == 1
    seen = visit()
    page = seen.open(target.as_uri())
    result = page.locator("#verify-result")
    assert "Verification failed" in result.inner_text()
    problems = page.locator("#verify-problems li").all_inner_texts()
    assert problems and problems[0].startswith("version 3, "), problems
    assert result.evaluate("e => getComputedStyle(e).color") == "rgb(185, 28, 28)"  # red ...
    assert page.locator("header .badge").inner_text() == "Verification failed"  # ... and in words at the top
    assert "Verification passed" not in page.content()
    seen.keep(tmp_path, "report-tampered")


def test_the_saved_report_without_graphviz(visit: Any, tmp_path: Path) -> None:
    """No dot on the PATH: the plainer diagram, the same story (boxes, the current one labelled, the steps listed)."""
    url = f"sqlite:///{tmp_path}/keytrail.db"
    _story(url)
    bare = tmp_path / "bin"
    bare.mkdir()
    target = tmp_path / "report.html"
    assert _report(url, target, env={**os.environ, "PATH": str(bare)}) == 0
    seen = visit()
    page = seen.open(target.as_uri())
    diagram = page.locator("svg.diagram.plain")
    assert diagram.is_visible()
    assert (diagram.locator("g.state.current").text_content() or "").startswith("StoreIntegration (current)")
    steps = [t for t in diagram.locator("text").all_text_contents() if t.startswith("#")]
    assert steps[0] == "#1 access: Unverified -> Prompted" and len(steps) == 14
    assert "entered at #2, #9 (2x)" in (diagram.locator('g.state[data-state="SignedIn"]').text_content() or "")
    assert "Drawn without Graphviz" in page.locator("figcaption").inner_text()
    assert seen.requests == [("document", target.as_uri())]
    seen.keep(tmp_path, "report-plain")


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Served, list[datetime]]]:
    env = server_env(tmp_path)
    monkeypatch.setenv("KEYTRAIL_SECRET_KEY", env["KEYTRAIL_SECRET_KEY"])  # the server's key seals the story too
    url = f"sqlite:///{tmp_path}/keytrail.db"
    times = _story(url)
    with serve(url, tmp_path, env=env) as server:
        server.token("auditor", "audit")
        server.token("magento-svc", "drive")
        yield server, times


def test_the_served_pages_as_a_person_uses_them(
    visit: Any, served: tuple[Served, list[datetime]], tmp_path: Path
) -> None:
    """/ui/: the list, searched with its form and sorted with its headings; a row's link opens the report."""
    server, _ = served
    seen = visit(extra_http_headers={"Authorization": f"Bearer {server.tokens['auditor']}"})
    page = seen.open(server.url + "/ui/")
    rows = page.locator("#onboardings tbody tr")
    assert rows.locator("th").all_inner_texts() == ["acme", "beta"]
    assert rows.nth(1).locator("td").nth(0).inner_text() == "Prompted"
    assert rows.nth(0).locator("td").nth(5).inner_text() == "valid"  # the key, in words
    _assert_accessible_tables(page)
    seen.keep(tmp_path, "ui-list")

    page.locator("#q").fill("prompted")
    page.locator("form.search button").click()
    page.wait_for_load_state()
    assert rows.locator("th").all_inner_texts() == ["beta"]
    assert page.locator("#count").inner_text().startswith("1 of 2 onboardings")

    page.locator("#q").fill("")
    page.locator("form.search button").click()
    page.get_by_role("link", name="Last change (UTC)").click()
    page.wait_for_load_state()
    heading = page.locator("th", has=page.get_by_role("link", name="Last change (UTC)"))
    assert heading.get_attribute("aria-sort") == "ascending"
    assert rows.locator("th").all_inner_texts() == ["acme", "beta"]
    page.get_by_role("link", name="Last change (UTC)").click()
    page.wait_for_load_state()
    assert heading.get_attribute("aria-sort") == "descending" and "(descending)" in heading.inner_text()
    assert rows.locator("th").all_inner_texts() == ["beta", "acme"]

    page.get_by_role("link", name="acme", exact=True).click()
    page.wait_for_load_state()
    assert page.url == server.url + "/ui/onboardings/acme"
    assert page.locator("#timeline-table tbody tr").count() == 14
    assert page.locator("#timeline-table tbody tr > :nth-child(7)").first.inner_text() == HOSTILE_ACTOR
    assert "Verification passed" in page.locator("#verify-result").inner_text()
    seen.keep(tmp_path, "ui-report")
    page.get_by_role("link", name="← All onboardings").click()
    page.wait_for_load_state()
    assert page.url == server.url + "/ui/"

    # Nothing but the pages themselves was requested, all from the server: no style, font, image or script.
    assert {kind for kind, _ in seen.requests} == {"document"}
    assert all(address.startswith(server.url + "/ui/") for _, address in seen.requests), seen.requests


def test_the_served_report_at_T_and_the_scope(visit: Any, served: tuple[Served, list[datetime]]) -> None:
    """?at= gives the verdict then; the pages need an audit token (bearer, as the JSON reads)."""
    server, times = served
    at = times[6] + timedelta(days=1)  # the first onboarding done, its key not yet expired
    auditor = visit(extra_http_headers={"Authorization": f"Bearer {server.tokens['auditor']}"})
    page = auditor.open(server.url + "/ui/onboardings/acme?at=" + at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert page.locator("#at").inner_text() == at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert page.locator("#state-at").inner_text() == "StoreIntegration, version 7"
    assert page.locator("#timeline-table tbody tr.after").count() == 7
    with server.client(server.tokens["auditor"]) as client:
        answered = client.get("/ui/onboardings/acme")
        refused = client.get("/ui/?sort=password")
        paths = client.get("/openapi.json").json()["paths"]
    assert "script-src" not in answered.headers["content-security-policy"]  # default-src 'none' forbids scripts
    assert answered.headers["content-security-policy"].startswith("default-src 'none'")
    assert answered.headers["cache-control"] == "no-store"
    assert refused.status_code == 422 and "not a column to sort by" in refused.json()["detail"]
    assert not [path for path in paths if path.startswith("/ui")]  # the pages are not part of the JSON API
    nobody = visit()
    assert nobody.page.goto(server.url + "/ui/").status == 401
    driver = visit(extra_http_headers={"Authorization": f"Bearer {server.tokens['magento-svc']}"})
    assert driver.page.goto(server.url + "/ui/onboardings/acme").status == 403
