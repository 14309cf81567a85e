"""Ingest counters: events accepted, failed (per source × reason code), duplicates, refusals."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["IngestSnapshot", "IngestStats"]


@dataclass(frozen=True, slots=True)
class IngestSnapshot:
    """A copy of the counters at one moment (plain dicts, safe to serialize)."""

    accepted: dict[str, int] = field(default_factory=dict)  # source -> events appended
    failed: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> reason code -> events
    duplicates: dict[str, int] = field(default_factory=dict)  # source -> events dropped as duplicates
    refused: dict[int, int] = field(default_factory=dict)  # HTTP status -> requests refused (4xx/5xx)

    def to_dict(self) -> dict[str, object]:
        return {
            "accepted": dict(self.accepted),
            "failed": {s: dict(r) for s, r in self.failed.items()},
            "duplicates": dict(self.duplicates),
            "refused": {str(k): v for k, v in self.refused.items()},
        }


class IngestStats:
    """In-memory counters, aggregated (never a row per event); one instance per ingest app.

    An event failing validation is counted once, under the code of its first violation.
    Not thread-safe: it is updated from the event loop only.
    """

    def __init__(self) -> None:
        #: When counting began (ISO 8601, UTC): the counters live in memory, per server process.
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self._accepted: Counter[str] = Counter()
        self._failed: dict[str, Counter[str]] = {}
        self._duplicates: Counter[str] = Counter()
        self._refused: Counter[int] = Counter()

    def add_accepted(self, source_id: str, n: int) -> None:
        if n:
            self._accepted[source_id] += n

    def add_failed(self, source_id: str, reasons: Mapping[str, int]) -> None:
        if reasons:
            self._failed.setdefault(source_id, Counter()).update(reasons)

    def add_duplicates(self, source_id: str, n: int) -> None:
        if n:
            self._duplicates[source_id] += n

    def add_refused(self, status: int) -> None:
        self._refused[status] += 1

    def snapshot(self) -> IngestSnapshot:
        return IngestSnapshot(
            accepted=dict(self._accepted),
            failed={s: dict(c) for s, c in self._failed.items()},
            duplicates=dict(self._duplicates),
            refused=dict(self._refused),
        )
