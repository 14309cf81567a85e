"""The delivery pipeline under test, in one process but with every real part: a SQLite catalog
file, the SQLite event log, the Tracking API app (over ASGI), isolated function workers and a
real HTTP destination on 127.0.0.1. Times are shortened (retries in tens of ms, catalog polled
every 100 ms) so tests poll with deadlines and never sleep. Every test runs on a SQLite and on a
PostgreSQL catalog."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.catalog.access import SYSTEM
from sluice.catalog.service import Catalog
from sluice.catalog.topology import load_plans
from sluice.config import Config
from sluice.delivery.recorder import DeliveryRecorder
from sluice.ingest.app import create_ingest_app
from sluice.ingest.dedupe import MemoryDeduplicator
from sluice.pipeline.runner import RunnerOptions, default_pool_factory
from sluice.pipeline.supervisor import Pipeline
from sluice.queue.base import EventLog
from sluice.queue.nats import NatsEventLog
from sluice.queue.sqlite import SqliteEventLog
from tests.nats_util import require_nats, unique_prefix

ECHO = "def on_track(event, settings):\n    event['properties']['via'] = 'sluice'\n    return event\n"

FAST = RunnerOptions(
    flights=2,
    idle_poll_s=0.02,
    retry_base_s=0.05,
    retry_cap_s=0.2,
    batch_max_wait_s=0.5,
    error_backoff_s=0.05,
)


@dataclass
class Harness:
    catalog: Catalog
    log: EventLog
    recorder: DeliveryRecorder
    pipeline: Pipeline
    ingest: httpx.AsyncClient
    source_id: str
    write_key: str

    # --- catalog ----------------------------------------------------------------------------------
    def function(self, code: str = ECHO, **fields: Any) -> str:
        view = self.catalog.functions.create(SYSTEM, {"displayName": "fn", "code": code, **fields})
        return str(view["id"])

    def destination(self, url: str | None = None, *, type: str = "webhook", name: str = "hook", **config: Any) -> str:
        body: dict[str, Any] = {"name": name, "type": type, "sourceIds": [self.source_id]}
        body["config"] = {"url": url, **config} if url is not None else config
        return str(self.catalog.destinations.create(SYSTEM, body)["id"])

    def instance(self, function_id: str, destination_id: str, *, enabled: bool = True, **settings: Any) -> str:
        body = {"functionId": function_id, "integrationId": destination_id, "enabled": enabled, "settings": settings}
        return str(self.catalog.instances.create(SYSTEM, body)["id"])

    def deploy(self, function_id: str, code: str) -> None:
        self.catalog.functions.update(SYSTEM, function_id, {"code": code})
        self.catalog.functions.deploy(SYSTEM, function_id, None)

    # --- traffic ----------------------------------------------------------------------------------
    async def send(self, *events: dict[str, Any]) -> None:
        auth = base64.b64encode(f"{self.write_key}:".encode()).decode()
        response = await self.ingest.post(
            "/v1/batch", json={"batch": list(events)}, headers={"Authorization": f"Basic {auth}"}
        )
        assert response.status_code == 200, response.text

    async def apply(self) -> None:
        """Make the pipeline read the catalog now (it also polls on its own)."""
        await self.pipeline.refresh()

    async def delivery(self, destination_id: str, **kwargs: Any) -> dict[str, Any]:
        await self.pipeline.flush()
        view: dict[str, Any] = self.catalog.delivery.view(SYSTEM, destination_id, "10m", **kwargs)
        return view

    async def counted(self, destination_id: str, n: int) -> dict[str, Any] | None:
        """The delivery view once ``n`` outcomes are counted in all (for :func:`until`)."""
        view = await self.delivery(destination_id)
        return view if sum(o["count"] for o in view["outcomes"]) >= n else None

    async def delivered(self, destination_id: str, n: int) -> dict[str, Any] | None:
        """The delivery view once ``n`` events are delivered (for :func:`until`)."""
        view = await self.delivery(destination_id)
        return view if view["delivered"] >= n else None


def counts(view: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(o["outcome"], o["reasonCode"]): o["count"] for o in view["outcomes"]}


def track(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order",
        "userId": f"u{n}",
        "messageId": f"m-{n}",
        "properties": {"n": n},
        **extra,
    }


async def until(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture(params=["sqlite", "postgresql", "postgresql+nats"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """On every backend: the embedded default (SQLite catalog and log), a PostgreSQL catalog with
    the SQLite log, and the scale-out pair (PostgreSQL catalog, NATS JetStream log)."""
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        database_url = request.getfixturevalue("fresh_pg_url")
    catalog = Catalog.open(Config(data_dir=data_dir, database_url=database_url))
    source = catalog.sources.create(SYSTEM, {"name": "web"})
    event_log: EventLog
    if request.param.endswith("+nats"):
        event_log = NatsEventLog(require_nats(), prefix=unique_prefix())
    else:
        event_log = SqliteEventLog(data_dir)
    recorder = DeliveryRecorder()
    pipeline = Pipeline(
        event_log=event_log,
        load_plans=lambda: load_plans(catalog.core),
        recorder=recorder,
        write_outcomes=catalog.delivery.write,
        options=FAST,
        pool_factory=default_pool_factory(FAST, stores=catalog.function_store.backend),
        refresh_s=0.1,
        flush_s=0.1,
    )
    app = create_ingest_app(
        resolve_write_key=catalog.sources.resolve_write_key,
        log=event_log,
        dedupe=MemoryDeduplicator(),
        on_appended=pipeline.wake,
    )
    ingest = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sluice")
    await pipeline.start()
    try:
        yield Harness(catalog, event_log, recorder, pipeline, ingest, source["id"], source["writeKeys"][0])
    finally:
        await pipeline.close()
        await ingest.aclose()
        if isinstance(event_log, NatsEventLog):
            await event_log.delete_everything()
        await event_log.close()
        catalog.close()
