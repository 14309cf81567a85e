"""MemoryDeduplicator: expiry frees memory, the entry bound (the contract: test_dedupe_contract.py)."""

from __future__ import annotations

import pytest

from sluice.ingest import MemoryDeduplicator


async def test_expired_entries_leave_memory() -> None:
    # the window itself is in the contract suite (test_dedupe_contract.py)
    d = MemoryDeduplicator(window_s=100.0)
    await d.remember("s", ["a", "b"], 0.0)
    await d.remember("s", ["c"], 50.0)
    assert len(d) == 3
    assert await d.duplicates("s", ["a", "b", "c"], 100.0) == {"c"}
    assert len(d) == 1


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
