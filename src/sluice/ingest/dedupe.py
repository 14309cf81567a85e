"""Duplicate ``messageId`` detection per source within a window (default 24 h).

The check is two-phase so a failed append never swallows a retry: ingest asks
:meth:`Deduplicator.duplicates` before appending and calls :meth:`Deduplicator.remember` only
after the log committed the events. Two concurrent requests carrying the same new ``messageId``
can both pass the check; delivery is at-least-once anyway (DESIGN §2), so that race is accepted.

Implementations (one contract test suite runs over all three, ``tests/ingest/test_dedupe_contract.py``):

* :class:`MemoryDeduplicator` (here): per process, bounded, forgets on restart.
* :class:`~sluice.ingest.dedupe_sqlite.SqliteDeduplicator`: a table in a SQLite file, so the
  window survives a restart of the (single) ingest process.
* :class:`~sluice.ingest.dedupe_pg.PostgresDeduplicator`: a table in PostgreSQL shared by every
  ingest process on every machine (scale-out, DESIGN §5).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_DEDUPE_MAX_ENTRIES", "DEFAULT_DEDUPE_WINDOW_S", "Deduplicator", "MemoryDeduplicator"]

DEFAULT_DEDUPE_WINDOW_S = 24 * 3600.0
DEFAULT_DEDUPE_MAX_ENTRIES = 1_000_000


@runtime_checkable
class Deduplicator(Protocol):
    """Remembers the ``messageId`` values a source sent recently."""

    async def duplicates(self, source_id: str, message_ids: Sequence[str], now: float) -> set[str]:
        """The ids among ``message_ids`` already remembered for ``source_id`` within the window."""
        ...

    async def remember(self, source_id: str, message_ids: Sequence[str], now: float) -> None:
        """Record ``message_ids`` as seen at ``now`` (called once they are committed to the log)."""
        ...


class MemoryDeduplicator:
    """In-process, bounded: an ordered map (source, messageId) → first-seen time.

    Entries older than ``window_s`` are dropped from the oldest end on every call; beyond
    ``max_entries`` the oldest are evicted early (a duplicate older than the eviction point then
    gets through — at-least-once, never a loss). Memory is about 150 bytes per entry.
    """

    def __init__(
        self, *, window_s: float = DEFAULT_DEDUPE_WINDOW_S, max_entries: int = DEFAULT_DEDUPE_MAX_ENTRIES
    ) -> None:
        if window_s <= 0 or max_entries <= 0:
            raise ValueError("window_s and max_entries must be positive")
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        cutoff = now - self.window_s
        seen = self._seen
        while seen:
            key, at = next(iter(seen.items()))
            if at > cutoff:
                break
            del seen[key]

    async def duplicates(self, source_id: str, message_ids: Sequence[str], now: float) -> set[str]:
        self._expire(now)
        seen = self._seen
        return {mid for mid in message_ids if (source_id, mid) in seen}

    async def remember(self, source_id: str, message_ids: Sequence[str], now: float) -> None:
        seen = self._seen
        for mid in message_ids:
            key = (source_id, mid)
            first = seen.get(key)
            if first is None:  # keep the first-seen time: the window counts from it
                seen[key] = now
            elif first <= now - self.window_s:  # expired but not dropped yet: the window restarts
                del seen[key]
                seen[key] = now
        while len(seen) > self.max_entries:
            seen.popitem(last=False)
