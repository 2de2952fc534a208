"""The key authority's records in keytrail's database: all of its SQL, none of its rules.

The portal decides (lockout, session liveness, key verdicts) over the records this module
reads, and hands back what to write; :class:`StoredAuthorityRecords` is one transaction's view.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from keytrail.errors import IntegrityViolation
from keytrail.events import PendingEvent
from keytrail.persistence.authority_tables import AccountRow, ApiKeyRow, OnboardingSessionRow, SignInAttemptRow
from keytrail.persistence.commands import command_sql
from keytrail.persistence.database import Database
from keytrail.persistence.tables import ApiTokenRow, EventRow, StreamRow
from keytrail.portal.records import Account, AccountRecord, ApiKey, AuthorityEvent, KeyRecord, SignInAttempt
from keytrail.states.authority import LIFECYCLES, AuthorityAction, AuthorityState, authority_stream

__all__ = ["AuthorityRows", "AuthorityStore", "StoredAuthorityRecords", "accounts", "api_keys", "attempts", "sessions"]

accounts: sa.Table = AccountRow.__table__  # type: ignore[attr-defined]
api_keys: sa.Table = ApiKeyRow.__table__  # type: ignore[attr-defined]
sessions: sa.Table = OnboardingSessionRow.__table__  # type: ignore[attr-defined]
tokens: sa.Table = ApiTokenRow.__table__  # type: ignore[attr-defined]
attempts: sa.Table = SignInAttemptRow.__table__  # type: ignore[attr-defined]

_ACCOUNT = (accounts.c.account_id, accounts.c.email, accounts.c.company, accounts.c.created_at)
_ACCOUNT_RECORD = (*_ACCOUNT, accounts.c.password_hash, accounts.c.locked_until, accounts.c.failed_sign_ins)
_KEY = (
    api_keys.c.key_id,
    api_keys.c.account_id,
    api_keys.c.description,
    api_keys.c.fingerprint,
    api_keys.c.hint,
    api_keys.c.created_at,
    api_keys.c.expires_at,
    api_keys.c.revoked_at,
)
_ATTEMPT = (
    attempts.c.email,
    attempts.c.account_id,
    attempts.c.stream_id,
    attempts.c.outcome,
    attempts.c.actor,
    attempts.c.occurred_at,
)


def _account_record(row: Any) -> AccountRecord:
    return AccountRecord(Account(row[0], row[1], row[2], row[3]), row[4], row[5], row[6])


@dataclass(frozen=True)
class AuthorityRows:
    """The authority's tables beside the log (see :meth:`StoredAuthorityRecords.against_log`): per row,
    its own columns, then its stream's state and version and the data of its events 1 and 2 (None: absent)."""

    keys: list[Any]  # key_id, account_id, fingerprint, expires_at, revoked_at, ...
    accounts: list[Any]  # account_id, email, locked_until, ... (its latest account_locked as "event 2")
    tokens: list[Any]  # name, scope, token_hash, revoked_at, ...
    rowless: list[str]  # authority streams of a key, account or token that has no row


class StoredAuthorityRecords:
    """The authority's records inside one transaction of ``conn`` (the engine's, or the store's own)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def account(self, account_id: str) -> Account | None:
        row = self._conn.execute(sa.select(*_ACCOUNT).where(accounts.c.account_id == account_id)).first()
        return None if row is None else Account(*row)

    def account_by_email(self, email: str) -> AccountRecord | None:
        row = self._conn.execute(sa.select(*_ACCOUNT_RECORD).where(accounts.c.email == email)).first()
        return None if row is None else _account_record(row)

    def sign_in_view(self, email: str, stream_id: str | None) -> tuple[AccountRecord, datetime | None] | None:
        row = self._conn.execute(
            sa.select(*_ACCOUNT_RECORD, sessions.c.expires_at)
            .select_from(
                accounts.outerjoin(
                    sessions,
                    sa.and_(sessions.c.account_id == accounts.c.account_id, sessions.c.stream_id == stream_id),
                )
            )
            .where(accounts.c.email == email)
        ).first()
        return None if row is None else (_account_record(row), row[7])

    def add_account(self, record: AccountRecord) -> bool:
        account = record.account
        try:
            self._conn.execute(
                sa.insert(accounts),
                {
                    "account_id": account.account_id,
                    "email": account.email,
                    "company": account.company,
                    "password_hash": record.password_hash,
                    "failed_sign_ins": record.failed_sign_ins,
                    "created_at": account.created_at,
                },
            )
        except IntegrityError:
            return False
        return True

    def add_attempt(self, attempt: SignInAttempt) -> None:
        self._conn.execute(
            sa.insert(attempts),
            {
                "email": attempt.email,
                "account_id": attempt.account_id,
                "stream_id": attempt.stream_id,
                "outcome": attempt.outcome,
                "actor": attempt.actor,
                "occurred_at": attempt.occurred_at,
            },
        )

    def count_failure(self, account_id: str) -> int:
        self._conn.execute(
            sa.update(accounts)
            .where(accounts.c.account_id == account_id)
            .values(failed_sign_ins=accounts.c.failed_sign_ins + 1)
        )
        failures: int = self._conn.execute(
            sa.select(accounts.c.failed_sign_ins).where(accounts.c.account_id == account_id)
        ).scalar_one()
        return failures

    def lock_account(self, account_id: str, until: datetime) -> None:
        self._conn.execute(
            sa.update(accounts).where(accounts.c.account_id == account_id).values(failed_sign_ins=0, locked_until=until)
        )

    def set_password_hash(self, account_id: str, password_hash: str, *, replacing: str) -> None:
        self._conn.execute(
            sa.update(accounts)
            .where(accounts.c.account_id == account_id, accounts.c.password_hash == replacing)
            .values(password_hash=password_hash)
        )

    def clear_failures(self, account_id: str) -> None:
        self._conn.execute(
            sa.update(accounts).where(accounts.c.account_id == account_id).values(failed_sign_ins=0, locked_until=None)
        )

    def session_expiry(self, account_id: str, stream_id: str) -> datetime | None:
        expires: datetime | None = self._conn.execute(
            sa.select(sessions.c.expires_at).where(
                sessions.c.account_id == account_id, sessions.c.stream_id == stream_id
            )
        ).scalar_one_or_none()
        return expires

    def open_session(self, account_id: str, stream_id: str, opened_at: datetime, expires_at: datetime) -> None:
        moved = self._conn.execute(
            sa.update(sessions)
            .where(sessions.c.account_id == account_id, sessions.c.stream_id == stream_id)
            .values(opened_at=opened_at, expires_at=expires_at)
        ).rowcount
        if moved == 0:
            self._conn.execute(
                sa.insert(sessions),
                {"account_id": account_id, "stream_id": stream_id, "opened_at": opened_at, "expires_at": expires_at},
            )

    def end_sessions(self, email: str) -> None:
        self._conn.execute(
            sa.delete(sessions).where(
                sessions.c.account_id.in_(sa.select(accounts.c.account_id).where(accounts.c.email == email))
            )
        )

    def attempts(self, email: str | None) -> list[SignInAttempt]:
        query = sa.select(*_ATTEMPT).order_by(attempts.c.id)
        if email is not None:
            query = query.where(attempts.c.email == email)
        return [SignInAttempt(*row) for row in self._conn.execute(query)]

    def add_key(self, record: KeyRecord) -> None:
        info = record.info
        self._conn.execute(
            sa.insert(api_keys),
            {
                "key_id": info.key_id,
                "account_id": info.account_id,
                "description": info.description,
                "fingerprint": info.fingerprint,
                "hint": info.hint,
                "ciphertext": record.ciphertext,
                "created_at": info.created_at,
                "expires_at": info.expires_at,
                "revoked_at": info.revoked_at,
            },
        )

    def key(self, key_id: str) -> KeyRecord | None:
        row = self._conn.execute(sa.select(*_KEY, api_keys.c.ciphertext).where(api_keys.c.key_id == key_id)).first()
        return None if row is None else KeyRecord(ApiKey(*row[:8]), row[8])

    def key_by_fingerprint(self, fingerprint: str) -> ApiKey | None:
        row = self._conn.execute(sa.select(*_KEY).where(api_keys.c.fingerprint == fingerprint)).first()
        return None if row is None else ApiKey(*row)

    def keys_of(self, email: str) -> list[ApiKey]:
        query = (
            sa.select(*_KEY)
            .join(accounts, accounts.c.account_id == api_keys.c.account_id)
            .where(accounts.c.email == email)
            .order_by(api_keys.c.created_at, api_keys.c.key_id)
        )
        return [ApiKey(*row) for row in self._conn.execute(query)]

    def all_keys(self) -> list[ApiKey]:
        """Every key the authority holds (never a key itself), by id."""
        return [ApiKey(*row) for row in self._conn.execute(sa.select(*_KEY).order_by(api_keys.c.key_id))]

    def revoke_key(self, key_id: str, at: datetime) -> bool:
        revoked = self._conn.execute(
            sa.update(api_keys)
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        ).rowcount
        return bool(revoked == 1)

    def sealed_keys(self) -> list[tuple[str, str]]:
        rows = self._conn.execute(sa.select(api_keys.c.key_id, api_keys.c.ciphertext)).all()
        return [(key_id, ciphertext) for key_id, ciphertext in rows]

    def reseal_key(self, key_id: str, ciphertext: str) -> None:
        self._conn.execute(sa.update(api_keys).where(api_keys.c.key_id == key_id).values(ciphertext=ciphertext))

    def against_log(self) -> AuthorityRows:
        """Every account, key and token row beside its stream's projection and recording events, and
        every authority stream of an account, key or token with no row: what verify holds the tables to."""
        streams, events = StreamRow.__table__, EventRow.__table__  # type: ignore[attr-defined]
        found = AuthorityRows([], [], [], [])

        def joined(
            table: sa.Table, kind: str, id_column: sa.Column[Any], *columns: Any, second_trigger: str | None = None
        ) -> list[Any]:
            """The row's columns, its stream's state and version, and the data of its event 1 and of its
            event 2 (or, with ``second_trigger``, of its latest event of that trigger)."""
            s, first, second = streams.alias("s"), events.alias("first"), events.alias("second")
            stream_of = sa.literal(f"@{kind}:") + id_column
            second_version: Any = 2
            if second_trigger is not None:
                latest = events.alias("latest")
                second_version = (
                    sa.select(sa.func.max(latest.c.version))
                    .where(latest.c.stream_id == s.c.stream_id, latest.c.trigger == second_trigger)
                    .scalar_subquery()
                )
            query = (
                # The data as text: a damaged one is verify's finding, not a crash of this read.
                sa.select(
                    *columns, s.c.state, s.c.version, sa.cast(first.c.data, sa.Text), sa.cast(second.c.data, sa.Text)
                )
                .select_from(
                    table.outerjoin(s, s.c.stream_id == stream_of)
                    .outerjoin(first, sa.and_(first.c.stream_id == s.c.stream_id, first.c.version == 1))
                    .outerjoin(second, sa.and_(second.c.stream_id == s.c.stream_id, second.c.version == second_version))
                )
                .order_by(id_column)
            )
            return list(self._conn.execute(query))

        found.keys.extend(
            joined(
                api_keys,
                "key",
                api_keys.c.key_id,
                api_keys.c.key_id,
                api_keys.c.account_id,
                api_keys.c.fingerprint,
                api_keys.c.expires_at,
                api_keys.c.revoked_at,
            )
        )
        found.accounts.extend(
            joined(
                accounts,
                "account",
                accounts.c.account_id,
                accounts.c.account_id,
                accounts.c.email,
                accounts.c.locked_until,
                second_trigger="account_locked",
            )
        )
        found.tokens.extend(
            joined(
                tokens, "token", tokens.c.name, tokens.c.name, tokens.c.scope, tokens.c.token_hash, tokens.c.revoked_at
            )
        )
        for kind, table, id_column in (
            ("key", api_keys, api_keys.c.key_id),
            ("account", accounts, accounts.c.account_id),
            ("token", tokens, tokens.c.name),
        ):
            # The entity's id cut from the stream's (not the stream's built from the id): the table's
            # primary key answers each lookup, instead of a scan of the table per stream.
            entity_of = sa.func.substr(streams.c.stream_id, len(f"@{kind}:") + 1)
            rowless = (
                sa.select(streams.c.stream_id)
                .select_from(streams.outerjoin(table, id_column == entity_of))
                .where(streams.c.stream_id.startswith(f"@{kind}:", autoescape=True), id_column.is_(None))
                .order_by(streams.c.stream_id)
            )
            found.rowless.extend(row[0] for row in self._conn.execute(rowless))
        return found

    def record(self, event: AuthorityEvent, *, unless_done: bool = False) -> bool:
        """Append the action to its entity's stream, through the command path's own statements.

        The stream's row is locked first (PostgreSQL), and the event is dated no earlier than the
        stream's last one: two transactions that read the clock in one order may reach this
        stream in the other, and times never decrease within a stream.
        """
        life = LIFECYCLES[event.kind]
        stream = authority_stream(event.kind, event.entity_id)
        sql = command_sql(self._conn.dialect.name)
        dbapi: Any = self._conn.connection.driver_connection
        head = sql.load(dbapi, stream, None, lock=True).head
        source = AuthorityState.New if head is None else AuthorityState(head.state)
        action = AuthorityAction(event.action)
        try:
            dest = life.step(action, source)
        except ValueError as exc:
            if unless_done and any(a is action and end is source for a, _, end in life.steps):
                return False  # another transaction took this step first, after our reads
            raise IntegrityViolation(f"The log's {stream} cannot record it: {exc}") from None
        at = event.at if head is None or head.updated_at is None else max(event.at, head.updated_at)
        pending = PendingEvent(action.value, source.value, dest.value, None, event.data, event.actor, at, None)
        sql.append(dbapi, stream, head, pending)
        return True


class AuthorityStore:
    """The authority's records in ``db``, each read or write in a transaction of its own."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def shown(self) -> str:
        return self._db.shown

    @contextmanager
    def read(self) -> Iterator[StoredAuthorityRecords]:
        with self._db.read() as conn:
            yield StoredAuthorityRecords(conn)

    @contextmanager
    def write(self) -> Iterator[StoredAuthorityRecords]:
        with self._db.write() as conn:
            yield StoredAuthorityRecords(conn)
