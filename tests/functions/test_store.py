"""The functions' ``store`` (DESIGN §3.5) through real worker processes: requests over the pipe,
answered by the pool from an in-memory or a catalog-backed store."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.catalog.service import Catalog
from sluice.catalog.store import FunctionStore
from sluice.config import Config
from sluice.functions.pool import FunctionSource, Limits, WorkerPool
from sluice.functions.store_bridge import MemoryStore
from sluice.testing import arun_function
from tests.conftest import skip_or_fail

OPS = """
from sluice.fn import store

async def on_track(event, settings):
    p = event["properties"]
    op, key = p["op"], p.get("key", "k")
    if op == "get":
        event["value"] = await store.get(key, p.get("default"))
    elif op == "set":
        await store.set(key, p["value"], p.get("ttl"))
    elif op == "delete":
        await store.delete(key)
    return event
"""

COUNTER = """
import os

async def on_track(event, settings):  # `store` is a global too, as `fetch` and `cache` are
    key = "count:" + event["userId"]
    n = await store.get(key, 0) + 1
    await store.set(key, n)
    event["properties"]["count"] = n
    event["properties"]["pid"] = os.getpid()
    return event
"""


def track(op: str, user: str = "u1", **props: Any) -> dict[str, Any]:
    return {"type": "track", "event": "E", "userId": user, "properties": {"op": op, **props}}


async def run1(pool: WorkerPool, event: dict[str, Any]) -> dict[str, Any]:
    (result,) = await pool.run_events([event])
    return result


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog.open(Config(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'catalog.db'}"))
    try:
        yield cat
    finally:
        cat.close()


async def test_get_set_delete_and_ttl_through_a_worker() -> None:
    clock = Clock()
    data: dict[str, Any] = {}
    async with WorkerPool(FunctionSource(OPS), store=MemoryStore(data, clock=clock)) as pool:
        assert (await run1(pool, track("get", default="none")))["event"]["value"] == "none"
        assert (await run1(pool, track("set", value={"a": [1, 2.5, "x"], "b": None})))["status"] == "ok"
        assert data == {"k": {"a": [1, 2.5, "x"], "b": None}}
        assert (await run1(pool, track("get")))["event"]["value"] == {"a": [1, 2.5, "x"], "b": None}
        await run1(pool, track("set", key="null", value=None))
        assert (await run1(pool, track("get", key="null", default="absent")))["event"]["value"] is None
        await run1(pool, track("delete"))
        assert "k" not in data
        assert (await run1(pool, track("get")))["event"]["value"] is None
        await run1(pool, track("set", key="t", value=1, ttl=1500))
        clock.now += 1.499
        assert (await run1(pool, track("get", key="t")))["event"]["value"] == 1
        clock.now += 0.001
        assert (await run1(pool, track("get", key="t", default="gone")))["event"]["value"] == "gone"


async def test_values_are_shared_by_the_workers_of_an_instance_and_outlive_the_pool(catalog: Catalog) -> None:
    limits = Limits(frame_max_events=1)
    n = 12
    writes = [track("set", key=f"seen:{i}", value=i) for i in range(n)]
    async with WorkerPool(
        FunctionSource(OPS.replace("return event", "event['pid'] = __import__('os').getpid()\n    return event")),
        size=2,
        max_in_flight=1,
        limits=limits,
        store=catalog.function_store.backend("ins_shared"),
    ) as pool:
        results = await pool.run_events(writes)
        assert {r["status"] for r in results} == {"ok"}
        writers = {r["event"]["pid"] for r in results}
        assert len(writers) == 2, "both workers wrote"
        reads = [track("get", key=f"seen:{i}") for i in range(n)]
        results = await pool.run_events(reads)
        assert [r["event"]["value"] for r in results] == list(range(n))
        assert len({r["event"]["pid"] for r in results}) == 2, "both workers read"
    assert catalog.function_store.get("ins_shared", "seen:3") == 3
    # a new pool of the same instance (a restart, a deploy) finds the values; another instance does not
    async with WorkerPool(FunctionSource(OPS), store=catalog.function_store.backend("ins_shared")) as pool:
        assert (await run1(pool, track("get", key="seen:7")))["event"]["value"] == 7
    async with WorkerPool(FunctionSource(OPS), store=catalog.function_store.backend("ins_other")) as pool:
        assert (await run1(pool, track("get", key="seen:7")))["event"]["value"] is None


async def test_store_calls_overlap_with_queued_frames_on_one_worker(catalog: Catalog) -> None:
    """While a handler awaits a store answer, the next run frames are already on the pipe."""
    events = [{"type": "track", "userId": f"u{i % 3}", "properties": {}} for i in range(30)]
    async with WorkerPool(
        FunctionSource(COUNTER), limits=Limits(frame_max_events=1), store=catalog.function_store.backend("ins_c")
    ) as pool:
        results = await pool.run_events(events)
        assert {r["status"] for r in results} == {"ok"}
        assert len(pool.worker_pids) == 1
    assert sum(catalog.function_store.get("ins_c", f"count:u{u}") for u in range(3)) == 30


async def test_counts_of_one_micro_batch_follow_each_other() -> None:
    """Handlers of one frame that await overlap: a get-then-set is not atomic across them, but
    events of one user sent one at a time count up exactly."""
    async with WorkerPool(FunctionSource(COUNTER)) as pool:
        counts = [(await run1(pool, {"type": "track", "userId": "u1", "properties": {}}))["event"] for _ in range(5)]
    assert [e["properties"]["count"] for e in counts] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("props", "type_", "message"),
    [
        ({"key": "k" * 257, "value": 1}, "StoreError", "store key is 257 characters, over the 256 character limit"),
        ({"value": "x" * 70_000}, "StoreError", "store value is 70002 bytes as JSON, over the 65536 byte limit"),
        ({"key": "third", "value": 1}, "StoreError", "already holds 2 store keys, the limit is 2 keys"),
    ],
)
async def test_broken_limits_are_bad_requests_naming_the_limit(
    catalog: Catalog, props: dict[str, Any], type_: str, message: str
) -> None:
    store = FunctionStore(catalog.core, max_keys=2)
    store.set("ins_l", "one", 1)
    store.set("ins_l", "two", 2)
    async with WorkerPool(FunctionSource(OPS), store=store.backend("ins_l")) as pool:
        result = await run1(pool, track("set", **props))
        assert result["status"] == "bad_request"
        assert result["error"]["type"] == type_
        assert message in result["error"]["message"]
        assert result["error"]["message"].endswith("(line 10)")  # the `await store.set` line
        # the worker is fine afterwards
        assert (await run1(pool, track("get", key="one")))["event"]["value"] == 1


NOT_JSON = """
async def on_track(event, settings):
    if event["event"] == "set":
        await store.set("k", {1, 2})
    if event["event"] == "key":
        await store.get(42)
    if event["event"] == "retry":
        try:
            await store.set("k" * 300, 1)
        except StoreError as err:
            raise RetryError(f"store: {err}")
    return event
"""


async def test_values_must_be_json_and_keys_strings_and_store_errors_can_be_caught() -> None:
    run = await arun_function(NOT_JSON, {"type": "track", "event": "set"})
    assert run.status == "bad_request"
    assert run.error == {
        "type": "TypeError",
        "message": "store values must be JSON-serializable: Type is not JSON serializable: set (line 4)",
    }
    run = await arun_function(NOT_JSON, {"type": "track", "event": "key"})
    assert run.status == "bad_request"
    assert run.error == {"type": "TypeError", "message": "store keys are strings, got int (line 6)"}
    run = await arun_function(NOT_JSON, {"type": "track", "event": "retry"})
    assert run.status == "retry"
    assert run.error is not None and "over the 256 character limit" in run.error["message"]


async def test_run_function_seeds_an_in_memory_store_and_shows_what_is_left() -> None:
    data: dict[str, Any] = {"count:u1": 41}
    run = await arun_function(COUNTER, {"type": "track", "userId": "u1", "properties": {}}, store=data)
    assert run.status == "ok" and run.event["properties"]["count"] == 42
    assert data == {"count:u1": 42}
    run = await arun_function(COUNTER, {"type": "track", "userId": "u1", "properties": {}})
    assert run.event["properties"]["count"] == 1  # each run without a dict starts empty


class Unavailable:
    async def get(self, key: str) -> str | None:
        raise OSError("database is down")

    async def set(self, key: str, value: str, ttl_ms: int | None) -> None:
        raise OSError("database is down")

    async def delete(self, key: str) -> None:
        raise OSError("database is down")


async def test_a_failing_backend_is_a_store_error_without_its_details() -> None:
    async with WorkerPool(FunctionSource(OPS), store=Unavailable()) as pool:
        result = await run1(pool, track("get"))
    assert result["status"] == "bad_request"
    assert result["error"]["type"] == "StoreError"
    assert result["error"]["message"].startswith("the function store is unavailable (OSError)")
    assert "database is down" not in result["error"]["message"]


class Stalled:
    """A backend whose ``get`` answers only when told to."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.asked = asyncio.Event()

    async def get(self, key: str) -> str | None:
        self.asked.set()
        await self.release.wait()
        return '"late"'

    async def set(self, key: str, value: str, ttl_ms: int | None) -> None:
        return None

    async def delete(self, key: str) -> None:
        return None


async def test_a_handler_timing_out_on_a_store_call_leaves_the_worker_usable() -> None:
    backend = Stalled()
    async with WorkerPool(FunctionSource(OPS), store=backend, limits=Limits(timeout_s=0.5)) as pool:
        result = await run1(pool, track("get"))
        assert result["status"] == "timeout"
        assert backend.asked.is_set()
        backend.release.set()  # the answer now reaches a worker that no longer waits for it
        pid = pool.worker_pids
        assert (await run1(pool, track("set", value=1)))["status"] == "ok"
        assert pool.worker_pids == pid


async def test_javascript_functions_are_told_store_is_python_only() -> None:
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed")
    code = "async function onTrack(event) {\n  await store.get('k');\n  return event;\n}\n"
    async with WorkerPool(FunctionSource(code, filename="function.js", language="javascript")) as pool:
        result = await run1(pool, track("get"))
    assert result["status"] == "bad_request"
    assert "store is available to Python functions only" in result["error"]["message"]
