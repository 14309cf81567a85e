"""MemoryDeduplicator: window, per-source keys, first-seen time and the entry bound."""

from __future__ import annotations

import pytest

from sluice.ingest import Deduplicator, MemoryDeduplicator


async def test_window_and_sources() -> None:
    d = MemoryDeduplicator(window_s=100.0)
    assert isinstance(d, Deduplicator)
    assert await d.duplicates("s", ["a", "b"], 0.0) == set()
    await d.remember("s", ["a", "b"], 0.0)
    assert await d.duplicates("s", ["a", "c"], 50.0) == {"a"}
    assert await d.duplicates("other", ["a"], 50.0) == set()
    await d.remember("s", ["a"], 60.0)  # already known: the window still counts from t=0
    assert await d.duplicates("s", ["a", "b"], 100.0) == set()
    assert len(d) == 0


async def test_bound_evicts_oldest() -> None:
    d = MemoryDeduplicator(max_entries=3)
    await d.remember("s", ["a", "b", "c"], 1.0)
    await d.remember("s", ["d"], 2.0)
    assert len(d) == 3
    assert await d.duplicates("s", ["a", "b", "c", "d"], 3.0) == {"b", "c", "d"}


def test_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        MemoryDeduplicator(max_entries=0)
    with pytest.raises(ValueError):
        MemoryDeduplicator(window_s=0)
