"""Bad input, as one table: each row is one clear error, nothing written, the onboarding's state unchanged.

To add a case, add a row to ``CASES`` (or a value to one of the lists of bad values).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keytrail import Engine, State
from keytrail.errors import (
    AuthenticationFailed,
    ConcurrencyConflict,
    DuplicateAccount,
    IdempotencyMismatch,
    IllegalTransition,
    InvalidInput,
    KeytrailError,
    KeyUnusable,
    UnknownKey,
    UnknownOnboarding,
)
from keytrail.persistence.authority_store import accounts
from keytrail.persistence.store import events_table
from tests.helpers import EMAIL, PASSWORD, drive_to, snapshot

STREAM = "acme"
GOOD_KEY = "kt_" + "A" * 43
AUDIT_TABLES = ("sign_in_attempts", "accounts")  # a failed sign-in is recorded there, by design


@dataclass(frozen=True)
class Bad:
    """One bad input: where the onboarding stands, what is tried, and the error it must raise."""

    id: str
    state: State
    call: Callable[[Engine, Any], object]
    error: type[KeytrailError]
    match: str
    setup: Callable[[Engine], Any] | None = None
    secret: str | None = None  # must not appear in the error message
    audited: bool = False  # a failed sign-in: its attempt row is the one thing written


def _revoked_key(engine: Engine) -> str:
    key_id = str(engine.history(STREAM)[-1].data["key_id"])
    engine.portal.revoke_key(key_id)
    return key_id


def _other_accounts_key(engine: Engine) -> str:
    engine.portal.create_account("ops@globex.test", PASSWORD, company="Globex")
    engine.access("globex")
    engine.sign_in("globex", email="ops@globex.test", password=PASSWORD)
    return engine.generate_key("globex", description="Globex key").key_id


def _calling(command: str, **kwargs: Any) -> Callable[[Engine, Any], object]:
    """A call of one engine command on the test's onboarding, with values the type checker would refuse."""
    return lambda engine, _: getattr(engine, command)(STREAM, **kwargs)


def _use_idempotency_key(engine: Engine) -> None:
    engine.access(STREAM, idempotency_key="page-1")


CASES: list[Bad] = [
    # illegal triggers for the state
    Bad("copy_key-in-Prompted", State.Prompted, lambda e, _: e.copy_key(STREAM), IllegalTransition, "acme is Prompted"),
    Bad("proceed-in-Prompted", State.Prompted, lambda e, _: e.proceed(STREAM), IllegalTransition, "Allowed now"),
    Bad(
        "generate_key-in-Unverified",
        State.Unverified,
        lambda e, _: e.generate_key(STREAM, description="x"),
        IllegalTransition,
        "acme is Unverified",
    ),
    Bad(
        "sign_in-in-SignedIn",
        State.SignedIn,
        lambda e, _: e.sign_in(STREAM, email=EMAIL, password=PASSWORD),
        IllegalTransition,
        "sign_in is allowed only in Prompted",
    ),
    Bad(
        "register-in-Validated",
        State.Validated,
        lambda e, _: e.register(STREAM, email="new@acme.test", password=PASSWORD, company="Acme"),
        IllegalTransition,
        "acme is Validated",
    ),
    # unknown onboarding where one must exist
    Bad("state-of-unknown", State.Prompted, lambda e, _: e.state("ghost"), UnknownOnboarding, "no onboarding 'ghost'"),
    Bad("history-of-unknown", State.Prompted, lambda e, _: e.history("ghost"), UnknownOnboarding, "ghost"),
    Bad("replay-of-unknown", State.Prompted, lambda e, _: e.replay("ghost"), UnknownOnboarding, "ghost"),
    Bad("verify-of-unknown", State.Prompted, lambda e, _: e.verify("ghost"), UnknownOnboarding, "ghost"),
    Bad("status-of-unknown", State.Prompted, lambda e, _: e.status("ghost"), UnknownOnboarding, "ghost"),
    Bad(
        "saved-key-of-unknown",
        State.Prompted,
        lambda e, _: e.saved_key_status("ghost"),
        UnknownOnboarding,
        "ghost",
    ),
    # keys outside the limits
    Bad("key-empty", State.KeyCopied, lambda e, _: e.save_config(STREAM, key=""), InvalidInput, "this one has 0"),
    Bad(
        "key-blank",
        State.KeyCopied,
        lambda e, _: e.save_config(STREAM, key=" \t\n "),
        InvalidInput,
        "16 to 256",
    ),
    Bad(
        "key-short",
        State.KeyCopied,
        lambda e, _: e.save_config(STREAM, key="kt_short"),
        InvalidInput,
        "this one has 8",
        secret="kt_short",
    ),
    Bad(
        "key-overlong",
        State.KeyCopied,
        lambda e, _: e.save_config(STREAM, key="k" * 257),
        InvalidInput,
        "this one has 257",
        secret="k" * 257,
    ),
    Bad(
        "key-inner-space",
        State.KeyCopied,
        lambda e, _: e.save_config(STREAM, key="kt_secret part two"),
        InvalidInput,
        "character 10 of 18",
        secret="kt_secret part two",
    ),
    Bad(
        "key-NUL",
        State.KeyCopied,
        lambda e, _: e.save_config(STREAM, key="kt_secretsecret\x00x"),
        InvalidInput,
        "character 16 of 17",
        secret="kt_secretsecret",
    ),
    Bad(
        "key-control-char",
        State.KeyCopied,
        lambda e, _: e.save_config(STREAM, key="kt_secret\x1bsecretsecret"),
        InvalidInput,
        "printable ASCII",
        secret="kt_secret",
    ),
    Bad(
        "key-unicode",
        State.KeyCopied,
        lambda e, _: e.save_config(STREAM, key="kt_clé-secrète-amazon"),
        InvalidInput,
        "printable ASCII",
        secret="secrète",
    ),
    Bad("key-not-a-string", State.KeyCopied, _calling("save_config", key=None), InvalidInput, "NoneType"),
    Bad(
        "asterisks-with-nothing-saved",
        State.KeyCopied,
        lambda e, _: e.save_config(STREAM, key="******"),
        InvalidInput,
        "no saved key",
    ),
    # descriptions outside the limits
    *[
        Bad(
            f"description-{name}",
            State.SignedIn,
            _calling("generate_key", description=d),
            InvalidInput,
            m,
        )
        for name, d, m in [
            ("empty", "", "1 to 255"),
            ("overlong", "d" * 256, "this one has 256"),
            ("NUL", "Amazon\x00Sales", "printable"),
            ("newline", "Amazon\nSales", "printable"),
            ("escape", "\x1b[31mAmazon", "printable"),
            ("bidi-override", "Amazon\u202eselaS", "printable"),
            ("bytes", b"Amazon Sales Channel", "not a bytes"),
        ]
    ],
    # accounts and credentials
    Bad(
        "wrong-password",
        State.Prompted,
        lambda e, _: e.sign_in(STREAM, email=EMAIL, password="hunter2-wrong-password"),
        AuthenticationFailed,
        "wrong email or password",
        secret="hunter2-wrong-password",
        audited=True,
    ),
    Bad(
        "unknown-account",
        State.Prompted,
        lambda e, _: e.sign_in(STREAM, email="nobody@acme.test", password="hunter2-some-password"),
        AuthenticationFailed,
        "wrong email or password",
        secret="hunter2-some-password",
        audited=True,
    ),
    Bad(
        "no-session-to-reuse",
        State.Prompted,
        lambda e, _: e.sign_in(STREAM, email=EMAIL),
        AuthenticationFailed,
        "no live session",
        audited=True,
    ),
    Bad(
        "duplicate-account-register",
        State.Prompted,
        lambda e, _: e.register(STREAM, email=EMAIL, password="another password", company="Acme"),
        DuplicateAccount,
        "already exists",
        secret="another password",
    ),
    Bad(
        "duplicate-account-other-case",
        State.Prompted,
        lambda e, _: e.portal.create_account("OPS@Acme.TEST", "another password", company="Acme"),
        DuplicateAccount,
        "already exists",
        secret="another password",
    ),
    Bad(
        "password-too-short",
        State.Prompted,
        lambda e, _: e.register(STREAM, email="new@acme.test", password="s3cr3t", company="Acme"),
        InvalidInput,
        "this one has 6",
        secret="s3cr3t",
    ),
    Bad(
        "password-NUL",
        State.Prompted,
        lambda e, _: e.register(STREAM, email="new@acme.test", password="secret\x00secret", company="Acme"),
        InvalidInput,
        "NUL",
        secret="secret\x00secret",
    ),
    Bad(
        "password-overlong",
        State.Prompted,
        lambda e, _: e.sign_in(STREAM, email=EMAIL, password="p" * 1025),
        InvalidInput,
        "this one has 1025",
        secret="p" * 1025,
    ),
    *[
        Bad(
            f"email-{name}",
            State.Prompted,
            _calling("sign_in", email=m, password=PASSWORD),
            InvalidInput,
            "not a valid email",
        )
        for name, m in [
            ("empty", ""),
            ("no-at", "ops.acme.test"),
            ("no-domain-dot", "ops@acme"),
            ("two-ats", "ops@acme@test"),
            ("space", "ops @acme.test"),
            ("newline", "ops@acme.test\n"),
            ("overlong", "o" * 250 + "@acme.test"),
        ]
    ],
    Bad(
        "company-empty",
        State.Prompted,
        lambda e, _: e.register(STREAM, email="new@acme.test", password=PASSWORD, company="  "),
        InvalidInput,
        "company name",
    ),
    Bad(
        "company-control",
        State.Prompted,
        lambda e, _: e.register(STREAM, email="new@acme.test", password=PASSWORD, company="Acme\x07"),
        InvalidInput,
        "company name",
    ),
    # keys in the portal
    Bad(
        "revoked-key-copied",
        State.KeyGenerated,
        lambda e, _: e.copy_key(STREAM),
        KeyUnusable,
        "was revoked at",
        setup=_revoked_key,
    ),
    Bad(
        "revoked-key-copied-by-id",
        State.KeyGenerated,
        lambda e, key_id: e.copy_key(STREAM, key_id=key_id),
        KeyUnusable,
        "generate a new key instead",
        setup=_revoked_key,
    ),
    Bad(
        "key-id-of-another-account",
        State.SignedIn,
        lambda e, key_id: e.copy_key(STREAM, key_id=key_id),
        UnknownKey,
        "has no key key_",
        setup=_other_accounts_key,
    ),
    Bad(
        "key-id-unknown",
        State.SignedIn,
        lambda e, _: e.copy_key(STREAM, key_id="key_00000000deadbeef"),
        UnknownKey,
        "key_00000000deadbeef",
    ),
    *[
        Bad(
            f"key-id-{name}",
            State.SignedIn,
            _calling("copy_key", key_id=k),
            InvalidInput,
            "is not a key id",
        )
        for name, k in [
            ("path", "../key_00000000deadbeef"),
            ("sql", "key_' OR 1=1 --"),
            ("upper", "key_00000000DEADBEEF"),
        ]
    ],
    Bad(
        "revoke-unknown",
        State.Prompted,
        lambda e, _: e.portal.revoke_key("key_0123456789abcdef"),
        UnknownKey,
        "to revoke",
    ),
    # the other options of every command
    Bad("actor-empty", State.Prompted, lambda e, _: e.access(STREAM, actor=""), InvalidInput, "actor"),
    Bad("actor-overlong", State.Prompted, lambda e, _: e.access(STREAM, actor="a" * 129), InvalidInput, "actor"),
    Bad("actor-newline", State.Prompted, lambda e, _: e.access(STREAM, actor="jane\nroot"), InvalidInput, "actor"),
    Bad(
        "idempotency-space",
        State.Prompted,
        lambda e, _: e.access(STREAM, idempotency_key="req 1"),
        InvalidInput,
        "idempotency key",
    ),
    Bad(
        "idempotency-overlong",
        State.Prompted,
        lambda e, _: e.access(STREAM, idempotency_key="r" * 256),
        InvalidInput,
        "idempotency key",
    ),
    Bad(
        "idempotency-reused-for-another-trigger",
        State.Prompted,
        lambda e, _: e.save_config(STREAM, key=GOOD_KEY, idempotency_key="page-1"),
        IdempotencyMismatch,
        "already used on acme for access",
        setup=_use_idempotency_key,
    ),
    Bad(
        "expected-version-stale",
        State.Prompted,
        lambda e, _: e.access(STREAM, expected_version=0),
        ConcurrencyConflict,
        "not the expected version 0",
    ),
    Bad(
        "expected-version-negative",
        State.Prompted,
        lambda e, _: e.access(STREAM, expected_version=-1),
        InvalidInput,
        "expected_version",
    ),
]

BAD_STREAM_IDS = [
    "",
    "x" * 129,
    "../x",
    "..",
    "/etc/passwd",
    "a/b",
    "a\\b",
    ".hidden",
    "-x",
    "_x",
    "acme store",
    "acme\x00",
    "acme\n",
    "acme\t1",
    "café",
    "ａｃｍｅ",  # fullwidth letters
    "acme'; DROP TABLE events;--",
    "acme%00",
    "acme*",
]


def _all_reads_and_commands(stream: Any) -> list[Callable[[Engine], object]]:
    return [
        lambda e: e.access(stream),
        lambda e: e.sign_in(stream, email=EMAIL, password=PASSWORD),
        lambda e: e.register(stream, email="new@acme.test", password=PASSWORD, company="Acme"),
        lambda e: e.generate_key(stream, description="Amazon Sales Channel"),
        lambda e: e.copy_key(stream, key_id="key_0123456789abcdef"),
        lambda e: e.save_config(stream, key=GOOD_KEY),
        lambda e: e.proceed(stream),
        lambda e: e.state(stream),
        lambda e: e.status(stream),
        lambda e: e.history(stream),
        lambda e: e.replay(stream),
        lambda e: e.verify(stream),
        lambda e: list(e.events(stream)),
        lambda e: e.saved_key_status(stream),
    ]


def _state_of(engine: Engine, stream: str) -> State | None:
    try:
        return engine.state(stream)
    except UnknownOnboarding:
        return None


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_clear_error_and_writes_nothing(engine: Engine, case: Bad) -> None:
    drive_to(engine, STREAM, case.state)
    context = case.setup(engine) if case.setup is not None else None
    state_before = _state_of(engine, STREAM)
    skip = AUDIT_TABLES if case.audited else ()
    # An audited refusal (a failed sign-in) is recorded, in the attempts and the account's authority stream.
    before = snapshot(engine, skip=skip, authority_log=not case.audited)
    attempts_before = len(engine.portal.sign_in_attempts())
    with pytest.raises(case.error, match=case.match) as caught:
        case.call(engine, context)
    message = str(caught.value)
    assert message.endswith((".", ")")), f"not a sentence: {message!r}"
    assert "\n" not in message.rstrip("\n")
    if case.secret is not None:
        assert case.secret not in message and case.secret not in repr(caught.value)
    assert snapshot(engine, skip=skip, authority_log=not case.audited) == before
    assert _state_of(engine, STREAM) == state_before
    attempts = engine.portal.sign_in_attempts()
    if case.audited:
        assert len(attempts) == attempts_before + 1
        assert attempts[-1].stream_id == STREAM and attempts[-1].outcome != "ok_password"
    else:
        assert len(attempts) == attempts_before
    assert engine.verify().ok


@pytest.mark.parametrize("stream", BAD_STREAM_IDS, ids=lambda s: repr(s)[:40])
def test_bad_onboarding_ids_are_refused_by_every_command(engine: Engine, stream: str) -> None:
    """Empty, overlong, path-like, control characters, NUL, unicode, SQL: refused before any lookup or write."""
    drive_to(engine, STREAM, State.Prompted)
    before = snapshot(engine)
    for call in _all_reads_and_commands(stream):
        with pytest.raises(InvalidInput, match="not a valid onboarding id") as caught:
            call(engine)
        assert len(str(caught.value)) < 300
    for call in _all_reads_and_commands(123):
        with pytest.raises(InvalidInput, match="must be a string, not a int"):
            call(engine)
    assert snapshot(engine) == before


def test_a_128_character_id_is_the_longest_accepted(engine: Engine) -> None:
    assert engine.access("a" * 128).version == 1
    with pytest.raises(InvalidInput):
        engine.access("a" * 129)


def test_a_key_with_surrounding_whitespace_is_trimmed_then_saved(engine: Engine) -> None:
    """The decision: trim (a pasted key often carries a newline); the saved key is the trimmed one."""
    key = drive_to(engine, STREAM, State.KeyCopied)
    assert key is not None
    engine.save_config(STREAM, key=f"\t {key} \r\n")
    assert engine.history(STREAM)[-1].data["hint"] == key[-4:]
    assert engine.access(STREAM).state is State.Validated


HOSTILE = [
    "Robert'); DROP TABLE events;--",
    "' OR '1'='1' --",
    '"; SELECT pg_sleep(30); --',
    "Ünïcødé 🔑 描述 שלום ﷽",
    "%s %(x)s {0} ${x} \\x00 \\' \\\\",
]


@pytest.mark.parametrize("text", HOSTILE, ids=["drop", "or", "pg_sleep", "unicode", "formats"])
def test_unicode_and_sql_are_stored_as_data_in_every_text_field(engine: Engine, text: str) -> None:
    """Each text field keeps the hostile value verbatim; no statement runs; every table is still there."""
    email = "o'brien+" + str(abs(hash(text)) % 1000) + "@exämple.test"
    password = "pw " + text
    engine.access(STREAM, actor=text)
    engine.register(STREAM, email=email, password=password, company=text, actor=text)
    generated = engine.generate_key(STREAM, description=text, actor=text)
    engine.copy_key(STREAM, actor=text)
    engine.save_config(STREAM, key=generated.key, actor=text, idempotency_key="x';DROP-TABLE-events;--")
    engine.access("other", actor=text)
    assert engine.sign_in("other", email=email.upper(), password=password).state is State.SignedIn
    ascii_key = "';DROP/**/TABLE/**/events;--'"
    assert engine.save_config("other", key=ascii_key).state is State.ConfigSaved
    history = engine.history(STREAM)
    assert {event.actor for event in history} == {text}
    assert history[2].data["description"] == text
    assert history[1].data["company"] == text
    # Stored as its digest (exports print the log), and a retry with the hostile key still finds it.
    stored = history[-1].idempotency_key
    assert stored is not None and stored.startswith("idem:")
    retried = engine.save_config(STREAM, key=generated.key, idempotency_key="x';DROP-TABLE-events;--")
    assert retried.replayed and retried.version == history[-1].version
    account = engine.portal.find_account(email)
    assert account is not None and account.company == text
    assert [k.description for k in engine.portal.list_keys(email)] == [text]
    with engine.database.read() as conn:
        # 8 of the onboardings', and the authority's account_created and key_generated (the text in their data).
        assert conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar_one() == 8 + 2
        assert conn.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one() == 1
    assert engine.verify().ok


# -- arguments of Engine.open and of reads: one InvalidInput each, never another exception ------------------

_TOO_LONG = timedelta(days=999_999_999)
_MINUS_12 = timezone(timedelta(hours=-12))

BAD_OPEN_ARGUMENTS: list[tuple[str, Callable[[Path], object], str]] = [
    ("url-None", lambda _: Engine.open(None), "database URL"),  # type: ignore[arg-type]
    ("url-int", lambda _: Engine.open(42), "database URL"),  # type: ignore[arg-type]
    ("url-bytes", lambda p: Engine.open(f"sqlite:///{p}/k.db".encode()), "database URL"),  # type: ignore[arg-type]
    ("url-NUL", lambda p: Engine.open(f"sqlite:///{p}/k\x00.db"), "NUL"),
    ("url-query", lambda p: Engine.open(f"sqlite:///{p}/k.db?mode=ro&uri=true"), "query"),
    ("url-long", lambda p: Engine.open("nosuchdb://" + "x" * 100_000), "100011 characters"),
    ("url-long-host", lambda p: Engine.open("postgresql://u@" + "h" * 100 + "/db"), "not a valid host name"),
    ("retries-negative", lambda p: Engine.open(f"sqlite:///{p}/k.db", retries=-1), "retries"),
    ("retries-float", lambda p: Engine.open(f"sqlite:///{p}/k.db", retries=1.5), "retries"),  # type: ignore[arg-type]
    ("retries-bool", lambda p: Engine.open(f"sqlite:///{p}/k.db", retries=True), "retries"),
    ("busy-nan", lambda p: Engine.open(f"sqlite:///{p}/k.db", busy_timeout=math.nan), "busy_timeout"),
    ("busy-inf", lambda p: Engine.open(f"sqlite:///{p}/k.db", busy_timeout=math.inf), "busy_timeout"),
    ("busy-negative", lambda p: Engine.open(f"sqlite:///{p}/k.db", busy_timeout=-1), "busy_timeout"),
    ("busy-str", lambda p: Engine.open(f"sqlite:///{p}/k.db", busy_timeout="5"), "busy_timeout"),  # type: ignore[arg-type]
    ("key-lifetime-huge", lambda p: Engine.open(f"sqlite:///{p}/k.db", key_lifetime=_TOO_LONG), "key_lifetime"),
    ("key-lifetime-int", lambda p: Engine.open(f"sqlite:///{p}/k.db", key_lifetime=365), "key_lifetime"),  # type: ignore[arg-type]
    ("session-huge", lambda p: Engine.open(f"sqlite:///{p}/k.db", session_lifetime=_TOO_LONG), "session_lifetime"),
    ("lockout-huge", lambda p: Engine.open(f"sqlite:///{p}/k.db", lockout=_TOO_LONG), "lockout"),
    (
        "max-failed-str",
        lambda p: Engine.open(f"sqlite:///{p}/k.db", max_failed_sign_ins="5"),  # type: ignore[arg-type]
        "max_failed_sign_ins",
    ),
]


@pytest.mark.parametrize(("call", "match"), [c[1:] for c in BAD_OPEN_ARGUMENTS], ids=[c[0] for c in BAD_OPEN_ARGUMENTS])
def test_bad_open_arguments_are_one_clear_error_and_create_nothing(
    tmp_path: Path, call: Callable[[Path], object], match: str
) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    with pytest.raises(InvalidInput, match=match) as caught:
        call(folder)
    message = str(caught.value)
    assert len(message) < 400 and "\n" not in message and message.endswith((".", ")"))
    assert list(folder.iterdir()) == []


BAD_INSTANTS: list[tuple[str, object, str]] = [
    ("string", "2026-01-01T00:00:00Z", "a str"),
    ("date-number", 20260101, "not a int"),
    ("naive", datetime(2026, 1, 1), "timezone-aware"),  # the bad input under test
    ("past-the-end-in-utc", datetime(9999, 12, 31, 23, 59, 59, tzinfo=_MINUS_12), "outside"),
]


@pytest.mark.parametrize(("as_of", "match"), [c[1:] for c in BAD_INSTANTS], ids=[c[0] for c in BAD_INSTANTS])
def test_replay_as_of_must_be_an_aware_datetime_in_range(engine: Engine, as_of: object, match: str) -> None:
    drive_to(engine, STREAM, State.Prompted)
    with pytest.raises(InvalidInput, match=match):
        engine.replay(STREAM, as_of=as_of)  # type: ignore[arg-type]


def test_times_in_outcomes_always_carry_microseconds(db_url: str) -> None:
    """An event at a whole second is spelled like every other time (the --json schema of docs/cli.md)."""
    whole = datetime(2026, 1, 1, 9, 0, 0, tzinfo=UTC)
    with Engine.open(db_url, clock=lambda: whole) as engine:
        drive_to(engine, STREAM, State.SignedIn)
        generated = engine.generate_key(STREAM, description="Amazon Sales Channel").as_dict()
    assert generated["occurred_at"] == "2026-01-01T09:00:00.000000+00:00"
    assert generated["expires_at"] == "2027-01-01T09:00:00.000000+00:00"
