"""Storage: the SQLModel schema, the event store and database URLs. Knows no machine logic."""

from keytrail.events import GENESIS_HASH, PendingEvent, RecordedEvent, canonical_json, event_hash
from keytrail.persistence.authority_store import AuthorityStore
from keytrail.persistence.database import Database, Durability, translate_error
from keytrail.persistence.store import EventStore, SavedConfig, StreamHead
from keytrail.persistence.tables import SCHEMA_VERSION, KeytrailTable

__all__ = [
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "AuthorityStore",
    "Database",
    "Durability",
    "EventStore",
    "KeytrailTable",
    "PendingEvent",
    "RecordedEvent",
    "SavedConfig",
    "StreamHead",
    "canonical_json",
    "event_hash",
    "translate_error",
]
