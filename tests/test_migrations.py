"""Schema migrations: every revision up and down on both backends, the models equal the migrated
schema, a database of keytrail 0.1.0 is refused on open and upgraded by ``keytrail db upgrade``
with every event and hash kept, and a host application's alembic table is never touched."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from typer.testing import CliRunner

from keytrail import Engine, State
from keytrail.cli import app
from keytrail.engine import reports
from keytrail.engine.tokens import Tokens
from keytrail.errors import InvalidInput, SchemaMismatch
from keytrail.persistence import Database, migrations
from tests.conftest import MovableClock
from tests.helpers import drive_to

runner = CliRunner()


def _empty(db_url: str) -> None:
    """An empty database file for SQLite (a server database is empty already)."""
    if db_url.startswith("sqlite"):
        Path(sa.make_url(db_url).database or "").touch()


def _tables(db_url: str) -> set[str]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_every_migration_runs_up_and_down(db_url: str) -> None:
    """From nothing to each revision in turn, down to nothing again, and back up to the newest."""
    _empty(db_url)
    db = Database(db_url)
    try:
        revisions = [r.revision for r in migrations.history()]
        assert revisions[0] == "0001"
        assert revisions[-1] == migrations.HEAD
        for revision in revisions:
            db.migrate(revision)
            assert db.revision() == revision
        for below in [*reversed(revisions[:-1]), "base"]:
            db.migrate(below, down=True)
            assert db.revision() == (None if below == "base" else below)
        assert _tables(db_url) <= {migrations.VERSION_TABLE}
        assert db.migrate() == (None, migrations.HEAD)
        assert db.migrate() == (migrations.HEAD, migrations.HEAD)  # nothing to do
        with pytest.raises(InvalidInput, match="migrating up to 0001 is not possible"):
            db.migrate("0001")
    finally:
        db.dispose()


def test_the_models_match_the_migrated_schema(db_url: str) -> None:
    """What the migrations build is what the SQLModel tables declare: alembic finds nothing to change."""
    _empty(db_url)
    db = Database(db_url)
    try:
        db.migrate()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": migrations.VERSION_TABLE}
            )
            assert compare_metadata(context, migrations.target_metadata()) == []
    finally:
        db.dispose()


def test_a_new_database_is_at_the_newest_revision_and_its_versions_agree(db_url: str) -> None:
    """Opened (created) by the engine: alembic's revision and keytrail_meta's schema_version agree."""
    Engine.open(db_url).close()
    db = Database(db_url)
    try:
        assert db.revision() == migrations.HEAD
        meta = db.inspect_schema(create=False).meta
        assert f"{int(meta['schema_version']):04d}" == migrations.HEAD
    finally:
        db.dispose()


def _as_0_1_0(db_url: str) -> None:
    """Turn a database of this version into one keytrail 0.1.0 wrote: no version table, no later table, version 1."""
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE subscriptions"))
            conn.execute(sa.text("DROP TABLE api_tokens"))
            conn.execute(sa.text(f"DROP TABLE {migrations.VERSION_TABLE}"))
            conn.execute(sa.text("UPDATE keytrail_meta SET value = '1' WHERE name = 'schema_version'"))
    finally:
        engine.dispose()


def _event_rows(db_url: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text("SELECT * FROM events ORDER BY position"))]
    finally:
        engine.dispose()


def test_a_0_1_0_database_is_refused_then_upgraded_keeping_every_event(db_url: str, clock: MovableClock) -> None:
    """Opening names the command and writes nothing; ``keytrail db upgrade`` migrates it; events,
    hashes and the digest are unchanged and verify passes."""
    with Engine.open(db_url, clock=clock) as engine:
        drive_to(engine, "acme", State.StoreIntegration)
        drive_to(engine, "globex", State.KeyCopied)
        token = reports.digest(engine).token
    _as_0_1_0(db_url)
    events = _event_rows(db_url)
    tables = _tables(db_url)
    with pytest.raises(SchemaMismatch, match=r"schema version 1, older than this keytrail's 4.*keytrail db upgrade"):
        Engine.open(db_url, clock=clock)
    assert _tables(db_url) == tables  # nothing was migrated on open
    shown = runner.invoke(app, ["--db", db_url, "db", "current", "--json"])
    assert json.loads(shown.stdout)["revision"] == "0001"
    assert json.loads(shown.stdout)["up_to_date"] is False
    upgraded = runner.invoke(app, ["--db", db_url, "db", "upgrade", "--json"])
    assert upgraded.exit_code == 0, upgraded.stderr
    assert json.loads(upgraded.stdout) | {"database": None} == {
        "database": None,
        "from": "0001",
        "to": "0004",
        "head": "0004",
    }
    assert _event_rows(db_url) == events
    with Engine.open(db_url, clock=clock, create=False) as engine:
        assert engine.verify().ok
        assert reports.check_digest(engine, token).ok
        assert engine.state("acme") is State.StoreIntegration
        assert engine.subscription("new").run(lambda event: None) == len(events)
    again = runner.invoke(app, ["--db", db_url, "db", "upgrade"])
    assert again.exit_code == 0
    assert "nothing to do" in again.stdout


def test_a_host_applications_alembic_table_is_left_alone(tmp_path: Path) -> None:
    """keytrail's revisions live in their own table: a host's ``alembic_version`` row survives an upgrade."""
    url = f"sqlite:///{tmp_path}/k.db"
    Engine.open(url).close()
    _as_0_1_0(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('host_rev_42')"))
    assert runner.invoke(app, ["--db", url, "db", "upgrade"]).exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "host_rev_42"
    engine.dispose()


def test_db_history_lists_every_revision(tmp_path: Path) -> None:
    """Oldest first, each with the first line of what it does."""
    shown = runner.invoke(app, ["db", "history"])
    assert shown.exit_code == 0
    lines = shown.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["0001", "0002", "0003", "0004"]
    assert "0.1.0" in lines[0]


def test_db_upgrade_refuses_an_unknown_revision_or_a_foreign_database(tmp_path: Path) -> None:
    """Bad input is exit 2 and one line; a database of another application is left untouched."""
    url = f"sqlite:///{tmp_path}/shop.db"
    bad = runner.invoke(app, ["--db", url, "db", "upgrade", "9999"])
    assert bad.exit_code == 2
    assert "not a revision" in bad.stderr
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    foreign = runner.invoke(app, ["--db", url, "db", "upgrade"])
    assert foreign.exit_code == 2
    assert "not a keytrail database" in foreign.stderr
    assert _tables(url) == {"orders"}


def test_an_authority_from_before_its_log_is_recorded_by_the_upgrade(db_url: str, clock: MovableClock) -> None:
    """Revision 0004 gives each account, key and token of an older database its stream: appended after
    every event (never back-dated), by ``keytrail db upgrade``, keeping the original times, so the audit
    of a past instant answers as before and verify holds the tables to the log."""
    with Engine.open(db_url, clock=clock) as engine:
        drive_to(engine, "acme", State.StoreIntegration)
        key_id = engine.status("acme").key_id
        assert key_id is not None
        clock.advance(days=2)
        engine.portal.revoke_key(key_id, actor="alice")
        Tokens(engine).create("svc", "drive")
        before = engine.audit("acme", at=clock.now - timedelta(days=1))
        after = engine.audit("acme", at=clock.now)
    raw = sa.create_engine(db_url)
    with raw.begin() as conn:  # as revision 0003 left it: no authority streams
        conn.execute(sa.text("DELETE FROM events WHERE stream_id LIKE '@%'"))
        conn.execute(sa.text("DELETE FROM streams WHERE stream_id LIKE '@%'"))
        conn.execute(sa.text("UPDATE keytrail_alembic_version SET version_num = '0003'"))
        conn.execute(sa.text("UPDATE keytrail_meta SET value = '3' WHERE name = 'schema_version'"))
    raw.dispose()
    old = _event_rows(db_url)
    upgraded = runner.invoke(app, ["--db", db_url, "db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.stderr
    rows = _event_rows(db_url)
    assert rows[: len(old)] == old
    with Engine.open(db_url, clock=clock, create=False) as engine:
        recorded = [e for e in engine.events() if e.stream_id.startswith("@")]
        assert {(e.stream_id.split(":")[0], e.trigger, e.actor) for e in recorded} == {
            ("@account", "account_created", None),  # who acted then is not known
            ("@key", "key_generated", None),
            ("@key", "key_revoked", None),
            ("@token", "token_created", None),
        }
        newest = max(e.occurred_at for e in engine.events() if not e.stream_id.startswith("@"))
        assert all(e.data["recorded_by_upgrade"] and e.occurred_at >= newest for e in recorded)
        assert engine.verify().ok
        assert engine.audit("acme", at=before.at).verdict.status == before.verdict.status == "valid"
        again = engine.audit("acme", at=after.at).verdict
        assert (again.status, again.revoked_at, again.revoked_by) == ("revoked", after.verdict.revoked_at, None)
        assert "who revoked it is not known" in again.message
