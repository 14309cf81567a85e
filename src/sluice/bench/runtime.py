"""Runtime benchmark: a trivial ``on_track`` through the isolated pool vs. in one process.

The ceiling is the same events (1 KB track events, as bytes) through the same handler called
directly in this process: ``orjson.loads`` → ``await on_track(event, settings)`` →
``orjson.dumps``. The isolated figure starts from the same bytes: they are spliced into
100-event frames, decoded, run and encoded by the worker processes, and the parent decodes
every result. Both are measured in the same run: three interleaved rounds, best of each.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import orjson

from sluice.functions.pool import FunctionSource, Limits, WorkerPool

TRIVIAL = """
async def on_track(event, settings):
    event["properties"]["seen"] = True
    return event
"""

TARGETS = {"isolatedVsCeiling": 0.5, "frameRoundTripP99Ms": 5.0, "idleWorkerRssMb": 40.0}


def sample_track() -> dict[str, Any]:
    """The track event every benchmark sends (Segment's spec example), before padding to 1 KB."""
    return {
        "type": "track",
        "event": "Button Clicked",
        "userId": "AiUGstSDIg",
        "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "context": {
            "library": {"name": "analytics.js", "version": "2.11.1"},
            "page": {"path": "/academy/", "title": "Analytics Academy", "url": "https://segment.com/academy/"},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_0) AppleWebKit/537.36 (KHTML, like Gecko)",
            "ip": "108.0.78.21",
        },
        "properties": {"title": "Intro to Analytics", "plan": "pro", "tags": ["a", "b", "c"], "amount": 12.5},
        "receivedAt": "2015-12-12T19:11:01.266Z",
        "sentAt": "2015-12-12T19:11:01.169Z",
        "timestamp": "2015-12-12T19:11:01.249Z",
        "originalTimestamp": "2015-12-12T19:11:01.152Z",
    }


def make_events(count: int) -> list[bytes]:
    base = sample_track()
    pad = 1024 - len(orjson.dumps(base)) - 60
    base["properties"]["note"] = "x" * max(0, pad)
    return [orjson.dumps({**base, "messageId": f"bench-{i:012d}"}) for i in range(count)]


async def in_process(blobs: list[bytes]) -> float:
    namespace: dict[str, Any] = {}
    exec(compile(TRIVIAL, "function.py", "exec"), namespace)
    handler = namespace["on_track"]
    settings: dict[str, Any] = {}
    started = time.perf_counter()
    out = []
    for blob in blobs:
        out.append(orjson.dumps(await handler(orjson.loads(blob), settings)))
    elapsed = time.perf_counter() - started
    assert len(out) == len(blobs)
    return len(blobs) / elapsed


async def isolated(pool: WorkerPool, blobs: list[bytes], chunk: int = 100) -> float:
    """Stream the events through the pool as the pipeline does: a bounded number of chunks in
    flight, each chunk's results checked and released (holding every decoded result alive would
    measure the garbage collector, not the runtime)."""
    chunks = iter(range(0, len(blobs), chunk))
    failures: list[dict[str, Any]] = []

    async def lane() -> None:
        for start in chunks:
            for result in await pool.run_encoded_events(blobs[start : start + chunk]):
                if result["status"] != "ok":
                    failures.append(result)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(pool.size * pool.max_in_flight)))
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"benchmark function failed: {failures[0]}")
    return len(blobs) / elapsed


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


async def round_trips(blobs: list[bytes], frames: int = 400, rounds: int = 3) -> dict[str, Any]:
    """Sequential 100-event frames on one worker; p50/p99 per round, the median round reported."""
    frame = blobs[:100]
    p50s: list[float] = []
    p99s: list[float] = []
    async with WorkerPool(FunctionSource(TRIVIAL), size=1, max_in_flight=1) as pool:
        for _ in range(20):  # warm up
            await pool.run_encoded_events(frame)
        for _ in range(rounds):
            pool.stats.round_trips_ms.clear()
            for _ in range(frames):
                await pool.run_encoded_events(frame)
            samples = sorted(pool.stats.round_trips_ms)
            p50s.append(round(statistics.median(samples), 3))
            p99s.append(round(samples[int(len(samples) * 0.99) - 1], 3))
        await asyncio.sleep(0.2)  # let the worker settle before reading its idle RSS
        idle = max(rss_mb(pid) for pid in pool.worker_pids)
    return {
        "frameRoundTripP50Ms": statistics.median(p50s),
        "frameRoundTripP99Ms": statistics.median(p99s),
        "frameRoundTripP99MsRounds": p99s,
        "idleWorkerRssMb": round(idle, 1),
    }


async def run_benchmark(count: int = 200_000, workers: int = 2) -> dict[str, Any]:
    blobs = make_events(count)
    limits = Limits(frame_max_events=100)
    ceilings: list[float] = []
    throughputs: list[float] = []
    async with WorkerPool(FunctionSource(TRIVIAL), limits=limits, size=workers) as pool:
        await pool.run_encoded_events(blobs[: 100 * workers * 2])  # start every worker
        for _ in range(3):  # interleaved, so that drift in the machine's speed hits both alike
            ceilings.append(await in_process(blobs))
            throughputs.append(await isolated(pool, blobs))
    ceiling, throughput = max(ceilings), max(throughputs)
    trips = await round_trips(blobs)
    report: dict[str, Any] = {
        "events": count,
        "eventBytes": len(blobs[0]),
        "workers": workers,
        "cpuCount": os.cpu_count(),
        "isolatedEventsPerSec": round(throughput),
        "inProcessEventsPerSec": round(ceiling),
        "isolatedVsCeiling": round(throughput / ceiling, 3),
        **trips,
        "targets": TARGETS,
    }
    report["meetsTargets"] = {
        "isolatedVsCeiling": report["isolatedVsCeiling"] >= TARGETS["isolatedVsCeiling"],
        "frameRoundTripP99Ms": report["frameRoundTripP99Ms"] <= TARGETS["frameRoundTripP99Ms"],
        "idleWorkerRssMb": report["idleWorkerRssMb"] <= TARGETS["idleWorkerRssMb"],
    }
    return report


def format_report(r: dict[str, Any]) -> str:
    ok = {True: "meets target", False: "MISSES target"}
    met = r["meetsTargets"]
    return "\n".join(
        [
            f"sluice runtime benchmark — {r['events']} track events of {r['eventBytes']} B, "
            f"{r['workers']} workers, {r['cpuCount']} cores",
            f"  isolated pool          {r['isolatedEventsPerSec']:>10,} events/s",
            f"  in-process ceiling     {r['inProcessEventsPerSec']:>10,} events/s",
            f"  isolated / ceiling     {r['isolatedVsCeiling']:>10.1%}   (target ≥ 50%: {ok[met['isolatedVsCeiling']]})",
            f"  100-event frame p50    {r['frameRoundTripP50Ms']:>10.3f} ms",
            f"  100-event frame p99    {r['frameRoundTripP99Ms']:>10.3f} ms   "
            f"(target ≤ 5 ms: {ok[met['frameRoundTripP99Ms']]}; median of rounds {r['frameRoundTripP99MsRounds']})",
            f"  idle worker RSS        {r['idleWorkerRssMb']:>10.1f} MB   (target ≤ 40 MB: {ok[met['idleWorkerRssMb']]})",
        ]
    )
