"""The functions' ``store`` in the catalog (DESIGN §3.5), on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from sluice.catalog import tables
from sluice.catalog.access import SYSTEM
from sluice.catalog.service import Catalog
from sluice.catalog.store import FunctionStore
from sluice.config import Config
from sluice.errors import StoreLimitError
from sluice.functions.store_bridge import MAX_KEY_CHARS, MAX_KEYS, MAX_VALUE_BYTES

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def catalog(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[Catalog]:
    cat = Catalog.open(Config(data_dir=tmp_path / "data", database_url=database_url), clock=clock)
    try:
        yield cat
    finally:
        cat.close()


def test_set_get_overwrite_and_delete(catalog: Catalog) -> None:
    store = catalog.function_store
    assert store.get("ins_a", "k") is None
    assert store.get("ins_a", "k", default=0) == 0
    store.set("ins_a", "k", {"n": 1, "tags": ["x", "ü"]})
    assert store.get("ins_a", "k") == {"n": 1, "tags": ["x", "ü"]}
    store.set("ins_a", "k", 2)  # an upsert
    assert store.get("ins_a", "k") == 2
    store.set("ins_a", "null", None)  # a stored null is not an absent key
    assert store.get_json("ins_a", "null") == "null"
    assert store.get("ins_a", "null", default="absent") is None
    assert store.delete("ins_a", "k") is True
    assert store.delete("ins_a", "k") is False
    assert store.get("ins_a", "k") is None


def test_instances_do_not_see_each_others_keys(catalog: Catalog) -> None:
    store = catalog.function_store
    store.set("ins_a", "k", "a")
    store.set("ins_b", "k", "b")
    assert (store.get("ins_a", "k"), store.get("ins_b", "k")) == ("a", "b")
    store.delete("ins_a", "k")
    assert store.get("ins_b", "k") == "b"


def test_ttl_follows_the_catalog_clock_and_expired_rows_are_purged(catalog: Catalog, clock: Clock) -> None:
    store = catalog.function_store
    store.set("ins_a", "short", 1, ttl_ms=1_000)
    store.set("ins_a", "forever", 2, ttl_ms=-1)
    store.set("ins_a", "none", 3)
    clock.advance(999)
    assert store.get("ins_a", "short") == 1
    clock.advance(1)
    assert store.get("ins_a", "short") is None
    assert store.count("ins_a") == 2  # the expired row went when it was read
    store.set("ins_a", "other", 4, ttl_ms=10)
    store.set("ins_a", "short", 5, ttl_ms=10)  # set again: a fresh TTL
    clock.advance(5)
    assert store.get("ins_a", "short") == 5
    store.set("ins_a", "short", 6)  # no TTL any more
    clock.advance(3_600_000)
    assert store.get("ins_a", "short") == 6
    assert store.purge_expired() == 1  # "other"
    assert (store.get("ins_a", "forever"), store.get("ins_a", "none")) == (2, 3)


def test_limits_raise_errors_naming_them(catalog: Catalog) -> None:
    store = catalog.function_store
    store.set("ins_a", "k" * MAX_KEY_CHARS, 1)
    with pytest.raises(StoreLimitError, match=f"{MAX_KEY_CHARS + 1} characters, over the 256 character limit"):
        store.set("ins_a", "k" * (MAX_KEY_CHARS + 1), 1)
    with pytest.raises(StoreLimitError, match="over the 256 character limit"):
        store.get("ins_a", "k" * (MAX_KEY_CHARS + 1))
    with pytest.raises(StoreLimitError, match="non-empty strings"):
        store.set("ins_a", "", 1)
    store.set("ins_a", "big", "x" * (MAX_VALUE_BYTES - 2))  # the quotes make it exactly 64 KB
    with pytest.raises(StoreLimitError, match="65537 bytes as JSON, over the 65536 byte limit"):
        store.set("ins_a", "big", "x" * (MAX_VALUE_BYTES - 1))
    with pytest.raises(TypeError, match=r"JSON-serializable: .*set"):
        store.set("ins_a", "k", {1, 2})
    assert MAX_KEYS == 10_000


def test_key_count_limit_per_instance_counts_live_keys(catalog: Catalog, clock: Clock) -> None:
    store = FunctionStore(catalog.core, max_keys=3)
    store.set("ins_a", "a", 1)
    store.set("ins_a", "b", 1)
    store.set("ins_a", "c", 1, ttl_ms=100)
    with pytest.raises(StoreLimitError, match="already holds 3 store keys, the limit is 3 keys"):
        store.set("ins_a", "d", 1)
    store.set("ins_a", "a", 2)  # overwriting an existing key is fine at the limit
    store.set("ins_b", "d", 1)  # another instance has its own count
    clock.advance(100)  # "c" expires: its row is purged to make room
    store.set("ins_a", "d", 1)
    assert store.count("ins_a") == 3
    store.delete("ins_a", "a")
    store.set("ins_a", "e", 1)


def test_deleting_the_instance_or_its_destination_deletes_its_keys(catalog: Catalog) -> None:
    fn = catalog.functions.create(SYSTEM, {"displayName": "fn", "code": "def on_track(e, s):\n    return e\n"})
    ids = []
    for name in ("one", "two"):
        dst = catalog.destinations.create(SYSTEM, {"name": name, "type": "webhook", "config": {"url": "http://x/h"}})
        body = {"functionId": fn["id"], "integrationId": dst["id"], "settings": {}}
        ids.append((catalog.instances.create(SYSTEM, body)["id"], dst["id"]))
    for instance_id, _ in ids:
        catalog.function_store.set(instance_id, "k", 1)
    catalog.function_store.set("ins_other", "k", 1)
    catalog.instances.delete(SYSTEM, ids[0][0])
    catalog.destinations.delete(SYSTEM, ids[1][1])
    with catalog.engine.connect() as conn:
        left = conn.execute(select(tables.function_store.c.instance_id)).scalars().all()
    assert left == ["ins_other"]


async def test_instance_backend_moves_json_text_in_a_thread(catalog: Catalog) -> None:
    backend = catalog.function_store.backend("ins_a")
    await backend.set("k", '{"n":1}', None)
    assert await backend.get("k") == '{"n":1}'
    assert catalog.function_store.get("ins_a", "k") == {"n": 1}
    results = await asyncio.gather(*(backend.set(f"k{i}", str(i), None) for i in range(10)))
    assert results == [None] * 10 and catalog.function_store.count("ins_a") == 11
    await backend.delete("k")
    assert await backend.get("k") is None
