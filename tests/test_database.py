"""Opening databases: created on first open, foreign or mismatched ones refused untouched, secrets checked."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from keytrail import Engine, State
from keytrail.crypto import SECRET_KEY_ENV, generate_secret_key
from keytrail.errors import InvalidInput, NotAKeytrailDatabase, SchemaMismatch, SecretKeyError, UnknownDatabase
from keytrail.persistence.tables import DATABASE_SCHEMA, MetaRow
from keytrail.pgcluster import scratch_database
from tests.helpers import drive_to


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_first_open_creates_the_schema_and_an_owner_only_key_file(tmp_path: Path) -> None:
    db = tmp_path / "keytrail.db"
    with Engine.open(f"sqlite:///{db}") as engine:
        engine.access("acme")
    key_file = tmp_path / "keytrail.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM keytrail_meta WHERE name='schema_version'").fetchone()[0] == str(
            DATABASE_SCHEMA
        )
    with Engine.open(f"sqlite:///{db}") as again:
        assert again.state("acme") is State.Prompted


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = _bytes(path)
    with pytest.raises(NotAKeytrailDatabase, match="not a keytrail database"):
        Engine.open(f"sqlite:///{path}")
    assert _bytes(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_a_foreign_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO orders VALUES (1, 9.99)")
    before = _bytes(path)
    with pytest.raises(NotAKeytrailDatabase, match="other tables \\(orders\\)"):
        Engine.open(f"sqlite:///{path}")
    assert _bytes(path) == before


def test_a_newer_schema_is_refused_untouched(db_url: str) -> None:
    Engine.open(db_url).close()
    engine = sa.create_engine(db_url.replace("postgresql+psycopg", "postgresql+psycopg"))
    meta = MetaRow.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(sa.update(meta).where(meta.c.name == "schema_version").values(value="99"))
    engine.dispose()
    with pytest.raises(SchemaMismatch, match=r"schema version 99.*upgrade keytrail"):
        Engine.open(db_url)


def test_opening_a_missing_database_without_create_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(UnknownDatabase, match="does not exist"):
        Engine.open(f"sqlite:///{tmp_path}/absent.db", create=False)
    assert list(tmp_path.iterdir()) == []


def test_an_unsupported_url_is_bad_input() -> None:
    with pytest.raises(InvalidInput, match="SQLite and PostgreSQL"):
        Engine.open("mysql://localhost/db")


def test_a_missing_key_file_is_a_clear_error_not_a_new_key(tmp_path: Path) -> None:
    db = tmp_path / "keytrail.db"
    with Engine.open(f"sqlite:///{db}") as engine:
        drive_to(engine, "acme", State.StoreIntegration)
    (tmp_path / "keytrail.db.key").unlink()
    with Engine.open(f"sqlite:///{db}") as engine, pytest.raises(SecretKeyError, match="does not exist"):
        engine.admin.check_secret_key()  # reads need no key: it is looked for at first use
    assert not (tmp_path / "keytrail.db.key").exists()


def test_a_wrong_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "keytrail.db"
    with Engine.open(f"sqlite:///{db}") as engine:
        engine.access("acme")
    monkeypatch.setenv(SECRET_KEY_ENV, generate_secret_key())
    with (
        Engine.open(f"sqlite:///{db}") as engine,
        pytest.raises(SecretKeyError, match="not the one this database was sealed with"),
    ):
        engine.save_config("acme", key="k" * 20)


def test_a_malformed_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_KEY_ENV, "not-a-key")
    with pytest.raises(SecretKeyError, match="malformed"):
        Engine.open(f"sqlite:///{tmp_path}/k.db")


def test_the_key_from_the_environment_is_used_and_no_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_KEY_ENV, generate_secret_key())
    with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine:
        drive_to(engine, "acme", State.Validated)
    assert not (tmp_path / "k.db.key").exists()
    with Engine.open(f"sqlite:///{tmp_path}/k.db") as engine:
        assert engine.access("acme").state is State.Validated


def test_an_in_memory_database_works_for_quick_experiments() -> None:
    with Engine.open("sqlite://") as engine:
        drive_to(engine, "acme", State.StoreIntegration)
        assert engine.verify().ok


@pytest.mark.postgres
def test_a_server_database_keeps_its_key_in_the_data_folder(postgres_server: str, tmp_path: Path) -> None:
    with scratch_database(postgres_server) as url:
        Engine.open(url).close()
    files = list((tmp_path / "xdg" / "keytrail").iterdir())
    assert len(files) == 1 and stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
