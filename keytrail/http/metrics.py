"""The service's Prometheus metrics: requests by route and status, command latency, transitions.

Each app has its own registry, so two apps in one process never collide. Under ``keytrail
serve --workers N`` the workers share a folder (``PROMETHEUS_MULTIPROC_DIR``, set by ``serve``
before they start) and any worker's ``/metrics`` answers for all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from keytrail.persistence.group import CommitStats

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: an SQLite command at durability full takes about a millisecond; a remote authority far more.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _GroupCommitCollector:
    """The engine's group-commit counts, read at scrape time: batch sizes (commands per commit) and commit latency."""

    def __init__(self, stats: Callable[[], CommitStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is None:  # group commit is off (PostgreSQL's default)
            return
        yield CounterMetricFamily("keytrail_group_commits", "Shared commits made by group commit.", value=stats.commits)
        yield CounterMetricFamily(
            "keytrail_group_commit_commands",
            "Commands those commits held (per commit: the batch size).",
            value=stats.commands,
        )
        yield CounterMetricFamily(
            "keytrail_group_commit_seconds", "Time spent in shared commits, their sync included.", value=stats.seconds
        )
        yield GaugeMetricFamily("keytrail_group_commit_largest", "The largest batch so far.", value=stats.largest)


class Metrics:
    """The counters and the histogram one app updates, and their rendering for ``/metrics``."""

    def __init__(self, commit_stats: Callable[[], CommitStats | None] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if commit_stats is not None:
            self.registry.register(_GroupCommitCollector(commit_stats))
        shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # Shared across workers: values live in the folder's files, collected at scrape time.
        owner = None if shared else self.registry
        self.requests = Counter(
            "keytrail_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=owner,
        )
        self.command_seconds = Histogram(
            "keytrail_command_seconds",
            "Time the engine took for a command, by trigger (refused ones included).",
            ["trigger"],
            buckets=_BUCKETS,
            registry=owner,
        )
        self.transitions = Counter(
            "keytrail_transitions",
            "Transitions recorded through the HTTP service, by trigger and destination state.",
            ["trigger", "dest"],
            registry=owner,
        )
        if shared:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]

    def render(self) -> bytes:
        return generate_latest(self.registry)
