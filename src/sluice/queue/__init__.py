"""The event log: durable per-source append, independent per-destination consumption (DESIGN §2, §5)."""

from sluice.queue.base import (
    DEFAULT_ACKED_RETENTION_S,
    DEFAULT_DEAD_LETTER_RETENTION_S,
    DeadLetter,
    DeadLetterRecord,
    DestinationStats,
    EventLog,
    Leased,
    PruneResult,
    QueueError,
    QueueStats,
)
from sluice.queue.memory import MemoryEventLog
from sluice.queue.sqlite import SqliteEventLog

__all__ = [
    "DEFAULT_ACKED_RETENTION_S",
    "DEFAULT_DEAD_LETTER_RETENTION_S",
    "DeadLetter",
    "DeadLetterRecord",
    "DestinationStats",
    "EventLog",
    "Leased",
    "MemoryEventLog",
    "PruneResult",
    "QueueError",
    "QueueStats",
    "SqliteEventLog",
]
