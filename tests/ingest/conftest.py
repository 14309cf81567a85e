"""Fixtures for the ingest tests: a fake clock, write keys, a MemoryEventLog and an httpx client on the app."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from sluice.ingest import IngestStats, MemoryDeduplicator, create_ingest_app
from sluice.queue.memory import MemoryEventLog

KEY = "wk_live"
DISABLED_KEY = "wk_disabled"
SOURCE = "src_1"
T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z


@dataclass
class FakeClock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


def basic(key: str, colon: bool = True) -> dict[str, str]:
    raw = f"{key}:" if colon else key
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


@dataclass
class Harness:
    app: Starlette
    client: httpx.AsyncClient
    log: MemoryEventLog
    clock: FakeClock
    stats: IngestStats
    lookups: list[str] = field(default_factory=list)

    async def post(self, path: str, body: Any, *, key: str | None = KEY, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers.update(basic(key))
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return await self.client.post(path, content=content, headers=headers, **kw)

    async def stored(self, source: str = SOURCE) -> list[dict[str, Any]]:
        """Every event appended for ``source`` not yet seen by a previous call (leased and acked)."""
        leased = await self.log.lease(f"probe-{source}", 100_000, 60.0)
        await self.log.ack(f"probe-{source}", [e.entry_id for e in leased])
        return [orjson.loads(e.payload) for e in leased if e.source_id == source]


MakeHarness = Callable[..., Harness]


@pytest.fixture
async def make_harness() -> AsyncIterator[MakeHarness]:
    clients: list[httpx.AsyncClient] = []

    def make(*, log: Any = None, **kwargs: Any) -> Harness:
        clock = kwargs.pop("clock", FakeClock())
        event_log = MemoryEventLog(clock=clock) if log is None else log
        stats = IngestStats()
        lookups: list[str] = []
        keys = {KEY: (SOURCE, True), DISABLED_KEY: ("src_off", False), "wk_2": ("src_2", True)}

        def resolve(key: str) -> tuple[str, bool] | None:
            lookups.append(key)
            return keys.get(key)

        kwargs.setdefault("dedupe", MemoryDeduplicator())
        kwargs.setdefault("max_backlog", 1000)
        app = create_ingest_app(resolve_write_key=resolve, log=event_log, clock=clock, stats=stats, **kwargs)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest.test")
        clients.append(client)
        return Harness(app, client, event_log, clock, stats, lookups)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def h(make_harness: MakeHarness) -> Harness:
    harness = make_harness()
    if isinstance(harness.log, MemoryEventLog):
        for source in (SOURCE, "src_2"):
            await harness.log.subscribe(f"probe-{source}", [source])
    return harness
