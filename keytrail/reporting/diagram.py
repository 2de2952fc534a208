"""The report's diagram: the machine with the onboarding's path numbered, as inline SVG.

With Graphviz, it is the project's own DOT (:func:`keytrail.diagrams.dot` with ``numbered``)
laid out by ``dot``. Without it, the report still works: a plainer SVG drawn here, the states
as boxes in a column (each saying which steps entered it and how often, the current one
labelled) beside the numbered list of steps. Either way the current state is named in words,
not only coloured, and nothing in the SVG comes from the log's free text (actors, ids): only
the machine's own names and step numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from markupsafe import Markup, escape

from keytrail import diagrams
from keytrail.states import State, Trigger

__all__ = ["DiagramView", "draw_path"]

Step = tuple[Trigger, State, State]
DrawnBy = Literal["graphviz", "plain"]

_PROLOG = re.compile(r"<\?xml.*?\?>\s*|<!DOCTYPE.*?>\s*|<!--.*?-->\s*", re.DOTALL)
_SIZE = re.compile(r'\s(width|height)="([\d.]+)pt"')
_PATH = "#1d4ed8"
_CURRENT = "#b45309"


@dataclass(frozen=True)
class DiagramView:
    """The SVG to inline (safe markup), who drew it, and the path in words for the caption."""

    svg: Markup
    drawn_by: DrawnBy
    steps: int
    current: str


def _inline(svg: str, label: str) -> Markup:
    """Graphviz's SVG document as an element for HTML: no prolog, one CSS pixel per point (CSS shrinks it to
    fit a narrower page), labelled."""
    body = _PROLOG.sub("", svg).strip()
    start = body.index("<svg")
    end = body.index(">", start)
    tag = _SIZE.sub(lambda m: f' {m.group(1)}="{round(float(m.group(2)))}"', body[start:end])
    tag += f' class="diagram" role="img" aria-label="{escape(label)}"'
    return Markup(body[:start] + tag + body[end:])  # noqa: S704  (Graphviz's output of our own DOT: table names and numbers)


def _text(x: float, y: float, content: str, **attrs: str) -> str:
    extra = "".join(f' {name.replace("_", "-")}="{escape(value)}"' for name, value in attrs.items())
    return f'<text x="{x:g}" y="{y:g}"{extra}>{escape(content)}</text>'


def _plain(steps: Sequence[Step | None], current: str, label: str) -> Markup:
    """States as boxes in a column, each with the steps that entered it, beside the numbered steps."""
    entered: dict[str, list[int]] = {state.value: [] for state in State}
    for number, step in enumerate(steps, start=1):
        if step is not None:
            entered[step[2].value].append(number)
    box_w, box_h, gap, left, top = 250, 46, 14, 10, 30
    list_x, line_h = left + box_w + 40, 20
    parts = [_text(left, 18, "States", font_weight="bold")]
    for index, state in enumerate(State):
        y = top + index * (box_h + gap)
        numbers = entered[state.value]
        is_current = state.value == current
        stroke, width, fill = (_CURRENT, 4, "#fde68a") if is_current else ("#333333", 1, "#ffffff")
        if numbers and not is_current:
            stroke, width, fill = _PATH, 2, "#dbeafe"
        parts.append(
            f'<g class="state{" current" if is_current else ""}" data-state="{state.value}">'
            f'<rect x="{left}" y="{y}" width="{box_w}" height="{box_h}" rx="8" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="{width}"/>'
        )
        name = state.value + (" (current)" if is_current else "")
        parts.append(_text(left + 10, y + 19, name, font_weight="bold" if is_current else "normal"))
        if state is State.Unverified and not numbers:
            parts.append(_text(left + 10, y + 37, "where every onboarding starts", font_size="12"))
        if numbers:
            shown = ", ".join(f"#{n}" for n in numbers)
            times = f" ({len(numbers)}x)" if len(numbers) > 1 else ""
            parts.append(_text(left + 10, y + 37, f"entered at {shown}{times}", font_size="12"))
        parts.append("</g>")
    parts.append(_text(list_x, 18, "Steps, in order", font_weight="bold"))
    for number, step in enumerate(steps, start=1):
        words = (
            "a step keytrail does not know" if step is None else f"{step[0].value}: {step[1].value} -> {step[2].value}"
        )
        parts.append(_text(list_x, top + 12 + (number - 1) * line_h, f"#{number} {words}", font_size="13"))
    height = max(top + len(State) * (box_h + gap), top + 12 + len(steps) * line_h) + 10
    width = list_x + 380
    return Markup(  # noqa: S704  (every text above went through escape())
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" class="diagram plain" role="img" '
        f'aria-label="{escape(label)}" font-family="Helvetica, Arial, sans-serif" font-size="14">'
        + "".join(parts)
        + "</svg>"
    )


def draw_path(steps: Sequence[Step | None], current: str, *, graphviz: bool = True) -> DiagramView:
    """The machine with ``steps`` numbered in order and ``current`` marked; Graphviz when asked and installed.

    ``steps`` holds None for a recorded step whose names keytrail does not know (a damaged row):
    it keeps its number in the plain drawing's list, and has no box.
    """
    label = f"The onboarding machine with the path of {len(steps)} steps numbered; current state: {current}."
    # A step keytrail cannot name would shift Graphviz's numbers off the timeline's: the plain drawing keeps them.
    if graphviz and None not in steps:
        known = [step for step in steps if step is not None]
        marked = diagrams.Highlight.from_events(known)
        state = next((s for s in State if s.value == current), None)
        if state is not None:
            marked = diagrams.Highlight(marked.steps, state)
        try:
            drawn = diagrams.svg(marked, numbered=True, rankdir="TB")
        except diagrams.GraphvizMissing:
            pass  # no Graphviz here: the plainer diagram below still tells the whole path
        else:
            return DiagramView(_inline(drawn, label), "graphviz", len(steps), current)
    return DiagramView(_plain(steps, current, label), "plain", len(steps), current)
