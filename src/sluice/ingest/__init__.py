"""The Segment-compatible Tracking API (DESIGN §4.1): ``create_ingest_app`` and its parts."""

from __future__ import annotations

from sluice.ingest.app import DEFAULT_MAX_BACKLOG, ENDPOINTS, IngestLimits, WriteKeyResolver, create_ingest_app
from sluice.ingest.dedupe import (
    DEFAULT_DEDUPE_MAX_ENTRIES,
    DEFAULT_DEDUPE_WINDOW_S,
    Deduplicator,
    MemoryDeduplicator,
)
from sluice.ingest.request import IngestError
from sluice.ingest.stats import IngestSnapshot, IngestStats

__all__ = [
    "DEFAULT_DEDUPE_MAX_ENTRIES",
    "DEFAULT_DEDUPE_WINDOW_S",
    "DEFAULT_MAX_BACKLOG",
    "ENDPOINTS",
    "Deduplicator",
    "IngestError",
    "IngestLimits",
    "IngestSnapshot",
    "IngestStats",
    "MemoryDeduplicator",
    "WriteKeyResolver",
    "create_ingest_app",
]
