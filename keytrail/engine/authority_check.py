"""The authority's tables held to the log: each account, key and token row must say what its stream says.

The tables are what the portal decides over (a key's expiry and revocation, a token's); the
log is what auditors trust. A row edited to un-revoke a key, extend its expiry or swap its
fingerprint, a row with no stream, and a stream whose row was deleted are each named by
``verify``, as a problem of kind ``authority`` on the entity's stream.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from keytrail.engine.results import Problem
from keytrail.events import iso_utc
from keytrail.persistence.authority_store import AuthorityRows
from keytrail.states.authority import AuthorityState

__all__ = ["table_problems"]

_REVOKED = AuthorityState.Revoked.value
_LOCKED = AuthorityState.Locked.value


def _data(text: Any) -> dict[str, Any]:
    """An event's data read as text; {} when absent or unreadable (verify reports the row itself)."""
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso_utc(value)


def _revocation(table: str, what: str, revoked_at: datetime | None, state: str, data: Any) -> str | None:
    if (revoked_at is not None) != (state == _REVOKED):
        said = "revoked" if revoked_at is not None else "not revoked"
        return f"{table} says {what} is {said}, but its stream in the log says {state}."
    if revoked_at is not None and _data(data).get("revoked_at") != iso_utc(revoked_at):
        return f"{table} says {what} was revoked at {iso_utc(revoked_at)}, but the log records another time."
    return None


def table_problems(rows: AuthorityRows) -> list[Problem]:
    """What is wrong between the authority's tables and the log, one problem per entity."""
    problems: list[Problem] = []

    def problem(stream: str, version: int | None, message: str) -> None:
        problems.append(Problem(stream, version or 0, "authority", message))

    for key_id, account_id, fingerprint, expires_at, revoked_at, state, version, first, second in rows.keys:
        stream, what = f"@key:{key_id}", f"key {key_id}"
        if state is None:
            problem(stream, 0, f"api_keys holds {what}, but the log has no key_generated event for it.")
            continue
        issued = _data(first)
        recorded = (issued.get("account_id"), issued.get("fingerprint"), issued.get("expires_at"))
        if recorded != (account_id, fingerprint, _iso(expires_at)):
            problem(
                stream,
                1,
                f"api_keys says {what} belongs to {account_id}, has fingerprint {fingerprint[:20]}... and expires at "
                f"{_iso(expires_at)}, but its key_generated event says otherwise: the row was edited.",
            )
            continue
        revocation = _revocation("api_keys", what, revoked_at, state, second)
        if revocation is not None:
            problem(stream, version, revocation)
    for account_id, email, locked_until, state, version, first, last_lock in rows.accounts:
        stream = f"@account:{account_id}"
        if state is None:
            problem(stream, 0, f"accounts holds account {account_id}, but the log has no account_created event for it.")
        elif _data(first).get("email") != email:
            problem(stream, 1, f"accounts says account {account_id} has the email {email}, but the log says otherwise.")
        elif (state == _LOCKED) != (locked_until is not None) or (
            locked_until is not None and _data(last_lock).get("locked_until") != iso_utc(locked_until)
        ):
            # Locked in the log until a password sign-in ends it; the table keeps locked_until until then.
            said = "no lockout" if locked_until is None else f"a lockout until {iso_utc(locked_until)}"
            problem(
                stream,
                version,
                f"accounts says account {account_id} has {said}, but its stream in the log says {state} "
                "with another lockout: the row was edited.",
            )
    for name, scope, token_hash, revoked_at, state, version, first, second in rows.tokens:
        stream = f"@token:{name}"
        if state is None:
            problem(stream, 0, f"api_tokens holds token {name!r}, but the log has no token_created event for it.")
            continue
        created = _data(first)
        if (created.get("scope"), created.get("token_hash")) != (scope, token_hash):
            problem(
                stream,
                1,
                f"api_tokens says token {name!r} has scope {scope} and a hash its token_created event does not "
                "record: the row was edited (a scope raised, or the token swapped).",
            )
            continue
        revocation = _revocation("api_tokens", f"token {name!r}", revoked_at, state, second)
        if revocation is not None:
            problem(stream, version, revocation)
    for stream in rows.rowless:
        problem(stream, 0, f"the log holds {stream}, but its table has no row of it: the row was deleted.")
    return problems
