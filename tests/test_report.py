"""The auditor's report (issue 15) as data and as HTML: the view model, the diagrams, the CLI, the list.

What a person sees in a browser is tests/test_report_browser.py; here, what the page is made of,
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keytrail import Engine, State, Trigger, diagrams
from keytrail.cli import app
from keytrail.engine import reports
from keytrail.errors import InvalidInput
from keytrail.reporting import build_index, build_report, report_html
from keytrail.reporting.diagram import draw_path
from tests.conftest import MovableClock
from tests.helpers import EMAIL, PASSWORD, drive_to, ensure_account, skip_outside_ci

runner = CliRunner()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/keytrail.db"


HOSTILE = "<script>alert('x')</script> & <b>bold</b>"


def _tamper(engine: Engine, statement: str) -> None:
    """Edit the log behind keytrail's back, as someone with write access to the database would."""
    with engine.database.write() as conn:
        conn.execute(sa.text(statement))


def _no_graphviz(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH with no program at all on it: ``dot`` is really not found (nothing about the drawing is faked)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


def _minute_by_minute(engine: Engine, clock: MovableClock, stream: str = "acme") -> None:
    """The source document's flow, a minute between commands, so that an instant T can fall between them."""
    ensure_account(engine)
    engine.access(stream)
    clock.advance(timedelta(minutes=1))
    engine.sign_in(stream, email=EMAIL, password=PASSWORD)
    clock.advance(timedelta(minutes=1))
    key = engine.generate_key(stream, description="Amazon Sales Channel").key
    clock.advance(timedelta(minutes=1))
    engine.copy_key(stream)
    clock.advance(timedelta(minutes=1))
    engine.save_config(stream, key=key)
    clock.advance(timedelta(minutes=1))
    engine.access(stream)
    clock.advance(timedelta(minutes=1))
    engine.proceed(stream)


def _expired_and_renewed(engine: Engine, clock: MovableClock) -> None:
    """acme: onboarded, a year and a day later its key expired, onboarded again (14 events, as the demo)."""
    drive_to(engine, "acme", State.StoreIntegration)
    clock.advance(timedelta(days=366))
    engine.access("acme", actor="omar")
    engine.sign_in("acme", email=EMAIL, password=PASSWORD)
    key = engine.generate_key("acme", description="Amazon Sales Channel (renewed)").key
    engine.save_config("acme", key=key)
    engine.access("acme")
    engine.proceed("acme")


def test_the_timeline_has_one_row_per_event_in_order(engine: Engine) -> None:
    """Every event, by version, with its time, trigger, states, reason, actor and hash prefix."""
    drive_to(engine, "acme", State.StoreIntegration)
    view = build_report(engine, "acme")
    history = engine.history("acme")
    assert [(r.step, r.version) for r in view.timeline] == [(n, n) for n in range(1, len(history) + 1)]
    assert [(r.trigger, r.source, r.dest) for r in view.timeline] == [
        (e.trigger.value, e.source.value, e.dest.value) for e in history
    ]
    assert view.timeline[0].reason == "missing"
    assert [r.hash_prefix for r in view.timeline] == [e.hash[:12] for e in history]
    assert view.current_state == "StoreIntegration"
    assert view.verify.ok and view.verify.events == len(history)
    assert view.digest.token == reports.digest(engine).token


def test_the_verdict_at_T_and_the_events_after_it(engine: Engine, clock: MovableClock) -> None:
    """At an instant between the two onboardings: the state then, the event behind it, the key then valid."""
    _expired_and_renewed(engine, clock)
    history = engine.history("acme")
    at = history[6].occurred_at + timedelta(days=1)  # StoreIntegration, before the expiry
    view = build_report(engine, "acme", at)
    verdict = view.verdict
    assert (verdict.state, verdict.version) == ("StoreIntegration", 7)
    assert verdict.event is not None and verdict.event["trigger"] == "proceed"
    assert [r.after_at for r in view.timeline] == [False] * 7 + [True] * (len(history) - 7)
    html, _ = report_html(engine, "acme", at)
    assert html.count("(after T)") == len(history) - 7
    lapsed = build_report(engine, "acme", history[6].occurred_at + timedelta(days=365, hours=12))
    assert (lapsed.verdict.state, lapsed.verdict.version) == ("StoreIntegration", 7)
    # The key saved then (replaced since) had expired by then: the audit reads it from the log (issue 14).
    assert lapsed.verdict.status == "expired" and lapsed.verdict.key is not None
    assert lapsed.verdict.key["key_id"] == history[2].data["key_id"]


def test_the_key_verdict_at_T(engine: Engine, clock: MovableClock) -> None:
    """The saved key missing before it was saved, valid after, expired a year later (the state still StoreIntegration)."""
    _minute_by_minute(engine, clock)
    history = engine.history("acme")
    assert [e.trigger.value for e in history][3:5] == ["copy_key", "save_config"]
    before = build_report(engine, "acme", history[3].occurred_at).verdict  # copied, not saved yet
    assert (before.state, before.version, before.status, before.key) == ("KeyCopied", 4, "missing", None)
    valid = build_report(engine, "acme").verdict
    assert (valid.status, valid.key_ok, valid.state, valid.version) == ("valid", True, "StoreIntegration", 7)
    clock.advance(timedelta(days=366))
    expired = build_report(engine, "acme").verdict
    assert (expired.status, expired.key_ok, expired.state) == ("expired", False, "StoreIntegration")
    assert "expired" in expired.message and expired.expires_at is not None
    html, _ = report_html(engine, "acme")
    assert '<span class="badge bad">expired</span>' in html


def test_a_revoked_key_says_by_whom_with_the_authoritys_events(engine: Engine, clock: MovableClock) -> None:
    """Revoked after T: valid at T; revoked at the report's now, with the revocation in the key's own events."""
    _minute_by_minute(engine, clock)
    key_id = engine.history("acme")[2].data["key_id"]
    clock.advance(timedelta(hours=1))
    before_revocation = clock.now
    clock.advance(timedelta(hours=1))
    engine.portal.revoke_key(key_id, actor="sec-team")
    revoked = build_report(engine, "acme").verdict
    assert (revoked.status, revoked.revoked_by, revoked.key_ok) == ("revoked", "sec-team", False)
    assert [e["trigger"] for e in revoked.authority_events] == ["key_generated", "key_revoked"]
    assert build_report(engine, "acme", before_revocation).verdict.status == "valid"
    html, _ = report_html(engine, "acme")
    assert '<table id="authority-table">' in html and f"<code>@key:{key_id}</code>" in html
    assert "by sec-team" in html


def test_the_numbered_dot_counts_repeats_and_names_the_current_state(engine: Engine, clock: MovableClock) -> None:
    """Each taken edge carries its step numbers (and 2x when taken twice); the current state says so in words."""
    _expired_and_renewed(engine, clock)
    marked = diagrams.Highlight.from_events(e.onboarding_step() for e in engine.history("acme"))
    text = diagrams.dot(marked, numbered=True)
    assert re.search(r'Prompted -> SignedIn \[label="sign_in\\nregister\\n#2, #9 \(2x\)"', text), text
    # An "any state" row's step is drawn from where the onboarding was, numbered.
    assert re.search(r'StoreIntegration -> Prompted \[label="access \[key not valid\]\\n#8"', text), text
    assert re.search(r'Unverified -> Prompted \[label="access \[key not valid\]\\n#1"', text), text
    assert 'StoreIntegration [label="StoreIntegration\\n(current)"' in text
    assert diagrams.dot(marked) == diagrams.dot(marked, numbered=False)  # the --highlight diagram is unchanged
    assert "(current)" not in diagrams.dot(marked) and not re.search(r"\\n#\d", diagrams.dot(marked))


def test_the_diagram_through_graphviz(engine: Engine) -> None:
    """With dot installed, the report inlines Graphviz's SVG of the numbered DOT, sized by CSS, labelled."""
    if shutil.which("dot") is None:
        skip_outside_ci("Graphviz's dot is not installed.")
    drive_to(engine, "acme", State.KeyCopied)
    view = build_report(engine, "acme")
    svg = str(view.diagram.svg)
    assert view.diagram.drawn_by == "graphviz"
    assert svg.startswith("<svg") and "<?xml" not in svg and "<!DOCTYPE" not in svg
    assert 'role="img"' in svg and "current state: KeyCopied" in svg
    assert re.search(r"<text[^>]*>\(current\)</text>", svg)
    assert re.search(r"<text[^>]*>#4</text>", svg)  # copy_key, the fourth step


def test_the_plain_diagram_without_graphviz(engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With no dot on PATH the report still has its diagram: boxes with the steps that entered them, the steps listed."""
    drive_to(engine, "acme", State.ConfigSaved)
    _no_graphviz(monkeypatch, tmp_path)
    view = build_report(engine, "acme")
    svg = str(view.diagram.svg)
    assert view.diagram.drawn_by == "plain"
    assert "ConfigSaved (current)" in svg
    assert "#1 access: Unverified -&gt; Prompted" in svg
    assert "#5 save_config: KeyCopied -&gt; ConfigSaved" in svg
    assert "entered at #2" in svg  # SignedIn
    html, _ = report_html(engine, "acme")
    assert "Drawn without Graphviz" in html


def test_the_plain_diagram_counts_repeats() -> None:
    """A state entered twice says at which steps and how often."""
    steps = [
        (Trigger.access, State.Unverified, State.Prompted),
        (Trigger.access, State.Prompted, State.Prompted),
    ]
    svg = str(draw_path(steps, "Prompted", graphviz=False).svg)
    assert "entered at #1, #2 (2x)" in svg and "Prompted (current)" in svg


def test_hostile_text_is_shown_as_text(engine: Engine) -> None:
    """An actor is free text: on the page it is escaped, never markup (the id cannot carry HTML at all)."""
    engine.access("acme", actor=HOSTILE)
    html, view = report_html(engine, "acme")
    assert view.timeline[0].actor == HOSTILE
    assert "<script>alert" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "<script" not in html  # the page has no script at all


def test_a_tampered_event_fails_verify_on_the_page(engine: Engine) -> None:
    """An actor rewritten in the database: the page says Verification failed and names the version."""
    drive_to(engine, "acme", State.StoreIntegration)
    _tamper(engine, "UPDATE events SET actor = 'mallory' WHERE stream_id = 'acme' AND version = 3")
    html, view = report_html(engine, "acme")
    assert not view.verify.ok
    assert [p.version for p in view.verify.problems] == [3]
    assert "Verification failed" in html and 'class="panel bad"' in html
    assert "version 3, " in html and "Verification passed" not in html
    assert view.timeline[2].actor == "mallory"  # the timeline shows what is stored


def test_a_row_keytrail_cannot_name_still_shows(engine: Engine) -> None:
    """A trigger rewritten to HTML: the row is in the timeline as text, verify fails, the diagram keeps the numbers."""
    drive_to(engine, "acme", State.KeyGenerated)
    _tamper(engine, "UPDATE events SET trigger = '<img src=x onerror=alert(1)>' WHERE version = 2")
    html, view = report_html(engine, "acme")
    assert view.timeline[1].trigger == "<img src=x onerror=alert(1)>"
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not view.verify.ok and "Verification failed" in html
    assert view.diagram.drawn_by == "plain" and "#2 a step keytrail does not know" in str(view.diagram.svg)


def test_no_secret_on_the_page(engine: Engine) -> None:
    """The saved key appears as its hint and a fingerprint prefix; neither the key nor the password is on the page."""
    key = drive_to(engine, "acme", State.StoreIntegration)
    assert key is not None
    html, view = report_html(engine, "acme")
    assert key not in html and PASSWORD not in html
    assert view.verdict.key is not None and view.verdict.key["hint"] == key[-4:]
    assert f"ending in <code>{key[-4:]}</code>" in html


def test_the_list_of_onboardings_sorts_and_searches(engine: Engine, clock: MovableClock) -> None:
    """Sorted by any column either way (links), filtered by a search over id, state, reason and key status."""
    drive_to(engine, "beta", State.StoreIntegration)
    clock.advance(timedelta(minutes=5))
    engine.access("alpha")
    clock.advance(timedelta(minutes=5))
    engine.access("gamma:1")
    assert [r.stream for r in build_index(engine).rows] == ["alpha", "beta", "gamma:1"]
    assert [r.stream for r in build_index(engine, sort="-stream").rows] == ["gamma:1", "beta", "alpha"]
    assert [r.stream for r in build_index(engine, sort="-updated").rows] == ["gamma:1", "alpha", "beta"]
    by_expiry = build_index(engine, sort="expires")
    assert by_expiry.rows[0].stream == "beta"  # the only key; the others have none and go last
    assert by_expiry.rows[0].key_status == "valid" and by_expiry.rows[1].key_status == "missing"
    found = build_index(engine, query="PROMPTED")
    assert [r.stream for r in found.rows] == ["alpha", "gamma:1"] and (found.matched, found.total) == (2, 3)
    assert build_index(engine, query="gamma").rows[0].link == "onboardings/gamma%3A1"
    heading = {c.key: c for c in build_index(engine, sort="state").columns}
    assert (heading["state"].aria_sort, heading["state"].href) == ("ascending", "?sort=-state")
    assert (heading["stream"].aria_sort, heading["stream"].href) == ("none", "?sort=stream")
    with pytest.raises(InvalidInput, match="not a column to sort by"):
        build_index(engine, sort="password")


# -- the command -----------------------------------------------------------------------------------------------


def test_keytrail_report_writes_one_self_contained_file(db_url: str, tmp_path: Path) -> None:
    """-o FILE gets the page, stdout stays empty; the page loads nothing and runs nothing."""
    with Engine.open(db_url) as engine:
        drive_to(engine, "acme", State.StoreIntegration)
    target = tmp_path / "report.html"
    done = runner.invoke(app, ["--db", db_url, "report", "acme", "--at", "2030-01-01", "-o", str(target)])
    assert (done.exit_code, done.stdout) == (0, ""), done.stderr
    html = target.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "2030-01-01 00:00:00 UTC" in html
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html)  # nothing to fetch from anywhere
    assert "default-src 'none'" in html.replace("&#39;", "'")


def test_keytrail_report_exits_1_on_a_tampered_log_and_still_writes(sqlite_db: str, tmp_path: Path) -> None:
    """As verify: exit 1 when the onboarding's events fail; the page, saying so, is written all the same."""
    with Engine.open(sqlite_db) as engine:
        drive_to(engine, "acme", State.Validated)
        _tamper(engine, "UPDATE events SET actor = 'mallory' WHERE version = 2")
    target = tmp_path / "report.html"
    done = runner.invoke(app, ["--db", sqlite_db, "report", "acme", "-o", str(target)])
    assert done.exit_code == 1, done.stderr
    assert "Verification failed" in target.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("report", "acme", "--at", "yesterday"), "--at 'yesterday' is not an ISO 8601 instant"),
        (("report", "nobody"), "no onboarding 'nobody'"),
        (("report", "<b>x</b>"), "is not a valid onboarding id"),
    ],
    ids=["bad instant", "unknown", "hostile id"],
)
def test_keytrail_report_refuses_bad_input(sqlite_db: str, tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    """One line on stderr, exit 2, no file written."""
    with Engine.open(sqlite_db) as engine:
        engine.access("acme")
    target = tmp_path / "report.html"
    done = runner.invoke(app, ["--db", sqlite_db, *args, "-o", str(target)])
    assert done.exit_code == 2 and words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not target.exists()


def test_the_demo_writes_its_report(tmp_path: Path) -> None:
    """The demo writes its report beside the database and names it in its output (make demo: --report)."""
    url = f"sqlite:///{tmp_path}/keytrail.db"
    done = runner.invoke(app, ["--db", url, "demo"])
    assert done.exit_code == 0, done.stderr
    target = tmp_path / "keytrail.report.html"  # named after the database, as the demo's other files
    assert "The auditor's report of acme-store" in done.stdout and str(target) in done.stdout.replace("\n", "")
    html = target.read_text(encoding="utf-8")
    assert html.count('<tr data-version="') + html.count('<tr class="after" data-version="') == 14


def test_a_row_too_damaged_to_read_leaves_the_rest_of_the_page(sqlite_db: str) -> None:
    """Data that is not JSON: the timeline stops before it and says why, verify and the digest say so, the page renders."""
    with Engine.open(sqlite_db) as engine:
        drive_to(engine, "acme", State.StoreIntegration)
        _tamper(engine, "UPDATE events SET data = 'not json' WHERE stream_id = 'acme' AND version = 3")
        html, view = report_html(engine, "acme")
    assert [row.version for row in view.timeline] == [1, 2]
    assert view.timeline_error is not None and "version 3" in view.timeline_error
    assert not view.verify.ok and view.verify.problems[0].version == 3
    assert view.digest.token is None and view.digest.error is not None
    assert "The timeline is incomplete." in html and "No digest." in html and "Verification failed" in html


def test_make_demo_writes_demo_output_report_html() -> None:
    """The Makefile's demo names demo-output/report.html, and make screenshots shoots that file."""
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text(encoding="utf-8")
    demo = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "demo --report demo-output/report.html" in demo
    shots = makefile.split("\nscreenshots:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/screenshots.py demo-output/report.html docs/img/report.png" in shots
