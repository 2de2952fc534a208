"""Diagrams of the onboarding machine, generated from :data:`keytrail.states.TABLE`.

The Mermaid and DOT text is written here from the table rather than through
``transitions``' ``GraphMachine``: its Mermaid backend cannot style edges (so a path could
not be highlighted), its DOT backend needs the ``graphviz`` Python package, and its labels
show guard callables instead of the table's guards. SVG is Graphviz ``dot`` run on the DOT
text. Output is deterministic (table order), so the committed files in ``diagrams/`` can be
checked by a test.

Rows whose sources cover nearly every state (``access``, ``save_config``) are drawn once,
from a dashed "any state" node, instead of as eight edges each: the diagram stays readable
and still shows every row of the table.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from keytrail.errors import KeytrailError
from keytrail.states import TABLE, Guard, Row, State, Trigger, initial_state
from keytrail.states.machine import compiled

__all__ = [
    "FORMATS",
    "DiagramFormat",
    "GraphvizMissing",
    "Highlight",
    "dot",
    "mermaid",
    "normalize_svg",
    "render",
    "svg",
]

DiagramFormat = Literal["mermaid", "dot", "svg"]
FORMATS: tuple[DiagramFormat, ...] = ("mermaid", "dot", "svg")

# A row from at least this many states is drawn from a pseudo-node ("any state ...").
_WIDE = len(State) - 2
_START = "start"
_GUARD_LABEL = {Guard.key_valid: "key valid", Guard.key_not_valid: "key not valid"}
_PATH_COLOUR = "#1d4ed8"
_CURRENT_COLOUR = "#b45309"


class GraphvizMissing(KeytrailError):
    """SVG needs Graphviz's ``dot`` program, which is not installed."""


@dataclass(frozen=True)
class Highlight:
    """The steps an onboarding took (trigger, source, dest) and where it stands now."""

    steps: tuple[tuple[Trigger, State, State], ...]
    current: State

    @classmethod
    def from_events(cls, events: Iterable[tuple[Trigger, State, State]]) -> Highlight:
        """Build a highlight from ``(trigger, source, dest)`` triples, oldest first."""
        steps = tuple(events)
        return cls(steps, steps[-1][2] if steps else initial_state())


@dataclass
class _Edge:
    source: str
    dest: str
    labels: list[str] = field(default_factory=list)
    taken: bool = False


@dataclass
class _Graph:
    """The drawable graph: nodes (id -> label, pseudo?) and merged edges, in table order."""

    nodes: dict[str, tuple[str, bool]]
    edges: list[_Edge]
    visited: set[str]
    current: str | None


def _pseudo(row: Row) -> tuple[str, str] | None:
    """The pseudo-node (id, label) a wide row is drawn from, or None to draw it from each source."""
    if len(row.sources) < _WIDE:
        return None
    missing = [s.value for s in State if s not in row.sources]
    if not missing:
        return "any_state", "any state"
    return "any_state_but_" + "_".join(missing), "any state but " + ", ".join(missing)


def _label(row: Row) -> str:
    return row.trigger.value + (f" [{_GUARD_LABEL[row.guard]}]" if row.guard is not None else "")


def _row_of(trigger: Trigger, source: State, dest: State) -> Row | None:
    """The table row a recorded step went through, as the compiled machine took it (None: no step of it)."""
    for valid in (True, False):
        decision = compiled().decisions.get((trigger, source, valid))
        if decision is not None and decision.dest is dest:
            return decision.row
    return None


def _graph(highlight: Highlight | None) -> _Graph:
    nodes: dict[str, tuple[str, bool]] = {s.value: (s.value, False) for s in State}
    edges: dict[tuple[str, str], _Edge] = {}
    drawn_from: dict[Row, list[str]] = {}
    for row in TABLE:
        pseudo = _pseudo(row)
        if pseudo is not None:
            nodes.setdefault(pseudo[0], (pseudo[1], True))
            sources = [pseudo[0]]
        else:
            sources = [s.value for s in row.sources]
        drawn_from[row] = sources
        for source in sources:
            edge = edges.setdefault((source, row.dest.value), _Edge(source, row.dest.value))
            edge.labels.append(_label(row))
    visited: set[str] = set()
    current: str | None = None
    if highlight is not None:
        visited.add(initial_state().value)
        for trigger, step_source, dest in highlight.steps:
            taken = _row_of(trigger, step_source, dest)
            visited.update((step_source.value, dest.value))
            if taken is None:
                continue  # an illegal recorded step: verify reports it; the diagram has no edge for it
            drawn = drawn_from[taken][0] if _pseudo(taken) is not None else step_source.value
            visited.add(drawn)
            edges[(drawn, dest.value)].taken = True
        current = highlight.current.value
    return _Graph(nodes, list(edges.values()), visited, current)


def mermaid(highlight: Highlight | None = None) -> str:
    """The machine as a Mermaid flowchart; with ``highlight``, the path taken and the current state marked."""
    graph = _graph(highlight)
    lines = [
        "flowchart LR",
        "    classDef stateNode fill:#ffffff,stroke:#333333",
        "    classDef anyState fill:#f3f4f6,stroke:#6b7280,stroke-dasharray:4 3",
        f"    classDef visited fill:#dbeafe,stroke:{_PATH_COLOUR},stroke-width:2px",
        f"    classDef current fill:#fde68a,stroke:{_CURRENT_COLOUR},stroke-width:3px",
        f"    {_START}((start))",
    ]
    for node_id, (label, pseudo) in graph.nodes.items():
        lines.append(f'    {node_id}[/"{label}"/]' if pseudo else f'    {node_id}("{label}")')
    lines.append(f"    {_START} --> {initial_state().value}")
    taken: list[int] = [0] if highlight is not None else []
    for index, edge in enumerate(graph.edges, start=1):
        lines.append(f'    {edge.source} -->|"{" / ".join(edge.labels)}"| {edge.dest}')
        if edge.taken:
            taken.append(index)
    plain = [n for n, (_, pseudo) in graph.nodes.items() if not pseudo]
    pseudo_nodes = [n for n, (_, pseudo) in graph.nodes.items() if pseudo]
    lines.append(f"    class {','.join(plain)} stateNode")
    lines.append(f"    class {','.join(pseudo_nodes)} anyState")
    if highlight is not None:
        visited = [n for n in graph.nodes if n in graph.visited and n != graph.current]
        if visited:
            lines.append(f"    class {','.join(visited)} visited")
        lines.append(f"    class {graph.current} current")
        lines.append(f"    linkStyle {','.join(map(str, taken))} stroke:{_PATH_COLOUR},stroke-width:3px")
    return "\n".join(lines) + "\n"


def _dot_attrs(attrs: dict[str, str]) -> str:
    return "[" + ", ".join(f'{k}="{v}"' for k, v in attrs.items()) + "]"


def dot(highlight: Highlight | None = None) -> str:
    """The machine as Graphviz DOT; with ``highlight``, the path taken and the current state marked."""
    graph = _graph(highlight)
    lines = [
        "digraph onboarding {",
        '    graph [rankdir="LR", fontname="Helvetica", nodesep="0.4", ranksep="0.7"];',
        '    node [shape="box", style="rounded,filled", fillcolor="#ffffff", color="#333333", fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize="10", color="#555555"];',
        f'    {_START} [shape="circle", label="start", fontsize="9", width="0.5", fixedsize="true"];',
    ]
    for node_id, (label, pseudo) in graph.nodes.items():
        attrs = {"label": label}
        if pseudo:
            attrs.update(style="dashed,filled", fillcolor="#f3f4f6", color="#6b7280", shape="note")
        if node_id == graph.current:
            attrs.update(fillcolor="#fde68a", color=_CURRENT_COLOUR, penwidth="3")
        elif node_id in graph.visited:
            attrs.update(fillcolor="#dbeafe", color=_PATH_COLOUR, penwidth="2")
        lines.append(f"    {node_id} {_dot_attrs(attrs)};")
    start_attrs = {"color": _PATH_COLOUR, "penwidth": "3"} if highlight is not None else {}
    lines.append(
        f"    {_START} -> {initial_state().value}" + (f" {_dot_attrs(start_attrs)}" if start_attrs else "") + ";"
    )
    for edge in graph.edges:
        attrs = {"label": "\\n".join(edge.labels)}
        if edge.taken:
            attrs.update(color=_PATH_COLOUR, fontcolor=_PATH_COLOUR, penwidth="3")
        lines.append(f"    {edge.source} -> {edge.dest} {_dot_attrs(attrs)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(highlight: Highlight | None = None) -> str:
    """The DOT diagram laid out by Graphviz ``dot``; raises :class:`GraphvizMissing` without it."""
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing(
            "SVG needs Graphviz's dot program, which is not installed; install the graphviz package "
            "(sh scripts/system-deps.sh as root) or use --format mermaid or dot."
        )
    done = subprocess.run([program, "-Tsvg"], input=dot(highlight), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GraphvizMissing(f"Graphviz dot failed with exit code {done.returncode}: {done.stderr.strip()}")
    return done.stdout


_COMMENT = re.compile(r"<!--.*?-->\n?", re.DOTALL)


def normalize_svg(text: str) -> str:
    """SVG without comments (Graphviz writes its version in one), to compare layouts across installs."""
    return _COMMENT.sub("", text)


def render(fmt: DiagramFormat, highlight: Highlight | None = None) -> str:
    """The diagram in one of :data:`FORMATS`."""
    if fmt == "mermaid":
        return mermaid(highlight)
    if fmt == "dot":
        return dot(highlight)
    if fmt == "svg":
        return svg(highlight)
    raise KeytrailError(f"{fmt!r} is not a diagram format; use one of {', '.join(FORMATS)}.")
