"""The report and the list of onboardings as HTML: Jinja2 templates, autoescaped, self-contained.

A page carries its CSS and its SVG inline and loads nothing (a Content-Security-Policy meta
tag forbids it, so an archived report opened years later makes no request); it runs no
script, so it reads the same with JavaScript disabled and prints whole.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

import jinja2

from keytrail.reporting.listing import IndexView, build_index
from keytrail.reporting.model import ReportView, build_report, shown_time

if TYPE_CHECKING:
    from keytrail.engine import Engine

__all__ = ["CSP", "index_html", "render_index", "render_report", "report_html"]

# What a page may load: nothing but its own inline style and data: images. No script at all.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'"


def _when(iso: str | None) -> str:
    """An ISO time of the audit's dict as the page shows times (``2026-03-01 12:00:00 UTC``)."""
    return "" if not iso else shown_time(datetime.fromisoformat(iso))


@cache
def _environment() -> jinja2.Environment:
    """Built once: the templates ship inside the package (keytrail/reporting/templates)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("keytrail.reporting", "templates"),
        autoescape=True,  # every value is text unless it is Markup (the SVG we draw)
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the tests instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    return environment


def render_report(view: ReportView, *, served: bool = False) -> str:
    """The report page; ``served`` adds the link back to ``/ui/`` (a saved file links nowhere)."""
    return _environment().get_template("report.html.j2").render(report=view, served=served, csp=CSP)


def render_index(view: IndexView) -> str:
    """The list of onboardings served at ``/ui/``."""
    return _environment().get_template("index.html.j2").render(index=view, csp=CSP)


def report_html(
    engine: Engine, stream: str, at: datetime | None = None, *, served: bool = False, graphviz: bool = True
) -> tuple[str, ReportView]:
    """The report of ``stream`` at ``at`` as one HTML document, and its view (the CLI's exit code reads it)."""
    view = build_report(engine, stream, at, graphviz=graphviz)
    return render_report(view, served=served), view


def index_html(engine: Engine, *, sort: str = "stream", query: str = "") -> str:
    """The list of onboardings as one HTML document."""
    return render_index(build_index(engine, sort=sort, query=query))
