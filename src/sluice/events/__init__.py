"""Segment-spec events: the dict-based model, its pure helpers and per-type validation.

Pure code, no I/O. Events are plain ``dict[str, Any]`` (they travel as JSON).
"""

from __future__ import annotations

from sluice.events.model import (
    EVENT_TYPES,
    TIMESTAMP_FIELDS,
    Event,
    EventType,
    ensure_message_id,
    event_type,
    format_timestamp,
    merge_batch_defaults,
    message_id,
    normalize_timestamps,
    parse_timestamp,
)
from sluice.events.validate import (
    MAX_EVENT_BYTES,
    MAX_MESSAGE_ID_LENGTH,
    REASON_CODES,
    EventValidationError,
    Violation,
    validate_event,
    validate_or_raise,
)

__all__ = [
    "EVENT_TYPES",
    "MAX_EVENT_BYTES",
    "MAX_MESSAGE_ID_LENGTH",
    "REASON_CODES",
    "TIMESTAMP_FIELDS",
    "Event",
    "EventType",
    "EventValidationError",
    "Violation",
    "ensure_message_id",
    "event_type",
    "format_timestamp",
    "merge_batch_defaults",
    "message_id",
    "normalize_timestamps",
    "parse_timestamp",
    "validate_event",
    "validate_or_raise",
]
