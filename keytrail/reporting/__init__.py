"""The auditor's page: one onboarding's story (timeline, path, verdict at T, verify, digest) as HTML.

A face-side module like the CLI's rendering: it reads the engine's public results and turns
them into a view model (:mod:`~keytrail.reporting.model`, :mod:`~keytrail.reporting.listing`),
a diagram (:mod:`~keytrail.reporting.diagram`) and self-contained HTML
(:mod:`~keytrail.reporting.html`, Jinja2 templates with autoescaping). ``keytrail report``
writes it to a file; ``keytrail serve`` serves it under ``/ui/``. Nothing below the faces
imports it (a contract in ``make lint``).
"""

from keytrail.reporting.diagram import DiagramView, draw_path
from keytrail.reporting.html import CSP, index_html, render_index, render_report, report_html
from keytrail.reporting.listing import IndexRow, IndexView, build_index
from keytrail.reporting.model import ReportView, TimelineRow, VerdictView, VerifyView, build_report

__all__ = [
    "CSP",
    "DiagramView",
    "IndexRow",
    "IndexView",
    "ReportView",
    "TimelineRow",
    "VerdictView",
    "VerifyView",
    "build_index",
    "build_report",
    "draw_path",
    "index_html",
    "render_index",
    "render_report",
    "report_html",
]
