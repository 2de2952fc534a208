"""How the ``keytrail`` command shows things: tables, JSON, progress, times, and the ``-o`` writer.

Nothing here knows a command: the driving and audit commands and the demo print through it, so
a table looks the same wherever it comes from, and a terminal is detected in one place.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from keytrail import inputs
from keytrail.errors import InvalidInput

if TYPE_CHECKING:
    from keytrail import diagrams
    from keytrail.engine import Engine, Event

__all__ = [
    "console",
    "emit_json",
    "highlight",
    "history_rows",
    "mermaid_of",
    "output",
    "progress",
    "say",
    "short_time",
    "table",
    "when",
]


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _styled_console(**options: Any) -> Console:
    """A rich console that honours NO_COLOR fully: no escape sequence at all, bold and italic included.

    (rich's own NO_COLOR support drops colours and keeps the other styles.)
    """
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(highlight=False, color_system=None if plain else "auto", **options)


def console() -> Console:
    return _styled_console(file=sys.stdout, soft_wrap=True)


def emit_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, sort_keys=False))


def say(text: str) -> None:
    print(text)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A rich table on a terminal; tab-separated lines with a header when piped (easy to cut and awk)."""
    if _stdout_is_terminal():
        drawn = Table(title=title)
        for column in columns:
            # Audit data is never cut short: a value too wide for its column wraps onto more lines.
            drawn.add_column(column, overflow="fold")
        for row in rows:
            drawn.add_row(*(Text(value) for value in row))  # data is text, never rich markup
        console().print(drawn)
        return
    print("\t".join(columns))
    for row in rows:
        print("\t".join(value.replace("\t", " ").replace("\n", " ") for value in row))


@contextmanager
def progress(description: str) -> Iterator[Callable[[int], None]]:
    """A progress counter on stderr when it is a terminal; a no-op otherwise (pipes and CI logs stay clean)."""
    if not _stderr_is_terminal():
        yield lambda _n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=_styled_console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda n: bar.advance(task, n)


def when(value: datetime | None) -> str:
    from keytrail.events import iso_utc

    return "" if value is None else iso_utc(value)


def short_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def history_rows(events: Iterable[Event], *, with_actor: bool = True) -> Iterator[tuple[str, ...]]:
    """The timeline's rows: version, time, trigger, from, to, reason (and actor), as the history table shows them."""
    for e in events:
        row = (
            str(e.version),
            short_time(e.occurred_at),
            e.trigger.value,
            e.source.value,
            e.dest.value,
            e.reason.value if e.reason else "",
        )
        yield (*row, e.actor or "") if with_actor else row


def highlight(engine: Engine, stream: str) -> diagrams.Highlight:
    """The path ``stream`` took through the machine, for a diagram to mark."""
    from keytrail import diagrams

    return diagrams.Highlight.from_events(e.onboarding_step() for e in engine.history(stream))


def mermaid_of(engine: Engine, stream: str) -> str:
    """The machine in Mermaid, with the path ``stream`` took marked."""
    from keytrail import diagrams

    return diagrams.mermaid(highlight(engine, stream))


def _guarded_as(target: Path, guarded: Mapping[Path, str]) -> str | None:
    """What ``target`` is, when it is one of the ``guarded`` files (links followed)."""
    for path, what in guarded.items():
        if os.path.realpath(path) == str(target):
            return what
        try:
            if target.exists() and path.exists() and os.path.samefile(target, path):
                return what  # a hard link to it
        except OSError:
            continue
    return None


@contextmanager
def output(output: Path | None, guarded: Callable[[], Mapping[Path, str]]) -> Iterator[TextIO]:
    """Where a command writes (``-o``, else stdout): the file is replaced whole, or left as it was.

    The output never lands on a ``guarded`` file (the database, its -wal/-shm/-journal, its key
    file: asked for only when there is a file to write). It is written to a temporary file beside
    the target, synced, and renamed over the target only once complete, so an error part-way
    leaves a previous file untouched.
    """
    if output is None:
        yield sys.stdout
        return
    target = Path(os.path.realpath(output))
    shown = inputs.clipped(str(output), 200)
    what = _guarded_as(target, guarded())
    if what is not None:
        raise InvalidInput(
            f"-o {shown} is {what}, which the output would destroy; name another file. Nothing was written."
        )
    if target.is_dir():
        raise InvalidInput(f"-o {shown} is a folder; name a file in it. Nothing was written.")
    if output.exists() and not output.is_file():  # /dev/null, /dev/stdout, a FIFO: nothing to replace
        with output.open("w", encoding="utf-8", newline="") as stream:
            yield stream
        return
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:  # named after what the user gave, not the temporary file
        raise OSError(exc.errno, exc.strerror, shown) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
