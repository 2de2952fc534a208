"""The documentation stays true: the site builds strictly and the check bites, the worked hash
example is what keytrail computes and writes, and the short README holds what the project
promises, every link of it resolving and every example of it running."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keytrail import Engine
from keytrail.events import GENESIS_HASH, canonical_json, event_hash

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"

pytest_plugins = ["pytester"]


def mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``make docs``'s build, without ``-q``: mkdocs counts the warnings --strict fails on only when it logs them."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_the_docs_build_strictly(tmp_path: Path) -> None:
    """Every page of docs/ is in mkdocs.yml's nav and every link and anchor between them resolves."""
    done = mkdocs_build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "event-log" / "index.html").is_file()


def _break_a_link(docs: Path) -> None:
    with (docs / "cli.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [the old page](no-such-page.md).\n")


def _break_an_anchor(docs: Path) -> None:
    with (docs / "index.md").open("a", encoding="utf-8") as page:
        page.write("\nSee [the digest](event-log.md#no-such-section).\n")


def _remove_a_page(docs: Path) -> None:
    (docs / "postgres.md").unlink()


def _leave_a_page_out_of_the_nav(docs: Path) -> None:
    (docs / "orphan.md").write_text("# An orphan\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (_break_a_link, "no-such-page.md"),
        (_break_an_anchor, "no-such-section"),
        (_remove_a_page, "postgres.md"),
        (_leave_a_page_out_of_the_nav, "orphan.md"),
    ],
    ids=["broken-link", "broken-anchor", "missing-page", "page-outside-the-nav"],
)
def test_the_strict_build_fails_on_a_damaged_copy(tmp_path: Path, damage: Callable[[Path], None], named: str) -> None:
    """A copy of the docs with one defect fails ``mkdocs build --strict``, naming it: the check bites."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    damage(tmp_path / "docs")
    done = mkdocs_build(tmp_path, tmp_path / "site")
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Aborted with" in said and named in said


def test_make_test_builds_the_docs_strictly() -> None:
    """`make test` (what CI runs) depends on `make docs`, which builds with --strict and never -q."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test: .*\bdocs\b", makefile, re.MULTILINE)
    recipe = re.search(r"^docs: .*\n\t(.*)$", makefile, re.MULTILINE)
    assert recipe is not None and "mkdocs build --strict" in recipe.group(1) and " -q" not in recipe.group(1)


# The worked hash example of docs/event-log.md.

EXAMPLE_BLOCK = re.compile(r"^prev_hash = (?P<prev>\w+)\ncanonical = (?P<canonical>.*)\nhash      = (?P<hash>\w+)\n\Z")


def documented_events() -> list[dict[str, str]]:
    page = (DOCS / "event-log.md").read_text(encoding="utf-8")
    section = page.split("## A worked hash example", 1)[1].split("\n## ", 1)[0]
    found = [m.groupdict() for block in fenced(section, "text") if (m := EXAMPLE_BLOCK.match(block))]
    assert len(found) == 2, "docs/event-log.md's worked example should show two events"
    return found


def test_the_worked_hash_example_recomputes() -> None:
    """Each documented hash is sha256(prev_hash + canonical JSON), the JSON is canonical, and event 2 chains to event 1."""
    first, second = documented_events()
    assert first["prev"] == GENESIS_HASH
    assert second["prev"] == first["hash"]
    for event in (first, second):
        body = json.loads(event["canonical"])
        assert canonical_json(body) == event["canonical"].encode("utf-8")
        assert hashlib.sha256((event["prev"] + event["canonical"]).encode("utf-8")).hexdigest() == event["hash"]
        assert event_hash(event["prev"], body) == event["hash"]


def _write_the_example(db: Path) -> Engine:
    instant = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    engine = Engine.open(f"sqlite:///{db}", clock=lambda: instant)
    engine.access("acme", actor="magento-admin")
    engine.save_config("acme", key="kt_live_0123456789abcdef", actor="magento-admin")
    return engine


def test_the_engine_writes_the_documented_events(tmp_path: Path) -> None:
    """The page's two events are the ones keytrail writes for the story it tells, byte for byte."""
    with _write_the_example(tmp_path / "keytrail.db") as engine:
        written = [
            {"prev": e.prev_hash, "canonical": canonical_json(e.hashed_fields()).decode("utf-8"), "hash": e.hash}
            for e in engine.events("acme")
        ]
    assert written == documented_events()


def test_the_documented_recipe_checks_an_exported_row(tmp_path: Path) -> None:
    """The page's Python recipe, run on each line of a real ``export --format jsonl``."""
    with _write_the_example(tmp_path / "keytrail.db"):
        pass
    exported = subprocess.run(
        [sys.executable, "-m", "keytrail", "--db", f"sqlite:///{tmp_path}/keytrail.db", "export", "--format", "jsonl"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    page = (DOCS / "event-log.md").read_text(encoding="utf-8")
    recipe = next(block for block in fenced(page, "python") if "canonical_json(body)" in block)
    assert len(exported) == 2
    for line in exported:
        exec(compile(recipe, "docs/event-log.md", "exec"), {"line": line})  # noqa: S102 - the documented recipe itself


# The short README.


def _slug(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc) gives a heading: lower case, words joined by hyphens."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_every_link_of_the_readme_resolves() -> None:
    """mkdocs does not build the README, so its relative links and anchors into docs/ are checked here."""
    readme = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    relative = [link for link in links if "://" not in link]
    assert "docs/index.md" in relative
    broken = []
    for link in relative:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        if not target.is_file():
            broken.append(link)
        elif anchor:
            headings = re.findall(r"^#{1,6} (.+)$", target.read_text(encoding="utf-8"), re.MULTILINE)
            if anchor not in {_slug(heading) for heading in headings}:
                broken.append(link)
    assert broken == []


def test_the_readme_keeps_what_the_project_promises() -> None:
    """What it is, the two commands, a first step for each user, the CLI, the Python API, PostgreSQL, the figures."""
    readme = README.read_text(encoding="utf-8")
    for needed in (
        "make demo",
        "make test",
        "**Backend services**",
        "**Auditors**",
        "**Test suites**",
        "postgresql+psycopg://",
        "## Performance",
    ):
        assert needed in readme
    for page in sorted(DOCS.glob("*.md")):
        assert f"](docs/{page.name})" in readme, f"the README does not link to docs/{page.name}"
    assert len(readme.splitlines()) < 150, "the README is the short version; the reference lives in docs/"


def test_the_readme_figures_are_the_performance_page_figures() -> None:
    """Each row of the README's benchmark table is a row of docs/performance.md, so the two cannot disagree."""
    section = README.read_text(encoding="utf-8").split("## Performance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    page = set((DOCS / "performance.md").read_text(encoding="utf-8").splitlines())
    assert len(rows) >= 4
    assert [row for row in rows if row not in page] == []


def test_the_readme_python_taste_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's first Python block, run as written in an empty folder."""
    monkeypatch.chdir(tmp_path)
    taste = fenced(README.read_text(encoding="utf-8"), "python")[0]
    exec(compile(taste, "README.md", "exec"), {})  # noqa: S102 - the README's example itself
    assert (tmp_path / "keytrail.db").is_file()


def test_the_readme_cli_taste_runs(tmp_path: Path) -> None:
    """Each ``keytrail`` line of the README's command-line block exits 0; the first prints what its comment says."""
    block = next(b for b in fenced(README.read_text(encoding="utf-8"), "sh") if "export KEYTRAIL_DATABASE_URL" in b)
    url = re.search(r"export KEYTRAIL_DATABASE_URL=(\S+)", block)
    assert url is not None
    env = {**os.environ, "KEYTRAIL_DATABASE_URL": url.group(1)}
    lines = [line.split("  #", 1) for line in block.splitlines() if line.startswith("keytrail ")]
    assert len(lines) >= 4
    for n, (command, *comment) in enumerate(lines):
        done = subprocess.run(
            [sys.executable, "-m", "keytrail", *shlex.split(command)[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, (command, done.stderr)
        if n == 0:
            assert done.stdout.strip() == comment[0].strip()


def test_the_readme_test_taste_passes(pytester: pytest.Pytester) -> None:
    """The README's pytest example, as a user's test file with only keytrail installed."""
    pytester.makepyfile(test_taste=fenced(README.read_text(encoding="utf-8"), "python")[1])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
