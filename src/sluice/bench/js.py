"""JavaScript runtime benchmark: a trivial ``onTrack`` through the pool, beside its ceilings.

Three figures from the same run, over the same ~1 KB track events (as bytes):

- ``jsEventsPerSec``: the JavaScript function through :class:`WorkerPool` (Node.js workers),
  events spliced into 100-event frames exactly as the pipeline sends them;
- ``pythonEventsPerSec``: the same handler written in Python through the Python pool
  (:mod:`sluice.bench.runtime`'s function and streaming loop);
- ``nodeInProcessEventsPerSec``: the ceiling, a bare loop inside one Node process over the same
  event strings: ``JSON.parse`` → ``await onTrack(event, settings)`` → ``JSON.stringify``,
  timed inside Node (no pipes, no frames, no process boundary).

The three are measured in interleaved rounds (best of each), so drift in the machine's speed
hits all alike. Then the per-event latency through an idle pool: single events, one at a time,
through one JavaScript worker (and the Python worker's beside it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sluice.bench import runtime
from sluice.functions.pool import FunctionSource, Limits, WorkerPool

JS_TRIVIAL = """
async function onTrack(event, settings) {
  event.properties.seen = true
  return event
}
"""

TARGETS = {"jsEventsPerSec": 35_000, "jsLatencyP99Ms": 2.0}

# The ceiling: the same handler over the same event strings in one Node process.
NODE_LOOP = """'use strict';
const fs = require('fs');
const lines = fs.readFileSync(process.argv[2], 'utf8').split('\\n').filter(Boolean);
const passes = Number(process.argv[3]);
%(handler)s
async function main() {
  const settings = {};
  const rates = [];
  for (let pass = 0; pass < passes; pass++) {
    const out = new Array(lines.length);
    const started = process.hrtime.bigint();
    for (let i = 0; i < lines.length; i++) {
      out[i] = JSON.stringify(await onTrack(JSON.parse(lines[i]), settings));
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (out.length !== lines.length || !out[lines.length - 1].includes('"seen":true')) throw new Error('bad output');
    rates.push(lines.length / seconds);
  }
  process.stdout.write(JSON.stringify({ rates }));
}
main().catch((err) => { console.error(err); process.exit(1); });
"""


def js_source(code: str = JS_TRIVIAL) -> FunctionSource:
    return FunctionSource(code, filename="function.js", language="javascript")


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the JavaScript benchmark needs Node.js 20 or newer on PATH")
    return node


async def node_in_process(events_file: Path, script: Path, passes: int = 2) -> float:
    """Events/s of the bare Node loop: the best pass (the first one warms the JIT up)."""
    proc = await asyncio.create_subprocess_exec(
        node_binary(),
        str(script),
        str(events_file),
        str(passes),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the in-process Node loop failed: {err.decode(errors='replace')[-2000:]}")
    return float(max(json.loads(out)["rates"]))


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, int(len(ordered) * fraction + 0.5) - 1))]


async def idle_latency(
    sources: dict[str, FunctionSource], blobs: list[bytes], samples: int, rounds: int = 3
) -> dict[str, dict[str, Any]]:
    """Single events, sequentially, through one idle worker per source: the caller's view of each
    event. ``rounds`` interleaved rounds of ``samples / rounds`` events; p50 and p99 per round, the
    median round reported (one stall of a shared machine does not decide the figure)."""
    per_round = max(100, samples // rounds)
    found: dict[str, dict[str, list[float]]] = {name: {"p50": [], "p99": []} for name in sources}
    async with contextlib.AsyncExitStack() as stack:
        pools = {}
        for name, source in sources.items():
            pools[name] = await stack.enter_async_context(WorkerPool(source, size=1, max_in_flight=1))
            for blob in blobs[:200]:  # warm up (JIT, caches)
                await pools[name].run_encoded_events([blob])
        for _ in range(rounds):
            for name, pool in pools.items():
                times: list[float] = []
                for i in range(per_round):
                    started = time.perf_counter()
                    (result,) = await pool.run_encoded_events([blobs[i % len(blobs)]])
                    times.append((time.perf_counter() - started) * 1000.0)
                    if result["status"] != "ok":
                        raise RuntimeError(f"benchmark function failed: {result}")
                found[name]["p50"].append(round(statistics.median(times), 3))
                found[name]["p99"].append(round(_percentile(times, 0.99), 3))
    return {
        name: {"p50": statistics.median(f["p50"]), "p99": statistics.median(f["p99"]), "p99Rounds": f["p99"]}
        for name, f in found.items()
    }


async def run_benchmark(
    count: int = 100_000, workers: int = 2, latency_events: int = 5_000, rounds: int = 3
) -> dict[str, Any]:
    blobs = runtime.make_events(count)
    limits = Limits(frame_max_events=100)
    node_rates: list[float] = []
    js_rates: list[float] = []
    py_rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-js-") as tmp:
        events_file = Path(tmp) / "events.ndjson"
        events_file.write_bytes(b"\n".join(blobs) + b"\n")
        script = Path(tmp) / "loop.js"
        script.write_text(NODE_LOOP % {"handler": JS_TRIVIAL.strip()}, encoding="utf-8")
        async with (
            WorkerPool(js_source(), limits=limits, size=workers) as js_pool,
            WorkerPool(FunctionSource(runtime.TRIVIAL), limits=limits, size=workers) as py_pool,
        ):
            warm = blobs[: 100 * workers * 2]
            await runtime.isolated(js_pool, warm)  # start every worker and warm the JIT up
            await runtime.isolated(py_pool, warm)
            for _ in range(rounds):  # interleaved, so that drift in the machine's speed hits all alike
                node_rates.append(await node_in_process(events_file, script))
                js_rates.append(await runtime.isolated(js_pool, blobs))
                py_rates.append(await runtime.isolated(py_pool, blobs))
    samples = max(100, min(latency_events, count))
    latency = await idle_latency(
        {"js": js_source(), "python": FunctionSource(runtime.TRIVIAL)}, blobs, samples, rounds=rounds
    )
    js_latency, py_latency = latency["js"], latency["python"]
    js_rate, py_rate, node_rate = max(js_rates), max(py_rates), max(node_rates)
    report: dict[str, Any] = {
        "events": count,
        "eventBytes": len(blobs[0]),
        "workers": workers,
        "cpuCount": os.cpu_count(),
        "rounds": rounds,
        "jsEventsPerSec": round(js_rate),
        "pythonEventsPerSec": round(py_rate),
        "nodeInProcessEventsPerSec": round(node_rate),
        "jsVsNodeInProcess": round(js_rate / node_rate, 3),
        "jsVsPython": round(js_rate / py_rate, 3),
        "jsEventsPerSecRounds": [round(r) for r in js_rates],
        "latencyEvents": samples,
        "jsLatencyP50Ms": js_latency["p50"],
        "jsLatencyP99Ms": js_latency["p99"],
        "jsLatencyP99MsRounds": js_latency["p99Rounds"],
        "pythonLatencyP50Ms": py_latency["p50"],
        "pythonLatencyP99Ms": py_latency["p99"],
        "targets": TARGETS,
    }
    report["meetsTargets"] = {
        "jsEventsPerSec": report["jsEventsPerSec"] >= TARGETS["jsEventsPerSec"],
        "jsLatencyP99Ms": report["jsLatencyP99Ms"] <= TARGETS["jsLatencyP99Ms"],
    }
    return report


def format_report(r: dict[str, Any]) -> str:
    ok = {True: "meets target", False: "MISSES target"}
    met = r["meetsTargets"]
    return "\n".join(
        [
            f"sluice JavaScript runtime benchmark — {r['events']} track events of {r['eventBytes']} B in "
            f"100-event frames, {r['workers']} workers, {r['cpuCount']} cores, best of {r['rounds']} rounds",
            f"  JavaScript pool        {r['jsEventsPerSec']:>10,} events/s   "
            f"(target ≥ {TARGETS['jsEventsPerSec']:,}: {ok[met['jsEventsPerSec']]}; rounds {r['jsEventsPerSecRounds']})",
            f"  bare Node loop         {r['nodeInProcessEventsPerSec']:>10,} events/s   "
            f"(ceiling: pool is {r['jsVsNodeInProcess']:.1%} of it)",
            f"  Python pool            {r['pythonEventsPerSec']:>10,} events/s   "
            f"(JavaScript is {r['jsVsPython']:.2f}× it)",
            f"  idle pool, one event   p50 {r['jsLatencyP50Ms']:.3f} ms, p99 {r['jsLatencyP99Ms']:.3f} ms   "
            f"(target p99 ≤ {TARGETS['jsLatencyP99Ms']:g} ms: {ok[met['jsLatencyP99Ms']]}; "
            f"median of rounds {r['jsLatencyP99MsRounds']}; {r['latencyEvents']} sequential events)",
            f"  Python, same           p50 {r['pythonLatencyP50Ms']:.3f} ms, p99 {r['pythonLatencyP99Ms']:.3f} ms",
        ]
    )
