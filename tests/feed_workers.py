"""Processes for the feed's tests: writers on the real write path, followers and subscribers.

They run under ``multiprocessing``'s spawn context, so each is a fresh interpreter with its
own connections, as separate application processes sharing one database are.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from keytrail import Engine
from keytrail.errors import ConcurrencyConflict
from keytrail.events import PendingEvent
from keytrail.persistence import Database
from keytrail.persistence.units import Storage

END_STREAM = "feed-end"


def append(storage: Storage, stream: str, actor: str, hold: float = 0.0) -> tuple[int, str, int]:
    """One event on the command path's statements, committed ``hold`` seconds after its insert; (position, stream, version)."""
    while True:
        try:
            with storage.write() as unit:
                head = unit.load(stream).head
                source = "Unverified" if head is None else head.state
                event = PendingEvent("access", source, "Prompted", "missing", {}, actor, datetime.now(UTC), None)
                recorded = unit.append(stream, head, event)
                if hold:
                    time.sleep(hold)  # the transaction stays open, its position taken
            return recorded.position, stream, recorded.version
        except ConcurrencyConflict:  # two writers started the same new stream: the loser retries
            continue


def writer(url: str, number: int, count: int, streams: list[str], holds: bool, out: str) -> None:
    """``count`` events on ``streams``; a holding writer keeps about a third of its transactions open a while."""
    rng = random.Random(number)
    storage = Storage(Database(url))
    acked = []
    for _ in range(count):
        hold = rng.uniform(0.001, 0.03) if holds and rng.random() < 0.35 else 0.0
        acked.append(append(storage, rng.choice(streams), f"writer-{number}", hold))
    storage.database.close()
    Path(out).write_text(json.dumps(acked))


def follower(url: str, out: str) -> None:
    """Follow the log from its start until the end marker; write what arrived, in order."""
    seen = []
    with Engine.open(url, create=False) as engine:
        for event in engine.follow(after=0):
            seen.append((event.position, event.stream, event.version))
            if event.stream == END_STREAM:
                break
    Path(out).write_text(json.dumps(seen))


def subscriber(url: str, name: str, log: str, kill_at: int) -> None:
    """Run subscription ``name`` to the end of the log, noting each event handled; SIGKILL itself right
    after handling ``kill_at`` (before the checkpoint can move past it)."""

    def handle(event: object) -> None:
        position = event.position  # type: ignore[attr-defined]
        with open(log, "a", encoding="utf-8") as handle_file:
            handle_file.write(f"{position}\n")
            handle_file.flush()
            os.fsync(handle_file.fileno())
        if position == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    with Engine.open(url, create=False) as engine:
        engine.subscription(name).run(handle)
