"""Storage: the SQLModel schema, connections, the command path's statements and the log's reads. Knows no machine logic."""

from keytrail.events import PendingEvent, RecordedEvent
from keytrail.persistence.commands import Loaded, SavedConfig, StreamHead
from keytrail.persistence.database import Database, Durability
from keytrail.persistence.faults import translate_error
from keytrail.persistence.tables import SCHEMA_VERSION, KeytrailTable

__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "Durability",
    "KeytrailTable",
    "Loaded",
    "PendingEvent",
    "RecordedEvent",
    "SavedConfig",
    "StreamHead",
    "translate_error",
]
