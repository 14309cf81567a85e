"""Raw ceilings of an event log, for ``sluice bench`` (DESIGN §6: each figure beside its ceiling)."""

from __future__ import annotations

import time

import orjson

from sluice.queue.base import EventLog


def sample_event(i: int = 0, size: int = 1024) -> bytes:
    """An encoded ``track`` event of about ``size`` bytes."""
    event = {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{i}",
        "messageId": f"bench-{i:012d}",
        "timestamp": "2024-01-01T00:00:00.000Z",
        "context": {"library": {"name": "sluice-bench", "version": "1"}},
        "properties": {"orderId": i, "pad": ""},
    }
    pad = max(size - len(orjson.dumps(event)), 0)
    event["properties"] = {"orderId": i, "pad": "x" * pad}
    return orjson.dumps(event)


async def measure_append_ceiling(log: EventLog, n: int, batch: int = 100, *, source_id: str = "bench") -> float:
    """Events/s of raw appends of ``n`` ~1 KB events, ``batch`` events per ``append`` call, one call at a time."""
    events = [sample_event(i) for i in range(batch)]
    calls, rest = divmod(n, batch)
    start = time.perf_counter()
    for _ in range(calls):
        await log.append(source_id, events)
    if rest:
        await log.append(source_id, events[:rest])
    return n / max(time.perf_counter() - start, 1e-9)


async def measure_lease_ack(
    log: EventLog, n: int, batch: int = 100, *, source_id: str = "bench-la", destination_id: str = "bench-la"
) -> float:
    """Events/s of ``lease(batch)`` + ``ack`` over ``n`` events appended beforehand (not timed)."""
    await log.subscribe(destination_id, [source_id])
    events = [sample_event(i) for i in range(min(n, 500))]
    left = n
    while left > 0:
        left -= await log.append(source_id, events[: min(left, len(events))])
    done = 0
    start = time.perf_counter()
    while done < n:
        leased = await log.lease(destination_id, batch, 60.0)
        if not leased:
            break
        await log.ack(destination_id, [e.entry_id for e in leased])
        done += len(leased)
    return done / max(time.perf_counter() - start, 1e-9)
