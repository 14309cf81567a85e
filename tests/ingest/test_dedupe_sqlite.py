"""SqliteDeduplicator: durability across reopen, prune, chunked queries (the contract: test_dedupe_contract.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.ingest.dedupe_sqlite import SqliteDeduplicator


@pytest.fixture
async def dedupe(tmp_path: Path) -> AsyncIterator[SqliteDeduplicator]:
    d = SqliteDeduplicator(tmp_path / "dedupe.db", window_s=100.0)
    yield d
    await d.close()


async def test_repeats_in_one_batch_are_harmless(dedupe: SqliteDeduplicator) -> None:
    d = dedupe
    # the caller (ingest) counts a repeat inside one request; the store just must not choke on it
    assert await d.duplicates("s", ["a", "a"], 0.0) == set()
    await d.remember("s", ["a", "a", "b"], 0.0)
    assert await d.duplicates("s", ["a", "a", "b"], 1.0) == {"a", "b"}
    assert await d.count() == 2


async def test_empty_batches(dedupe: SqliteDeduplicator) -> None:
    assert await dedupe.duplicates("s", [], 0.0) == set()
    await dedupe.remember("s", [], 0.0)
    assert await dedupe.count() == 0


async def test_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "dedupe.db"
    d = SqliteDeduplicator(path, window_s=86_400.0)
    await d.remember("s", ["a", "b"], 1_000.0)
    await d.close()
    await d.close()  # idempotent
    with pytest.raises(RuntimeError):
        await d.duplicates("s", ["a"], 1_000.0)

    d = SqliteDeduplicator(path, window_s=86_400.0)
    try:
        assert await d.duplicates("s", ["a", "b", "c"], 1_000.0 + 86_000.0) == {"a", "b"}
        assert await d.duplicates("s", ["a"], 1_000.0 + 86_400.0) == set()
    finally:
        await d.close()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_opportunistic_prune_every_n_remembers(tmp_path: Path) -> None:
    d = SqliteDeduplicator(tmp_path / "d.db", window_s=100.0, prune_every=3)
    try:
        await d.remember("s", ["a"], 0.0)
        await d.remember("s", ["b"], 1.0)
        await d.remember("s", ["c"], 150.0)  # third call: prunes what expired by t=150
        assert await d.count() == 1
        assert await d.duplicates("s", ["a", "b", "c"], 150.0) == {"c"}
    finally:
        await d.close()


async def test_large_batch_is_chunked(dedupe: SqliteDeduplicator) -> None:
    d = dedupe
    ids = [f"m{i}" for i in range(2_500)]
    known = ids[::2]
    await d.remember("s", known, 0.0)
    assert await d.duplicates("s", ids, 1.0) == set(known)
    await d.remember("s", ids, 2.0)
    assert await d.duplicates("s", ids, 3.0) == set(ids)
    assert await d.count() == 2_500


def test_rejects_nonsense_bounds(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteDeduplicator(tmp_path / "d.db", window_s=0)
    with pytest.raises(ValueError):
        SqliteDeduplicator(tmp_path / "d.db", prune_chunk=0)


def test_close_sync(tmp_path: Path) -> None:
    d = SqliteDeduplicator(tmp_path / "d.db")
    d.close_sync()
    d.close_sync()
