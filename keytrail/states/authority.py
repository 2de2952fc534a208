"""The key authority's actions as pure data: which entity each concerns and the steps each entity may take.

Every action of the authority (an account created, a failed sign-in, a lockout, a key generated
or revoked, the encryption key rotated, an HTTP token created or revoked) is an event of the
same hash-chained log as the onboardings, in a stream of the entity it concerns:

============================  =========================================  ============================
stream                        actions (source -> dest)                   entity id in ``data``
============================  =========================================  ============================
``@account:<account_id>``     account_created New->Active;               ``account_id``
                              sign_in_failed Active->Active,
                              Locked->Locked; account_locked
                              Active|Locked->Locked; account_unlocked
                              Locked->Active
``@key:<key_id>``             key_generated New->Active;                 ``key_id``
                              key_revoked Active->Revoked
``@token:<name>``             token_created New->Active;                 ``name``
                              token_revoked Active->Revoked
``@encryption``               encryption_key_rotated New|Current->Current
============================  =========================================  ============================

A stream per entity rather than one authority stream: the audit of a key reads that key's
stream alone, and writers of different keys or accounts never wait for one another's row
lock (a single stream would queue every key generation of every onboarding behind one head).
An onboarding id begins with a letter or digit, so ``@`` can never name an onboarding.

Like :mod:`keytrail.states`, this module imports nothing else of keytrail's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "AUTHORITY_PREFIX",
    "LIFECYCLES",
    "MAX_TOKEN_NAME",
    "AuthorityAction",
    "AuthorityState",
    "Lifecycle",
    "authority_stream",
    "is_authority_stream",
    "lifecycle_of",
]

AUTHORITY_PREFIX = "@"
# The stream_id column holds 128 characters: "@token:" and a name of at most 120.
_MAX_STREAM = 128
MAX_TOKEN_NAME = 120


class AuthorityState(StrEnum):
    """Where an authority entity stands; ``New`` is the state before its first event."""

    New = "New"
    Active = "Active"
    Locked = "Locked"
    Revoked = "Revoked"
    Current = "Current"


class AuthorityAction(StrEnum):
    """What the key authority did; ``.value`` is the ``trigger`` column's spelling."""

    account_created = "account_created"
    sign_in_failed = "sign_in_failed"
    account_locked = "account_locked"
    account_unlocked = "account_unlocked"
    key_generated = "key_generated"
    key_revoked = "key_revoked"
    encryption_key_rotated = "encryption_key_rotated"
    token_created = "token_created"  # noqa: S105 - an action's name, not a secret
    token_revoked = "token_revoked"  # noqa: S105 - an action's name, not a secret


_A, _S = AuthorityAction, AuthorityState


@dataclass(frozen=True)
class Lifecycle:
    """One kind of entity: its stream prefix, the ``data`` field naming it, and its legal steps."""

    kind: str
    id_field: str | None
    steps: frozenset[tuple[AuthorityAction, AuthorityState, AuthorityState]]

    @property
    def actions(self) -> frozenset[AuthorityAction]:
        return frozenset(action for action, _, _ in self.steps)

    def step(self, action: AuthorityAction, source: AuthorityState) -> AuthorityState:
        """The state ``action`` leads to from ``source``; ValueError when it is not a step of this lifecycle."""
        for candidate, start, dest in self.steps:
            if candidate is action and start is source:
                return dest
        raise ValueError(f"{action.value} is not a step of {self.named} from {source.value}.")

    @property
    def named(self) -> str:
        """``an account``, ``a key``, ``the encryption key``: for sentences."""
        if self.id_field is None:
            return f"the {self.kind} key"
        return ("an " if self.kind[0] in "aeiou" else "a ") + self.kind


LIFECYCLES: dict[str, Lifecycle] = {
    life.kind: life
    for life in (
        Lifecycle(
            "account",
            "account_id",
            frozenset(
                {
                    (_A.account_created, _S.New, _S.Active),
                    (_A.sign_in_failed, _S.Active, _S.Active),
                    (_A.sign_in_failed, _S.Locked, _S.Locked),
                    (_A.account_locked, _S.Active, _S.Locked),
                    (_A.account_locked, _S.Locked, _S.Locked),
                    (_A.account_unlocked, _S.Locked, _S.Active),
                }
            ),
        ),
        Lifecycle(
            "key",
            "key_id",
            frozenset({(_A.key_generated, _S.New, _S.Active), (_A.key_revoked, _S.Active, _S.Revoked)}),
        ),
        Lifecycle(
            "token",
            "name",
            frozenset({(_A.token_created, _S.New, _S.Active), (_A.token_revoked, _S.Active, _S.Revoked)}),
        ),
        Lifecycle(
            "encryption",
            None,
            frozenset(
                {
                    (_A.encryption_key_rotated, _S.New, _S.Current),
                    (_A.encryption_key_rotated, _S.Current, _S.Current),
                }
            ),
        ),
    )
}


def is_authority_stream(stream_id: str) -> bool:
    """Whether ``stream_id`` is an authority entity's stream (no onboarding id begins with ``@``)."""
    return stream_id.startswith(AUTHORITY_PREFIX)


def authority_stream(kind: str, entity_id: str | None = None) -> str:
    """The stream of one entity: ``@key:key_0123``, ``@encryption``; one spelling, so SQL can build it too.

    Every entity id fits (token names are at most :data:`MAX_TOKEN_NAME` characters); a longer one
    is a ValueError, never a second spelling.
    """
    if kind not in LIFECYCLES:
        raise ValueError(f"{kind!r} is not a kind of authority entity.")
    if entity_id is None:
        return AUTHORITY_PREFIX + kind
    stream = f"{AUTHORITY_PREFIX}{kind}:{entity_id}"
    if len(stream) > _MAX_STREAM:
        raise ValueError(f"The id of a {kind} is too long for the log's stream id ({len(stream)} > {_MAX_STREAM}).")
    return stream


def lifecycle_of(stream_id: str) -> tuple[Lifecycle, str | None] | None:
    """The lifecycle and entity id an authority stream names (the id as spelled in the stream), or None."""
    if not is_authority_stream(stream_id):
        return None
    kind, _, entity_id = stream_id[len(AUTHORITY_PREFIX) :].partition(":")
    life = LIFECYCLES.get(kind)
    if life is None or (life.id_field is None) != (entity_id == ""):
        return None
    return life, entity_id or None
