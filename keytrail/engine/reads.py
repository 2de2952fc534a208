"""The engine's reads: where an onboarding stands, its history, its replay, and the audit of the log.

Nothing here writes; the reads go through the same storage units as the commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from datetime import datetime

from keytrail import inputs
from keytrail.engine.admin import SavedKeyRecord
from keytrail.engine.audit import StreamFold, verify_streams
from keytrail.engine.audit_at import Audit, audit_log, saved_key_at
from keytrail.engine.authority_check import table_problems
from keytrail.engine.results import Event, OnboardingStatus, Problem, Replay, VerifyReport
from keytrail.errors import CorruptEvent, IntegrityViolation, UnknownOnboarding
from keytrail.persistence import Database, RecordedEvent, SavedConfig, StreamHead
from keytrail.persistence.units import Storage
from keytrail.portal import KeyVerifier, SavedKey, Verdict
from keytrail.states import State
from keytrail.states.authority import authority_stream, is_authority_stream

__all__ = ["Reads"]


class Reads:
    """The read side of :class:`~keytrail.engine.Engine`, which provides what is declared here."""

    _db: Database
    _storage: Storage
    verifier: KeyVerifier
    # The engine's own: its clock read as commands read it, and a saved configuration unsealed.
    _now: Callable[[], datetime]
    _saved_key: Callable[[SavedConfig | None], SavedKey | None]

    # -- reading and auditing ---------------------------------------------------------------------

    def _head(self, stream: str) -> StreamHead:
        head = self._storage.head(inputs.check_stream_id(stream))
        if head is None:
            raise UnknownOnboarding(f"There is no onboarding {stream!r}; its first command is usually access.")
        return head

    def state(self, stream: str) -> State:
        """The onboarding's current state, from the projection (no replay)."""
        return self.status(stream).state

    def status(self, stream: str) -> OnboardingStatus:
        """Where the onboarding stands, from its projection row: state, reason, version, head hash, account and key."""
        return OnboardingStatus.from_head(self._head(stream))

    def streams(self) -> Iterator[OnboardingStatus]:
        """Every onboarding's status, ordered by id, streamed (the authority's entities are not onboardings)."""
        with self._storage.read() as unit, closing(unit.heads()) as heads:
            for head in heads:
                if not is_authority_stream(head.stream_id):
                    yield OnboardingStatus.from_head(head)

    def saved_key_status(self, stream: str) -> tuple[SavedKeyRecord | None, Verdict]:
        """The saved key's record (never its ciphertext) and what the verifier says of it now; nothing is written."""
        stream = inputs.check_stream_id(stream)
        with self._storage.read() as unit:
            loaded = unit.load(stream)
            head, config = loaded.head, loaded.config
        if head is None:
            raise UnknownOnboarding(f"There is no onboarding {stream!r}.")
        record = None if config is None else SavedKeyRecord.of(config)
        return record, self.verifier.verify(self._saved_key(config), self._now())

    def history(self, stream: str) -> list[Event]:
        """The onboarding's events, oldest first."""
        stream = inputs.check_log_stream_id(stream)
        # closing(): a damaged row raises mid-scan, and the scan must end while its connection is open.
        with self._storage.read() as unit, closing(unit.events(stream)) as records:
            events = [Event.from_record(record) for record in records]
        if not events:
            raise UnknownOnboarding(f"There is no onboarding {stream!r}.")
        return events

    def events(self, stream: str | None = None) -> Iterator[RecordedEvent]:
        """Raw event rows, by stream then version, streamed in constant memory (for exports)."""
        if stream is not None:
            stream = inputs.check_log_stream_id(stream)
        with self._storage.read() as unit, closing(unit.events(stream)) as records:
            yield from records

    def replay(
        self, stream: str, as_of: datetime | None = None, *, progress: Callable[[int], None] | None = None
    ) -> Replay:
        """Rebuild the onboarding from its events alone, optionally as it stood at ``as_of``.

        ``as_of`` cuts the stream at its first event dated later, in version order (times never
        decrease; an event dated before its predecessor is a problem). ``progress`` is told each
        event read (the CLI's progress bar). A row that cannot be read raises CorruptEvent.
        """
        stream = inputs.check_stream_id(stream)
        if as_of is not None:
            as_of = inputs.check_instant("as_of", as_of)

        # The whole stream is read even with as_of: the cut is by version order, not a filter on time.
        with self._storage.replay_scan(stream, as_of) as scan:
            fold = StreamFold(stream, check_hashes=False, as_of=scan.as_of, time_check=scan.time_check)
            exists = False
            for row in scan.rows:
                fold.feed_row(row)
                exists = True
                if progress is not None:
                    progress(1)
        if not exists:
            raise UnknownOnboarding(f"There is no onboarding {stream!r}.")
        return fold.replay(as_of)

    def audit(self, stream: str, *, at: datetime | None = None) -> Audit:
        """The onboarding at ``at`` (default: now) from the log alone: its state and the event that put it
        there, the key saved in its configuration and that key's verdict at ``at`` (valid, revoked by whom,
        expired, missing, unknown), the key's authority events, and what is wrong with either stream."""
        stream = inputs.check_stream_id(stream)
        at = self._now() if at is None else inputs.check_instant("at", at)
        with self._storage.read() as unit:
            with closing(unit.events(stream)) as records:
                onboarding = list(records)
            if not onboarding:
                raise UnknownOnboarding(f"There is no onboarding {stream!r}.")
            key_events: list[RecordedEvent] = []
            saved = saved_key_at(onboarding, at)
            # The table finds the key's stream by fingerprint; what is said of the key comes from that stream.
            issued = None if saved is None else unit.authority.key_by_fingerprint(saved)
            found: list[Problem] = []
            if issued is not None:
                try:
                    with closing(unit.events(authority_stream("key", issued.key_id))) as records:
                        key_events = list(records)
                except CorruptEvent as exc:  # the answer rests on that stream: a problem, not a crash
                    found.append(Problem(str(exc.stream_id), _whole(exc.version), "malformed", str(exc)))
        return audit_log(stream, at, onboarding, key_events, found)

    def verify(self, stream: str | None = None, *, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Recompute every hash chain, check versions, legality and the projection; name each first problem."""
        if stream is not None:
            stream = inputs.check_log_stream_id(stream)
        with self._storage.read() as unit:
            if stream is not None and not unit.stream_exists(stream):
                raise UnknownOnboarding(f"There is no onboarding {stream!r}.")
            # Both scans are closed while the connection is still ours, whatever verify_streams raises.
            with closing(unit.heads(stream)) as heads, closing(unit.audit_rows(stream)) as rows:
                report = verify_streams(rows, heads, progress)
            if stream is not None:
                return report
            # The whole log: the authority's tables must also say what the log says.
            try:
                found = table_problems(unit.authority.against_log())
            except IntegrityViolation as exc:  # a value keytrail never writes in those tables: listed, not raised
                found = [Problem("@authority", 0, "malformed", str(exc))]
        return replace(report, problems=report.problems + found) if found else report


def _whole(version: object) -> int:
    return version if type(version) is int else 0
