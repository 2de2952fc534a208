"""The auditor's report as data: what the page shows, built from the engine's public results only.

Every section is computed on its own, and a section that cannot be (a row too damaged to read,
a digest refused) shows the error in its place instead of taking the whole report down: a
report on a tampered log is when an auditor needs it most.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keytrail import inputs
from keytrail.errors import KeytrailError, UnknownOnboarding
from keytrail.events import RecordedEvent, iso_utc
from keytrail.reporting.diagram import DiagramView, draw_path
from keytrail.states import State, Trigger

if TYPE_CHECKING:
    from keytrail.engine import Engine

__all__ = [
    "HASH_PREFIX",
    "DigestView",
    "ProblemView",
    "ReportView",
    "TimelineRow",
    "VerdictView",
    "VerifyView",
    "build_report",
    "shown_time",
]

# Enough of a hash to find its row again (48 bits), short enough for a table column.
HASH_PREFIX = 12
_STATES = {state.value: state for state in State}
_TRIGGERS = {trigger.value: trigger for trigger in Trigger}


def shown_time(value: datetime | None) -> str:
    """A time as the page shows it: UTC to the second, the zone written out."""
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class TimelineRow:
    """One event of the timeline; ``after_at`` marks an event dated after the report's instant T."""

    step: int
    version: int
    occurred_at: str
    occurred_iso: str
    trigger: str
    source: str
    dest: str
    reason: str
    actor: str
    hash: str
    after_at: bool

    @property
    def hash_prefix(self) -> str:
        return self.hash[:HASH_PREFIX]


@dataclass(frozen=True)
class ProblemView:
    """A problem an audit found, as a line of the page."""

    version: int | None
    kind: str
    message: str


@dataclass(frozen=True)
class VerifyView:
    """The result of ``verify`` for the stream: ``ok`` decides the colour and the words."""

    ok: bool
    events: int
    problems: list[ProblemView]


@dataclass(frozen=True)
class DigestView:
    """The digest of the whole log when the report was made, or why it could not be computed."""

    token: str | None
    events: int
    error: str | None = None


@dataclass(frozen=True)
class VerdictView:
    """The state and the key verdict at T: the audit API's ``as_dict``, for a template (or the error that stopped it)."""

    at: str
    state: str
    reason: str | None
    version: int
    event: dict[str, Any] | None
    key: dict[str, Any] | None
    status: str
    message: str
    expires_at: str | None
    revoked_at: str | None
    revoked_by: str | None = None
    authority_events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[ProblemView] = field(default_factory=list)
    error: str | None = None

    @property
    def key_ok(self) -> bool:
        return self.status == "valid"


@dataclass(frozen=True)
class ReportView:
    """Everything one report page shows, ready for a template (no engine object leaks into it)."""

    stream: str
    generated_at: str
    at: str
    at_given: bool
    current_state: str
    timeline: list[TimelineRow]
    timeline_error: str | None
    diagram: DiagramView
    verdict: VerdictView
    verify: VerifyView
    digest: DigestView
    version: str


def _timeline(engine: Engine, stream: str) -> tuple[list[RecordedEvent], str | None]:
    """The stream's rows as stored (names as text, so a row with a name keytrail does not know still shows)."""
    rows: list[RecordedEvent] = []
    try:
        rows.extend(engine.events(stream))
    except KeytrailError as exc:
        shown = f" past version {rows[-1].version}" if rows else ""
        return rows, f"The timeline cannot be read{shown}: {exc}"
    if not rows:
        engine.status(stream)  # raises UnknownOnboarding for a stream with no events and no projection
    return rows, None


def _row(step: int, event: RecordedEvent, at: datetime) -> TimelineRow:
    return TimelineRow(
        step,
        event.version,
        shown_time(event.occurred_at),
        iso_utc(event.occurred_at),
        event.trigger,
        event.source,
        event.dest,
        event.reason or "",
        event.actor or "",
        event.hash,
        event.occurred_at > at,
    )


def _steps(rows: Iterable[RecordedEvent]) -> list[tuple[Trigger, State, State] | None]:
    """Each row as a step of the machine, None for one naming a trigger or state keytrail does not know."""
    found: list[tuple[Trigger, State, State] | None] = []
    for row in rows:
        trigger, source, dest = _TRIGGERS.get(row.trigger), _STATES.get(row.source), _STATES.get(row.dest)
        found.append(None if trigger is None or source is None or dest is None else (trigger, source, dest))
    return found


def _problems(problems: Iterable[Any]) -> list[ProblemView]:
    return [ProblemView(p.version, p.kind, p.message) for p in problems]


def _verify(engine: Engine, stream: str) -> VerifyView:
    try:
        report = engine.verify(stream)
    except UnknownOnboarding:
        raise
    except KeytrailError as exc:
        return VerifyView(False, 0, [ProblemView(None, type(exc).__name__, str(exc))])
    return VerifyView(report.ok, report.events, _problems(report.problems))


def _digest(engine: Engine) -> DigestView:
    from keytrail.engine import reports

    try:
        found = reports.digest(engine)
    except KeytrailError as exc:
        return DigestView(None, 0, f"The digest of the log cannot be computed: {exc}")
    return DigestView(found.token, found.events)


def _verdict_view(engine: Engine, stream: str, at: datetime) -> VerdictView:
    """The state and the saved key's verdict at ``at``: ``Engine.audit`` (issue 14), from the log alone."""
    try:
        found = engine.audit(stream, at=at).as_dict()
    except UnknownOnboarding:
        raise
    except KeytrailError as exc:
        return VerdictView(iso_utc(at), "", None, 0, None, None, "unknown", "", None, None, error=str(exc))
    verdict = found["verdict"]
    return VerdictView(
        at=found["at"],
        state=found["state"],
        reason=found["reason"],
        version=found["version"],
        event=found["event"],
        key=found["key"],
        status=verdict["status"],
        message=verdict["message"],
        expires_at=verdict["expires_at"],
        revoked_at=verdict["revoked_at"],
        revoked_by=verdict["revoked_by"],
        authority_events=found["authority_events"],
        problems=[ProblemView(p["version"], p["kind"], f"{p['stream']}: {p['message']}") for p in found["problems"]],
    )


def build_report(engine: Engine, stream: str, at: datetime | None = None, *, graphviz: bool = True) -> ReportView:
    """The report of ``stream`` as it stood at ``at`` (default: now), its log verified and digested now.

    ``graphviz=False`` draws the plainer diagram even where Graphviz is installed (it is what
    the report falls back to without it).
    """
    from keytrail import __version__

    stream = inputs.check_stream_id(stream)
    now = engine.now()
    instant = now if at is None else inputs.check_instant("at", at)
    rows, timeline_error = _timeline(engine, stream)
    timeline = [_row(step, row, instant) for step, row in enumerate(rows, start=1)]
    verify = _verify(engine, stream)
    current = rows[-1].dest if rows else State.Unverified.value
    return ReportView(
        stream=stream,
        generated_at=shown_time(now),
        at=shown_time(instant),
        at_given=at is not None,
        current_state=current,
        timeline=timeline,
        timeline_error=timeline_error,
        diagram=draw_path(_steps(rows), current, graphviz=graphviz),
        verdict=_verdict_view(engine, stream, instant),
        verify=verify,
        digest=_digest(engine),
        version=__version__,
    )
