"""The Deduplicator contract, run over every backend: memory, SQLite and PostgreSQL.

Backend-specific behaviour (the memory bound, SQLite durability and prune, PostgreSQL sharing,
outages and prune) is tested beside each backend: test_dedupe.py, test_dedupe_sqlite.py,
test_dedupe_pg.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sluice.ingest import Deduplicator, MemoryDeduplicator
from sluice.ingest.dedupe_pg import PostgresDeduplicator
from sluice.ingest.dedupe_sqlite import SqliteDeduplicator

WINDOW = 100.0


@dataclass
class Backend:
    name: str
    dedupe: Deduplicator


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    d: MemoryDeduplicator | SqliteDeduplicator | PostgresDeduplicator
    if request.param == "memory":
        d = MemoryDeduplicator(window_s=WINDOW)
    elif request.param == "sqlite":
        d = SqliteDeduplicator(tmp_path / "dedupe.db", window_s=WINDOW)
    else:
        d = PostgresDeduplicator(request.getfixturevalue("fresh_pg_url"), window_s=WINDOW)
    yield Backend(request.param, d)
    if not isinstance(d, MemoryDeduplicator):
        await d.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_prune_removes_only_expired_rows_in_chunks(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The durable stores' prune (the memory one expires as it goes)."""
    now = [0.0]
    d: SqliteDeduplicator | PostgresDeduplicator
    if kind == "sqlite":
        d = SqliteDeduplicator(tmp_path / "d.db", window_s=WINDOW, clock=lambda: now[0], prune_every=0, prune_chunk=3)
    else:
        url = request.getfixturevalue("fresh_pg_url")
        d = PostgresDeduplicator(url, window_s=WINDOW, clock=lambda: now[0], prune_every=0, prune_chunk=3)
    try:
        await d.remember("s", [f"old{i}" for i in range(10)], 0.0)
        await d.remember("t", ["old"], 10.0)
        await d.remember("s", [f"new{i}" for i in range(5)], 50.0)
        assert await d.prune(100.0) == 10  # t=0 rows expire at 100 (seen_at <= now - window); in chunks of 3
        assert await d.count() == 6
        now[0] = 110.0
        assert await d.prune() == 1  # the clock's now
        assert await d.count() == 5
        assert await d.duplicates("s", [f"new{i}" for i in range(5)], 110.0) == {f"new{i}" for i in range(5)}
        assert await d.prune(110.0) == 0
    finally:
        await d.close()


async def test_is_a_deduplicator(backend: Backend) -> None:
    assert isinstance(backend.dedupe, Deduplicator)


async def test_window_sources_and_first_seen_time(backend: Backend) -> None:
    d = backend.dedupe
    assert await d.duplicates("s", ["a", "b"], 0.0) == set()
    await d.remember("s", ["a", "b"], 0.0)
    assert await d.duplicates("s", ["a", "c"], 50.0) == {"a"}
    assert await d.duplicates("other", ["a"], 50.0) == set()
    await d.remember("s", ["a"], 60.0)  # already known: the window still counts from t=0
    assert await d.duplicates("s", ["a", "b"], 99.9) == {"a", "b"}
    assert await d.duplicates("s", ["a", "b"], 100.0) == set()  # expired at seen_at + window


async def test_expired_entry_is_remembered_afresh_after_a_check(backend: Backend) -> None:
    # the order ingest uses: duplicates(now), then remember(now) once the log committed
    d = backend.dedupe
    await d.remember("s", ["a"], 0.0)
    assert await d.duplicates("s", ["a"], 150.0) == set()
    await d.remember("s", ["a"], 150.0)  # the window restarts at 150
    assert await d.duplicates("s", ["a"], 249.9) == {"a"}
    assert await d.duplicates("s", ["a"], 250.0) == set()


async def test_expired_entry_is_remembered_afresh_without_a_check(backend: Backend) -> None:
    d = backend.dedupe
    await d.remember("s", ["a"], 0.0)
    await d.remember("s", ["a"], 150.0)  # expired (not pruned yet): the window restarts at 150
    assert await d.duplicates("s", ["a"], 200.0) == {"a"}
    assert await d.duplicates("s", ["a"], 250.0) == set()


async def test_repeats_in_one_batch_are_harmless(backend: Backend) -> None:
    # the caller (ingest) counts a repeat inside one request; the store just must not choke on it
    d = backend.dedupe
    assert await d.duplicates("s", ["a", "a"], 0.0) == set()
    await d.remember("s", ["a", "a", "b"], 0.0)
    assert await d.duplicates("s", ["a", "a", "b", "c"], 1.0) == {"a", "b"}


async def test_empty_batches(backend: Backend) -> None:
    d = backend.dedupe
    assert await d.duplicates("s", [], 0.0) == set()
    await d.remember("s", [], 0.0)
    assert await d.duplicates("s", ["a"], 0.0) == set()


async def test_ids_are_opaque_strings(backend: Backend) -> None:
    d = backend.dedupe
    odd = [
        "",
        " ",
        "a'b",
        'q"q',
        "ünï",
        "%s",
        "a,b",
        "{x}",
        "NULL",
        "x" * 200,
        "\x00",
        "a\x00b",
        "a\\0b",
        "a\\\\0b",
        "\\",
    ]
    await d.remember("s'rc", odd, 0.0)
    assert await d.duplicates("s'rc", [*odd, "y"], 1.0) == set(odd)
    assert await d.duplicates("s", odd, 1.0) == set()


async def test_ids_that_look_alike_once_escaped_stay_distinct(backend: Backend) -> None:
    d = backend.dedupe  # JSON allows "\u0000" in a messageId; PostgreSQL text does not: it is stored escaped
    await d.remember("s", ["a\x00b", "c\\"], 0.0)
    assert await d.duplicates("s", ["a\x00b", "a\\0b", "a\\\\0b", "c\\", "c\\\\", "c\x00"], 1.0) == {"a\x00b", "c\\"}


async def test_large_batch(backend: Backend) -> None:
    d = backend.dedupe
    ids = [f"m{i}" for i in range(2_500)]  # the Tracking API's batch limit
    known = ids[::2]
    await d.remember("s", known, 0.0)
    assert await d.duplicates("s", ids, 1.0) == set(known)
    await d.remember("s", ids, 2.0)
    assert await d.duplicates("s", ids, 3.0) == set(ids)


async def test_concurrent_calls(backend: Backend) -> None:
    d = backend.dedupe

    async def call(n: int) -> set[str]:
        ids = [f"r{n}-{i}" for i in range(20)] + [f"shared-{i}" for i in range(n % 5, 20, 5)]
        found = await d.duplicates(f"src{n % 3}", ids, 1.0)
        await d.remember(f"src{n % 3}", ids[::-1] if n % 2 else ids, 1.0)  # overlapping, in both orders
        return found

    found = await asyncio.gather(*(call(n) for n in range(60)))
    assert all(not f or f <= {f"shared-{i}" for i in range(20)} for f in found)
    for n in range(60):
        ids = [f"r{n}-{i}" for i in range(20)]
        assert await d.duplicates(f"src{n % 3}", ids, 2.0) == set(ids)
