"""NATS JetStream's own ceiling on this machine: how fast one client publishes 1 KB events to a
file-backed stream (acknowledged by the server) and consumes them with a durable pull consumer
and explicit acks. The scale-out event log (SLUICE_QUEUE_URL=nats://…) is built on exactly these
two operations, so its figures belong beside these.

Each run creates its own uniquely named stream and deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from sluice.bench.runtime import make_events

__all__ = ["DEFAULT_URL", "format_report", "run_benchmark"]

DEFAULT_URL = "nats://127.0.0.1:4222"
PUBLISH_WINDOW = 1000  # async publishes in flight before waiting for the server's acks
FETCH_BATCH = 500


async def _reachable(url: str) -> None:
    """Fail fast with a clear message: nats-py keeps retrying an initial connection that is refused."""
    parts = urlsplit(url)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port or 4222), 3)
    except (OSError, TimeoutError) as exc:
        raise OSError(f"no NATS server answers at {url} ({exc or type(exc).__name__})") from None
    writer.close()


async def _quiet(_: Exception) -> None:
    """nats-py logs every connection error itself; the caller reports the one that matters."""


async def run_benchmark(count: int = 50_000, url: str | None = None) -> dict[str, Any]:
    url = url or os.environ.get("SLUICE_NATS_URL") or DEFAULT_URL
    events = make_events(count)
    name = f"SLUICE_BENCH_{uuid.uuid4().hex[:12].upper()}"
    subject = f"sluice.bench.{name.lower()}"
    await _reachable(url)
    client = await asyncio.wait_for(nats.connect(url, connect_timeout=5, allow_reconnect=False, error_cb=_quiet), 15)
    js = client.jetstream(publish_async_max_pending=PUBLISH_WINDOW)
    try:
        await js.add_stream(StreamConfig(name=name, subjects=[subject], storage=StorageType.FILE))
        started = time.perf_counter()
        for start in range(0, count, PUBLISH_WINDOW):
            for payload in events[start : start + PUBLISH_WINDOW]:
                await js.publish_async(subject, payload)
            await js.publish_async_completed()
        publish_s = time.perf_counter() - started

        consumer = ConsumerConfig(durable_name="bench", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=-1)
        subscription = await js.pull_subscribe(subject, durable="bench", stream=name, config=consumer)
        received = 0
        started = time.perf_counter()
        while received < count:
            messages = await subscription.fetch(min(FETCH_BATCH, count - received), timeout=10)
            for message in messages:
                await message.ack()
            received += len(messages)
        await client.flush()
        consume_s = time.perf_counter() - started
    finally:
        try:
            await js.delete_stream(name)
        finally:
            await client.close()
    return {
        "events": count,
        "eventBytes": len(events[0]),
        "publishEventsPerSec": round(count / publish_s),
        "consumeAckEventsPerSec": round(count / consume_s),
        "publishWindow": PUBLISH_WINDOW,
        "fetchBatch": FETCH_BATCH,
    }


def format_report(report: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"NATS JetStream ceiling — {report['events']:,} events of {report['eventBytes']} B, one client, file storage",
            f"  publish (server-acknowledged, {report['publishWindow']} in flight)  "
            f"{report['publishEventsPerSec']:>10,} events/s",
            f"  pull + ack (batches of {report['fetchBatch']})                     "
            f"{report['consumeAckEventsPerSec']:>10,} events/s",
        ]
    )
