"""Secrets: no plaintext key or password reaches a row, a log line, a message or a repr; lockout; rotation."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import structlog
from freezegun import freeze_time
from sqlalchemy.engine import make_url

from keytrail import Engine, Reason, SavedKey, State, Verdict
from keytrail.crypto import SECRET_KEY_ENV, SECRET_KEY_FILE_ENV, fingerprint, generate_secret_key, hint
from keytrail.errors import AccountLocked, AuthenticationFailed, IllegalTransition, KeytrailError, SecretKeyError
from keytrail.logs import REDACTED, configure_logging, redact_secrets
from keytrail.persistence.authority_store import api_keys
from keytrail.persistence.store import config_table
from tests.conftest import MovableClock
from tests.helpers import snapshot

EMAIL = "ops@acme.test"
PASSWORD = "pw-NEVER-STORED-7f3a9c"
WRONG_PASSWORD = "pw-WRONG-ATTEMPT-91bd2e"
REGISTER_PASSWORD = "pw-REGISTERED-c41e88"
USER_KEY = "USERTYPED-key-0123456789abcdef"  # pasted by hand: not shaped like a keytrail key


@dataclass
class Flow:
    """What a run of the whole flow used and met: plaintexts, raised errors, public objects."""

    plaintexts: set[str] = field(default_factory=set)
    errors: list[BaseException] = field(default_factory=list)
    objects: list[object] = field(default_factory=list)

    def expect_error(self, kind: type[KeytrailError], call: Callable[[], object]) -> None:
        with pytest.raises(kind) as caught:
            call()
        self.errors.append(caught.value)

    def keep(self, *objects: object) -> None:
        self.objects.extend(objects)


def _run_whole_flow(engine: Engine, clock: MovableClock) -> Flow:
    """Every trigger, and every error path the flow can meet, over several onboardings."""
    flow = Flow(plaintexts={PASSWORD, WRONG_PASSWORD, REGISTER_PASSWORD, USER_KEY})
    portal = engine.portal
    flow.keep(engine, portal, engine.database, engine.admin, portal.create_account(EMAIL, PASSWORD, company="Acme"))
    flow.expect_error(KeytrailError, lambda: portal.create_account(EMAIL, PASSWORD, company="Acme"))
    flow.keep(engine.access("acme"))
    flow.expect_error(IllegalTransition, lambda: engine.copy_key("acme"))
    flow.expect_error(AuthenticationFailed, lambda: engine.sign_in("acme", email=EMAIL, password=WRONG_PASSWORD))
    flow.expect_error(AuthenticationFailed, lambda: engine.sign_in("acme", email="x@acme.test", password=PASSWORD))
    flow.keep(engine.sign_in("acme", email=EMAIL, password=PASSWORD))
    generated = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    flow.plaintexts.add(generated.key)
    again = engine.generate_key("acme", description="Amazon Sales Channel", idempotency_key="gen-1")
    flow.keep(generated, again, generated.as_dict(include_key=False))
    copied = engine.copy_key("acme")
    flow.keep(copied)
    for bad in (generated.key[:10], generated.key + " tail", generated.key + "\x00", "é" + generated.key):
        flow.expect_error(KeytrailError, partial(engine.save_config, "acme", key=bad))
    flow.keep(engine.save_config("acme", key=f"  {copied.key}\n"))
    flow.keep(engine.access("acme"), engine.proceed("acme"), engine.save_config("acme", key="******"))
    flow.keep(engine.access("acme"), engine.saved_key_status("acme"))

    # a second onboarding copies the first key by id, then pastes a hand-typed key
    engine.access("globex")
    flow.expect_error(AuthenticationFailed, lambda: engine.sign_in("globex", email=EMAIL))  # acme's session
    engine.sign_in("globex", email=EMAIL, password=PASSWORD)
    flow.keep(engine.copy_key("globex", key_id=generated.key_id))
    engine.save_config("globex", key=USER_KEY)
    flow.keep(engine.access("globex"), engine.saved_key_status("globex"))
    engine.sign_in("globex", email=EMAIL)
    second = engine.generate_key("globex", description="second", idempotency_key="gen-2")
    flow.plaintexts.add(second.key)
    portal.revoke_key(second.key_id)
    flow.expect_error(  # a retry shows no revoked key, and its message carries none
        KeytrailError, lambda: engine.generate_key("globex", description="second", idempotency_key="gen-2")
    )
    flow.expect_error(KeytrailError, lambda: engine.copy_key("globex"))
    flow.expect_error(KeytrailError, lambda: engine.copy_key("globex", key_id="key_0000000000000000"))

    # a third registers, then its key expires
    engine.access("initech")
    engine.register("initech", email="ops@initech.test", password=REGISTER_PASSWORD, company="Initech")
    flow.expect_error(
        KeytrailError,
        lambda: engine.register("initech", email="ops@initech.test", password=REGISTER_PASSWORD, company="x"),
    )
    third = engine.generate_key("initech", description="Initech")
    flow.plaintexts.add(third.key)
    flow.expect_error(KeytrailError, lambda: engine.copy_key("globex", key_id=third.key_id))
    engine.save_config("initech", key=third.key)
    clock.advance(days=400)
    expired = engine.access("initech")
    assert expired.reason is Reason.expired
    flow.keep(expired, engine.saved_key_status("initech"))

    # lockout: five wrong passwords in a row, then even the right one is refused
    engine.access("acme")
    for _ in range(5):
        flow.expect_error(AuthenticationFailed, lambda: engine.sign_in("acme", email=EMAIL, password=WRONG_PASSWORD))
    flow.expect_error(AccountLocked, lambda: engine.sign_in("acme", email=EMAIL, password=PASSWORD))
    clock.advance(minutes=15)
    flow.keep(engine.sign_in("acme", email=EMAIL, password=PASSWORD))

    # rotate the encryption key in the middle of it all, and keep going
    new_secret = generate_secret_key()
    flow.plaintexts.add(new_secret)
    flow.expect_error(SecretKeyError, lambda: engine.admin.rotate_secret_key("not-a-key " + PASSWORD))
    engine.admin.rotate_secret_key(new_secret)
    fourth = engine.generate_key("acme", description="after rotation")
    flow.plaintexts.add(fourth.key)
    engine.copy_key("acme")
    engine.save_config("acme", key=fourth.key)
    flow.keep(engine.access("acme"))
    for stream in ("acme", "globex", "initech"):
        flow.keep(*engine.history(stream), engine.replay(stream), engine.status(stream))
    flow.keep(engine.verify(), *engine.streams(), *engine.events())
    flow.keep(*portal.list_keys(EMAIL), *portal.sign_in_attempts(), portal.find_account(EMAIL))
    assert engine.verify().ok
    return flow


def _message_chain(exc: BaseException) -> str:
    """Every message and repr of an error and of everything it was raised from."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def _db_bytes(db_url: str, tmp_path: Path) -> bytes:
    """The raw bytes of a SQLite database and its journal files, or a pg_dump of every table."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if not p.name.endswith(".key"))
    pg_dump = shutil.which("pg_dump")
    assert pg_dump is not None, "pg_dump is needed to dump the PostgreSQL database"
    dumped = subprocess.run(
        [pg_dump, "-h", str(url.host), "-p", str(url.port), "-U", str(url.username), "--data-only", str(url.database)],
        capture_output=True,
        check=True,
        timeout=120,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )
    return dumped.stdout


def test_no_plaintext_reaches_rows_logs_messages_or_reprs(
    db_url: str, clock: MovableClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole flow, then a search for every key and password used: database bytes, logs, errors, reprs."""
    secret = generate_secret_key()
    monkeypatch.setenv(SECRET_KEY_ENV, secret)
    rendered = io.StringIO()
    configure_logging(level="debug", json=True, stream=rendered)
    raw_events: list[dict[str, Any]] = []

    def keep_raw(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        raw_events.append(dict(event_dict))  # what keytrail handed the logger, before redaction
        return event_dict

    structlog.configure(processors=[keep_raw, *structlog.get_config()["processors"]])
    engine = Engine.open(db_url, clock=clock)
    try:
        flow = _run_whole_flow(engine, clock)
        flow.plaintexts.add(secret)
        with_wal = _db_bytes(db_url, tmp_path)
    finally:
        engine.close()
    after_close = _db_bytes(db_url, tmp_path)

    log_text = rendered.getvalue()
    raw_text = repr(raw_events)
    messages = "\n".join(_message_chain(e) for e in flow.errors)
    reprs = "\n".join(repr(o) + str(o) for o in flow.objects)
    keys = [p for p in flow.plaintexts if p.startswith("kt_")]
    assert len(keys) == 4 and len(flow.errors) == 21
    for plaintext in flow.plaintexts:
        for where, text in (("log output", log_text), ("log calls", raw_text), ("messages", messages)):
            assert plaintext not in text, f"a plaintext reached the {where}"
        assert plaintext not in reprs, "a plaintext reached a repr()"
        for blob in (with_wal, after_close):
            assert plaintext.encode() not in blob, "a plaintext reached the database"
    # The searches are over real data: what may be stored, is.
    for blob in (with_wal, after_close):
        assert fingerprint(keys[0]).encode() in blob and b"Amazon Sales Channel" in blob
    assert '"event": "transition"' in log_text and '"event": "sign_in_failed"' in log_text
    assert len(raw_events) > 30


def test_the_one_place_a_key_is_handed_out(engine: Engine) -> None:
    """generate_key and copy_key return the key to its owner; their repr() and default dumps do not show it."""
    engine.portal.create_account(EMAIL, PASSWORD, company="Acme")
    engine.access("acme")
    engine.sign_in("acme", email=EMAIL, password=PASSWORD)
    generated = engine.generate_key("acme", description="Amazon Sales Channel")
    assert re.fullmatch(r"kt_[A-Za-z0-9_\-]{43}", generated.key)
    assert generated.key not in repr(generated) and generated.key not in str(generated)
    assert generated.as_dict()["key"] == generated.key and "key" not in generated.as_dict(include_key=False)
    assert json.dumps(generated.as_dict(include_key=False)).find(generated.key) == -1


# -- the redaction processor -------------------------------------------------------------------


KT_KEY = "kt_" + "Z" * 43


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"password": "hunter2"}, {"password": REDACTED}),
        ({"Password": "hunter2", "API_KEY": "abc"}, {"Password": REDACTED, "API_KEY": REDACTED}),
        (
            {"magento-api-key": "abc", "token": "t", "secret": 1},
            dict.fromkeys(("magento-api-key", "token", "secret"), REDACTED),
        ),
        (
            {"headers": {"magento-api-key": "abc", "accept": "json"}},
            {"headers": {"magento-api-key": REDACTED, "accept": "json"}},
        ),
        ({"note": f"pasted {KT_KEY} here"}, {"note": f"pasted {REDACTED} here"}),
        ({"items": [KT_KEY, ("x", KT_KEY)]}, {"items": [REDACTED, ("x", REDACTED)]}),
        ({"raw": KT_KEY.encode()}, {"raw": REDACTED}),
        ({"error": ValueError(f"bad key {KT_KEY}")}, {"error": f"ValueError('bad key {REDACTED}')"}),
        ({"token_like": "gAAAAA" + "b" * 60}, {"token_like": REDACTED}),
        (
            {"count": 3, "ok": True, "none": None, "hint": "abcd"},
            {"count": 3, "ok": True, "none": None, "hint": "abcd"},
        ),
    ],
    ids=["password", "case", "names", "nested", "shape-in-text", "sequences", "bytes", "object-repr", "fernet", "safe"],
)
def test_redaction_processor(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    event = {"event": "something", **fields}
    assert redact_secrets(None, "info", event) == {"event": "something", **expected}


def test_a_key_in_an_exception_traceback_is_redacted() -> None:
    """Tracebacks are formatted before redaction, so a key inside one is caught too."""
    out = io.StringIO()
    configure_logging(level="debug", json=True, stream=out)
    log = structlog.get_logger("host-app")
    try:
        raise RuntimeError(f"gateway refused {KT_KEY}")
    except RuntimeError:
        log.exception("gateway_failed", password="hunter2-secret")
    text = out.getvalue()
    assert KT_KEY not in text and "hunter2-secret" not in text
    assert "RuntimeError" in text and REDACTED in text


# -- fingerprints ------------------------------------------------------------------------------


def test_fingerprints_are_full_hashes_and_hints_at_most_four_characters() -> None:
    """A full SHA-256 under a domain prefix: not reversible, no collisions in practice; the hint is the last 4."""
    key = "kt_" + secrets.token_urlsafe(32)
    expected = hashlib.sha256(b"keytrail-api-key\x00" + key.encode()).hexdigest()
    assert fingerprint(key) == "sha256:" + expected
    assert key not in fingerprint(key) and key[:8] not in fingerprint(key)
    assert hint(key) == key[-4:] and len(hint("abc")) == 3
    keys = {"kt_" + secrets.token_urlsafe(32) for _ in range(20_000)}
    keys |= {key[:-1] + c for c in "ABCDEFGHIJ"}  # near neighbours
    assert len({fingerprint(k) for k in keys}) == len(keys)


# -- lockout -----------------------------------------------------------------------------------


def test_five_failures_in_a_row_lock_the_account_for_fifteen_minutes(db_url: str) -> None:
    """With freezegun: locked at the fifth failure, even the right password refused, open again at 15 minutes."""
    with freeze_time("2026-05-01 10:00:00") as frozen:
        engine = Engine.open(db_url)
        try:
            engine.portal.create_account(EMAIL, PASSWORD, company="Acme")
            engine.access("acme")
            for attempt in range(1, 5):
                with pytest.raises(AuthenticationFailed) as caught:
                    engine.sign_in("acme", email=EMAIL, password=WRONG_PASSWORD, actor="admin:jane")
                assert not isinstance(caught.value, AccountLocked), f"locked after {attempt}"
                frozen.tick(timedelta(seconds=30))
            with pytest.raises(AccountLocked, match="locked until 2026-05-01T10:17:00"):
                engine.sign_in("acme", email=EMAIL, password=WRONG_PASSWORD, actor="admin:jane")
            frozen.tick(timedelta(minutes=14, seconds=59))
            with pytest.raises(AccountLocked):
                engine.sign_in("acme", email=EMAIL, password=PASSWORD)
            frozen.tick(timedelta(seconds=1))
            assert engine.sign_in("acme", email=EMAIL, password=PASSWORD).state is State.SignedIn
            attempts = engine.portal.sign_in_attempts(EMAIL)
            assert [a.outcome for a in attempts] == ["wrong_password"] * 5 + ["locked", "ok_password"]
            assert {(a.email, a.stream_id) for a in attempts} == {(EMAIL, "acme")}
            assert [a.actor for a in attempts[:5]] == ["admin:jane"] * 5
            assert attempts[0].occurred_at.isoformat() == "2026-05-01T10:00:00+00:00"
            assert attempts[-1].occurred_at.isoformat() == "2026-05-01T10:17:00+00:00"
            with engine.database.read() as conn:
                rows = conn.execute(sa.text("SELECT * FROM sign_in_attempts")).all()
            assert PASSWORD not in repr(rows) and WRONG_PASSWORD not in repr(rows)
            assert engine.verify().ok
        finally:
            engine.close()


def test_only_consecutive_failures_count_and_both_limits_are_configurable(engine: Engine, db_url: str) -> None:
    """A success resets the count; max_failed_sign_ins and lockout come from Engine.open."""
    engine.portal.create_account(EMAIL, PASSWORD, company="Acme")
    engine.access("acme")
    for _ in range(4):
        with pytest.raises(AuthenticationFailed):
            engine.sign_in("acme", email=EMAIL, password=WRONG_PASSWORD)
    engine.sign_in("acme", email=EMAIL, password=PASSWORD)
    engine.access("acme")
    for _ in range(4):
        with pytest.raises(AuthenticationFailed) as caught:
            engine.sign_in("acme", email=EMAIL, password=WRONG_PASSWORD)
        assert not isinstance(caught.value, AccountLocked)
    engine.close()
    clock = MovableClock()
    strict = Engine.open(db_url, clock=clock, max_failed_sign_ins=2, lockout=timedelta(minutes=2))
    other = "ops2@acme.test"
    try:
        strict.portal.create_account(other, PASSWORD, company="Acme")
        strict.access("b")
        with pytest.raises(AuthenticationFailed) as first:
            strict.sign_in("b", email=other, password=WRONG_PASSWORD)
        assert not isinstance(first.value, AccountLocked)
        with pytest.raises(
            AccountLocked, match="After 2 failures in a row the account is locked until 2026-01-01T09:02"
        ):
            strict.sign_in("b", email=other, password=WRONG_PASSWORD)
        clock.advance(minutes=1, seconds=59)
        with pytest.raises(AccountLocked):
            strict.sign_in("b", email=other, password=PASSWORD)
        clock.advance(seconds=1)
        assert strict.sign_in("b", email=other, password=PASSWORD).state is State.SignedIn
    finally:
        strict.close()


# -- the encryption key ------------------------------------------------------------------------


def _three_onboardings(engine: Engine) -> dict[str, str]:
    engine.portal.create_account(EMAIL, PASSWORD, company="Acme")
    keys: dict[str, str] = {}
    for stream in ("a", "b", "c"):
        engine.access(stream)
        engine.sign_in(stream, email=EMAIL, password=PASSWORD)
        generated = engine.generate_key(stream, description=stream)
        engine.copy_key(stream)
        engine.save_config(stream, key=generated.key)
        assert engine.access(stream).state is State.Validated
        keys[generated.key_id] = generated.key
    return keys


def _ciphertexts(engine: Engine) -> set[str]:
    with engine.database.read() as conn:
        return {
            *conn.execute(sa.select(config_table.c.ciphertext)).scalars(),
            *conn.execute(sa.select(api_keys.c.ciphertext)).scalars(),
        }


def _all_secrets_open(engine: Engine, keys: dict[str, str]) -> None:
    """Every saved key still verifies and unseals, and the portal still hands back every key it holds."""
    revealed: list[str] = []

    class Revealing:
        """A plug-in verifier unseals the saved key it is handed, as a remote authority's client does."""

        def verify(self, saved: SavedKey | None, at: datetime) -> Verdict:
            assert saved is not None
            revealed.append(saved.reveal())
            return Verdict.missing()

    for stream in ("a", "b", "c"):
        assert engine.access(stream).state is State.Validated
        embedded, engine.verifier = engine.verifier, Revealing()
        try:
            engine.saved_key_status(stream)
        finally:
            engine.verifier = embedded
    assert len(revealed) == 3 and set(revealed) <= set(keys.values())
    for key_id, key in keys.items():
        engine.access("reader")
        engine.sign_in("reader", email=EMAIL, password=PASSWORD)
        assert engine.copy_key("reader", key_id=key_id).key == key


def test_rotation_with_a_key_file_reseals_everything(tmp_path: Path, clock: MovableClock) -> None:
    url = f"sqlite:///{tmp_path}/keytrail.db"
    key_file = tmp_path / "keytrail.db.key"
    engine = Engine.open(url, clock=clock)
    try:
        keys = _three_onboardings(engine)
        old_secret = key_file.read_text().strip()
        before = _ciphertexts(engine)
        new_secret = generate_secret_key()
        assert engine.admin.rotate_secret_key(new_secret) == 6
        assert key_file.read_text().split() == [new_secret]
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        assert _ciphertexts(engine).isdisjoint(before) and len(_ciphertexts(engine)) == 6
        _all_secrets_open(engine, keys)
        assert engine.verify().ok
    finally:
        engine.close()
    with Engine.open(url, clock=clock) as reopened:
        _all_secrets_open(reopened, keys)
    key_file.write_text(old_secret + "\n")
    with (
        Engine.open(url, clock=clock) as stale,
        pytest.raises(SecretKeyError, match="not the one this database was sealed with"),
    ):
        stale.admin.check_secret_key()


def test_rotation_with_the_environment_key(db_url: str, clock: MovableClock, monkeypatch: pytest.MonkeyPatch) -> None:
    old_secret, new_secret = generate_secret_key(), generate_secret_key()
    monkeypatch.setenv(SECRET_KEY_ENV, old_secret)
    with Engine.open(db_url, clock=clock) as engine:
        keys = _three_onboardings(engine)
        assert engine.admin.rotate_secret_key(new_secret) == 6
        _all_secrets_open(engine, keys)
    with (
        Engine.open(db_url, clock=clock) as stale,
        pytest.raises(SecretKeyError, match="not the one this database was sealed with"),
    ):
        stale.admin.check_secret_key()
    for value in (new_secret, f"{new_secret},{old_secret}", f"{new_secret} {old_secret}"):
        monkeypatch.setenv(SECRET_KEY_ENV, value)
        with Engine.open(db_url, clock=clock) as engine:
            _all_secrets_open(engine, keys)
            assert engine.verify().ok


def test_a_failed_rotation_changes_nothing_and_loses_nothing(
    tmp_path: Path, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed key is refused; a crash inside the transaction rolls back and the key file opens both."""
    url = f"sqlite:///{tmp_path}/keytrail.db"
    key_file = tmp_path / "keytrail.db.key"
    engine = Engine.open(url, clock=clock)
    try:
        keys = _three_onboardings(engine)
        before = snapshot(engine)
        file_before = key_file.read_text()
        with pytest.raises(SecretKeyError, match="malformed") as caught:
            engine.admin.rotate_secret_key("0123456789abcdef-not-a-fernet-key")
        assert "0123456789abcdef" not in str(caught.value)
        assert snapshot(engine) == before and key_file.read_text() == file_before

        def crash(*_args: object) -> int:
            raise OSError("the disk went away")

        monkeypatch.setattr(engine.portal, "reseal_keys_in", crash)
        new_secret = generate_secret_key()
        with pytest.raises(OSError, match="disk went away"):
            engine.admin.rotate_secret_key(new_secret)
        assert snapshot(engine) == before
        assert key_file.read_text().split() == [new_secret, file_before.strip()]
        _all_secrets_open(engine, keys)
    finally:
        engine.close()
    with Engine.open(url, clock=clock) as reopened:
        _all_secrets_open(reopened, keys)
        assert reopened.verify().ok


def test_a_wrong_or_missing_key_is_a_clear_error_never_garbage(
    db_url: str, clock: MovableClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = generate_secret_key()
    monkeypatch.setenv(SECRET_KEY_ENV, secret)
    with Engine.open(db_url, clock=clock) as engine:
        _three_onboardings(engine)
        before = snapshot(engine)
    monkeypatch.setenv(SECRET_KEY_ENV, generate_secret_key())
    with (
        Engine.open(db_url, clock=clock) as wrong,
        pytest.raises(SecretKeyError, match=f"from {SECRET_KEY_ENV} is not the one this database was sealed with"),
    ):
        wrong.save_config("reader", key="k" * 20)
    monkeypatch.delenv(SECRET_KEY_ENV)
    missing = tmp_path / "nowhere" / "keytrail.key"
    monkeypatch.setenv(SECRET_KEY_FILE_ENV, str(missing))
    with (
        Engine.open(db_url, clock=clock) as keyless,
        pytest.raises(SecretKeyError, match=f"key file {missing} does not exist"),
    ):
        keyless.save_config("reader", key="k" * 20)
    assert not missing.exists()
    monkeypatch.delenv(SECRET_KEY_FILE_ENV)
    monkeypatch.setenv(SECRET_KEY_ENV, secret)
    with Engine.open(db_url, clock=clock) as engine:
        assert snapshot(engine) == before
        # A stored key altered behind keytrail's back is named, not returned as garbage.
        key_id = engine.portal.list_keys(EMAIL)[0].key_id
        with engine.database.write() as conn:
            conn.execute(sa.update(api_keys).where(api_keys.c.key_id == key_id).values(ciphertext="gAAAAAtampered"))
        engine.access("reader")
        engine.sign_in("reader", email=EMAIL, password=PASSWORD)
        tampered = snapshot(engine)
        with pytest.raises(SecretKeyError, match=f"Key {key_id} cannot be decrypted"):
            engine.copy_key("reader", key_id=key_id)
        assert snapshot(engine) == tampered
