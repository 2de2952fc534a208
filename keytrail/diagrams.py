"""Diagrams of the onboarding machine, generated from :data:`keytrail.states.TABLE`.

The Mermaid and DOT text is written here from the table rather than through
``transitions``' ``GraphMachine``: its Mermaid backend cannot style edges (so a path could
not be highlighted), its DOT backend needs the ``graphviz`` Python package, and its labels
show guard callables instead of the table's guards. SVG is Graphviz ``dot`` run on the DOT
text. Output is deterministic (table order), so the committed files in ``diagrams/`` can be
checked by a test.

Graphviz's layout depends on more than the DOT: its version, and the fonts it finds (it
measures every label). :func:`layout_environment` names both, the fonts by a fingerprint of
how wide Graphviz lays out a fixed text in each font and size the diagram uses, and
:func:`write_committed` (``python -m keytrail.diagrams diagrams``) writes the committed files
with a record of the DOT and the environment the SVG was laid out in, so a test compares the
SVG only where the same layout is guaranteed, and checks everywhere that it was made from
today's DOT.

Rows whose sources cover nearly every state (``access``, ``save_config``) are drawn once,
from a dashed "any state" node, instead of as eight edges each: the diagram stays readable
and still shows every row of the table.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from keytrail.errors import KeytrailError
from keytrail.states import TABLE, Guard, Row, State, Trigger, initial_state
from keytrail.states.machine import compiled

__all__ = [
    "FORMATS",
    "DiagramFormat",
    "GraphvizMissing",
    "Highlight",
    "LayoutEnvironment",
    "dot",
    "dot_sha256",
    "layout_environment",
    "mermaid",
    "normalize_svg",
    "render",
    "svg",
    "write_committed",
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
    steps: list[int] = field(default_factory=list)  # the path's step numbers that went along it


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


def _graph(highlight: Highlight | None, *, numbered: bool = False) -> _Graph:
    nodes: dict[str, tuple[str, bool]] = {s.value: (s.value, False) for s in State}
    edges: dict[tuple[str, ...], _Edge] = {}
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
        for number, (trigger, step_source, dest) in enumerate(highlight.steps, start=1):
            taken = _row_of(trigger, step_source, dest)
            visited.update((step_source.value, dest.value))
            if taken is None:
                continue  # an illegal recorded step: verify reports it; the diagram has no edge for it
            if numbered and _pseudo(taken) is not None:
                # Numbered, the step is drawn from where the onboarding was: "any state" would hide it.
                key = (step_source.value, dest.value, trigger.value)
                edge = edges.setdefault(key, _Edge(step_source.value, dest.value, [_label(taken)]))
            else:
                drawn = drawn_from[taken][0] if _pseudo(taken) is not None else step_source.value
                visited.add(drawn)
                edge = edges[(drawn, dest.value)]
            edge.taken = True
            edge.steps.append(number)
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


def _numbers(steps: list[int]) -> str:
    """A taken edge's step numbers, and how often it was taken when more than once: ``#2, #9 (2x)``."""
    return ", ".join(f"#{n}" for n in steps) + (f" ({len(steps)}x)" if len(steps) > 1 else "")


def dot(highlight: Highlight | None = None, *, numbered: bool = False, rankdir: Literal["LR", "TB"] = "LR") -> str:
    """The machine as Graphviz DOT; with ``highlight``, the path taken and the current state marked.

    ``numbered`` (the auditor's report) writes on each taken edge the numbers of the steps that
    took it, draws a step of an "any state" row from the state it left, and labels the current
    state "(current)" as well as colouring it: order and repeats are read, not guessed. ``rankdir``
    ``TB`` lays the machine out top to bottom (the report's page is narrower than the diagram is wide).
    """
    graph = _graph(highlight, numbered=numbered)
    lines = [
        "digraph onboarding {",
        f'    graph [rankdir="{rankdir}", fontname="Helvetica", nodesep="0.4", ranksep="0.7"];',
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
            if numbered:
                attrs["label"] = f"{label}\\n(current)"
        elif node_id in graph.visited:
            attrs.update(fillcolor="#dbeafe", color=_PATH_COLOUR, penwidth="2")
        lines.append(f"    {node_id} {_dot_attrs(attrs)};")
    start_attrs = {"color": _PATH_COLOUR, "penwidth": "3"} if highlight is not None else {}
    lines.append(
        f"    {_START} -> {initial_state().value}" + (f" {_dot_attrs(start_attrs)}" if start_attrs else "") + ";"
    )
    for edge in graph.edges:
        attrs = {"label": "\\n".join(edge.labels + ([_numbers(edge.steps)] if numbered and edge.steps else []))}
        if edge.taken:
            attrs.update(color=_PATH_COLOUR, fontcolor=_PATH_COLOUR, penwidth="3")
        lines.append(f"    {edge.source} -> {edge.dest} {_dot_attrs(attrs)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_program() -> str:
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing(
            "SVG needs Graphviz's dot program, which is not installed; install the graphviz package "
            "(sh scripts/system-deps.sh as root) or use --format mermaid or dot."
        )
    return program


def _run_dot(args: list[str], source: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([_dot_program(), *args], input=source, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GraphvizMissing(f"Graphviz dot failed with exit code {done.returncode}: {done.stderr.strip()}")
    return done


def svg(highlight: Highlight | None = None, *, numbered: bool = False, rankdir: Literal["LR", "TB"] = "LR") -> str:
    """The DOT diagram laid out by Graphviz ``dot``; raises :class:`GraphvizMissing` without it."""
    return _run_dot(["-Tsvg"], dot(highlight, numbered=numbered, rankdir=rankdir)).stdout


def dot_sha256() -> str:
    """The SHA-256 of today's DOT (UTF-8), as the SVG's record names the DOT it was laid out from."""
    return hashlib.sha256(dot().encode("utf-8")).hexdigest()


# Every letter, digit and mark the diagram's labels use, measured in each of its fonts and sizes.
_PROBE_TEXT = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 _[]"
_DEFAULT_FONTSIZE = "14"  # Graphviz's own default


@dataclass(frozen=True)
class LayoutEnvironment:
    """What Graphviz's layout of a DOT depends on besides the DOT: Graphviz's version and the fonts it finds.

    ``fonts`` is a fingerprint of the text widths Graphviz measures (a fixed text laid out in
    each font and size the diagram uses), so two machines with the same version and
    fingerprint lay the same DOT out alike. ``resolved`` says, for people, which font files
    Graphviz picked; it is not compared (paths differ between systems with the same fonts).
    """

    graphviz: str
    fonts: str
    resolved: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LayoutEnvironment:
        """Read back what :meth:`as_record` wrote."""
        return cls(str(record["graphviz"]), str(record["fonts"]), tuple(record.get("fonts_resolved", ())))

    def as_record(self) -> dict[str, Any]:
        return {"graphviz": self.graphviz, "fonts": self.fonts, "fonts_resolved": list(self.resolved)}

    def differs_from(self, recorded: LayoutEnvironment) -> str | None:
        """Why a layout here may differ from one made in ``recorded`` (a sentence), or None when it cannot."""
        if (self.graphviz, self.fonts) == (recorded.graphviz, recorded.fonts):
            return None
        return (
            f"The committed SVG was laid out by Graphviz {recorded.graphviz} with fonts {recorded.fonts} "
            f"({'; '.join(recorded.resolved) or 'no font resolved'}); here Graphviz is {self.graphviz} with fonts "
            f"{self.fonts} ({'; '.join(self.resolved) or 'no font resolved'}), so its layout may differ by a few "
            "points for no fault of the SVG."
        )


def _fonts_used(source: str) -> list[tuple[str, str]]:
    names = sorted(set(re.findall(r'fontname="([^"]+)"', source))) or ["Times-Roman"]
    sizes = sorted({*re.findall(r'fontsize="([^"]+)"', source), _DEFAULT_FONTSIZE}, key=float)
    return [(name, size) for name in names for size in sizes]


def layout_environment() -> LayoutEnvironment:
    """This machine's Graphviz version and font fingerprint; raises :class:`GraphvizMissing` without Graphviz."""
    version = _run_dot(["-V"], "").stderr.strip()
    graphviz = version.split("version", 1)[1].strip() if "version" in version else version
    probe = ["digraph probe {"]
    for number, (name, size) in enumerate(_fonts_used(dot())):
        probe.append(f'    n{number} [shape="box", fontname="{name}", fontsize="{size}", label="{_PROBE_TEXT}"];')
    probe.append("}")
    done = _run_dot(["-v", "-Tplain"], "\n".join(probe) + "\n")
    measured = [line for line in done.stdout.splitlines() if line.startswith(("graph ", "node "))]
    fonts = hashlib.sha256("\n".join(measured).encode("utf-8")).hexdigest()[:16]
    resolved = sorted({line.strip() for line in done.stderr.splitlines() if line.startswith("fontname:")})
    return LayoutEnvironment(graphviz, fonts, tuple(resolved))


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


def write_committed(folder: Path) -> list[Path]:
    """Write ``onboarding.mmd``, ``.dot`` and ``.svg`` into ``folder``, and the SVG's record ``onboarding.svg.json``.

    The record names the DOT the SVG was laid out from (its SHA-256) and this machine's
    :class:`LayoutEnvironment`, which a test compares before it compares the SVG itself.
    """
    environment = layout_environment()
    record = {"dot_sha256": dot_sha256(), **environment.as_record()}
    files = {
        "onboarding.mmd": mermaid(),
        "onboarding.dot": dot(),
        "onboarding.svg": svg(),
        "onboarding.svg.json": json.dumps(record, indent=2) + "\n",
    }
    written = []
    for name, text in files.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m keytrail.diagrams FOLDER: what `make diagrams` runs
    for written in write_committed(Path(sys.argv[1] if len(sys.argv) > 1 else "diagrams")):
        print(written)
