"""``make screenshots``: the README's picture of the auditor's report, taken in Debian's chromium.

Usage: python scripts/screenshots.py REPORT.html OUT.png   (the Makefile passes the demo's report)

The browser is the one the browser tests drive (tests/browser.py): the system's chromium through
Playwright, headless, JavaScript off, nothing fetched; the page is shot whole at a laptop's width.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import chromium, find_chromium  # noqa: E402  (the one way the project starts its browser)

WIDTH = 1100


def main(report: Path, out: Path) -> int:
    executable = find_chromium()
    if executable is None:
        print("screenshots: Debian's chromium is not installed; `sudo make setup` installs it.", file=sys.stderr)
        return 2
    if not report.is_file():
        print(f"screenshots: {report} does not exist; `make demo` writes it.", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    with chromium(executable) as browser:
        context = browser.new_context(java_script_enabled=False, viewport={"width": WIDTH, "height": 900})
        page = context.new_page()
        page.goto(report.resolve().as_uri())
        page.screenshot(path=str(out), full_page=True)
        context.close()
    print(f"screenshots: {out} (the whole of {report}, {WIDTH} px wide)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python scripts/screenshots.py REPORT.html OUT.png", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
