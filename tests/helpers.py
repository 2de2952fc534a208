"""Ways to bring an onboarding to a state through real commands, and to look at the raw database."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa

from keytrail import Engine, State
from keytrail.events import GENESIS_HASH, RecordedEvent, event_hash
from keytrail.persistence import KeytrailTable
from keytrail.persistence.store import events_table, streams_table

EMAIL = "ops@acme.test"
PASSWORD = "correct horse battery"


def ensure_account(engine: Engine, email: str = EMAIL, password: str = PASSWORD) -> None:
    if engine.portal.find_account(email) is None:
        engine.portal.create_account(email, password, company="Acme")


def drive_to(engine: Engine, stream: str, target: State) -> str | None:
    """Bring a fresh onboarding to ``target`` along the source document's happy path; returns the key if one was made."""
    key: str | None = None
    if target is State.Unverified:
        return None
    ensure_account(engine)
    engine.access(stream)
    if target is State.Prompted:
        return None
    engine.sign_in(stream, email=EMAIL, password=PASSWORD)
    if target is State.SignedIn:
        return None
    key = engine.generate_key(stream, description="Amazon Sales Channel").key
    if target is State.KeyGenerated:
        return key
    engine.copy_key(stream)
    if target is State.KeyCopied:
        return key
    engine.save_config(stream, key=key)
    if target is State.ConfigSaved:
        return key
    engine.access(stream)
    if target is State.Validated:
        return key
    engine.proceed(stream)
    assert target is State.StoreIntegration
    return key


def put_saved_key(engine: Engine, stream: str, key: str) -> None:
    """Write the store configuration directly, as a store configured before keytrail tracked it."""
    engine.admin.put_saved_key(stream, key)


def snapshot(
    engine: Engine, *, skip: tuple[str, ...] = (), authority_log: bool = True
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every keytrail table, to prove a refused command wrote nothing.

    ``authority_log=False`` leaves out the authority's streams (``@account:...``): a refused
    sign-in writes nothing of the onboarding's, but the log records the failure.
    """
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with engine.database.read() as conn:
        for table in KeytrailTable.metadata.sorted_tables:
            if table.name in skip:
                continue
            query = sa.select(table)
            if not authority_log and table.name in ("events", "streams"):
                query = query.where(~table.c.stream_id.startswith("@"))
            rows = conn.execute(query).all()
            tables[table.name] = sorted(tuple(map(repr, row)) for row in rows)
    return tables


def authority_events(engine: Engine, stream: str) -> list[tuple[str, str | None]]:
    """(trigger, actor) of every event of an authority stream (``@account:acct_...``), oldest first."""
    with engine.database.read() as conn:
        rows = conn.execute(
            sa.select(events_table.c.trigger, events_table.c.actor)
            .where(events_table.c.stream_id == stream)
            .order_by(events_table.c.version)
        ).all()
    return [(trigger, actor) for trigger, actor in rows]


def rechain(engine: Engine, stream: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a stream's rows through ``change`` and recompute every hash and the projection's head,
    as someone with write access who knows the hash recipe would."""
    with engine.database.write() as conn:
        rows = [
            r._asdict()
            for r in conn.execute(
                sa.select(events_table).where(events_table.c.stream_id == stream).order_by(events_table.c.version)
            )
        ]
        prev = GENESIS_HASH
        for row in rows:
            change(row)
            row["prev_hash"], row["hash"] = prev, event_hash(prev, RecordedEvent(**row).hashed_fields())
            prev = row["hash"]
            conn.execute(
                sa.update(events_table)
                .where(events_table.c.position == row["position"])
                .values(
                    actor=row["actor"],
                    data=row["data"],
                    occurred_at=row["occurred_at"],
                    prev_hash=row["prev_hash"],
                    hash=row["hash"],
                )
            )
        conn.execute(
            sa.update(streams_table)
            .where(streams_table.c.stream_id == stream)
            .values(head_hash=prev, updated_at=rows[-1]["occurred_at"])
        )


# Set by .ci/run: there, what the machine can run must run, so a missing prerequisite is a failure.
IN_CI = os.environ.get("KEYTRAIL_REQUIRE_POSTGRES") == "1"


def skip_outside_ci(reason: str) -> NoReturn:
    """Skip with ``reason`` on a developer's machine; fail in CI, which installs and may do everything."""
    if IN_CI:
        pytest.fail(f"{reason} CI (.ci/run, as root) must run this test.")
    pytest.skip(reason)


def can_install_prerequisites() -> bool:
    """In CI (.ci/run sets these) and as root (where `make setup` installs chromium, node, php) a
    missing system package is a failure, not a skip."""
    flags = ("KEYTRAIL_REQUIRE_POSTGRES", "KEYTRAIL_REQUIRE_CLIENTS")  # read now: tests change them
    return any(os.environ.get(flag) == "1" for flag in flags) or os.geteuid() == 0


def missing_package(installed_by: str, reason: str) -> NoReturn:
    """A system package a test needs is missing: fail where it can be installed, skip on a developer's machine."""
    if can_install_prerequisites():
        pytest.fail(f"{reason}; `{installed_by}` installs it.")
    pytest.skip(f"{reason}, and not being root, `{installed_by}` cannot install it here.")
