"""`make bench`: every benchmark, each figure printed beside its ceiling from the same run.

Run one with `sluice bench runtime|js|queue|pipeline|fql|nats|scaleout [--json]`. Results go to stdout; with
SLUICE_BENCH_JSON=path the JSON reports are also written to that file (one object per line).
"""

from __future__ import annotations

import asyncio
import os
import shutil

import orjson

from sluice.bench import fql as fql_bench
from sluice.bench import js as js_bench
from sluice.bench import nats as nats_bench
from sluice.bench import pipeline as pipeline_bench
from sluice.bench import queue as queue_bench
from sluice.bench import scaleout as scaleout_bench
from sluice.bench.runtime import format_report, run_benchmark


def main() -> None:
    reports = []
    report = asyncio.run(run_benchmark(count=int(os.environ.get("SLUICE_BENCH_EVENTS", "200000"))))
    print(format_report(report))
    reports.append({"benchmark": "runtime", **report})
    if shutil.which("node"):
        js_report = asyncio.run(js_bench.run_benchmark(count=int(os.environ.get("SLUICE_BENCH_JS_EVENTS", "100000"))))
        print(js_bench.format_report(js_report))
        reports.append({"benchmark": "js", **js_report})
    else:
        print("sluice JavaScript runtime benchmark — skipped: Node.js is not on PATH")
    queue_report = asyncio.run(queue_bench.run_benchmark())
    print(queue_bench.format_report(queue_report))
    reports.append({"benchmark": "queue", **queue_report})
    pipeline_report = asyncio.run(pipeline_bench.run_benchmark())
    print(pipeline_bench.format_report(pipeline_report))
    reports.append({"benchmark": "pipeline", **pipeline_report})
    fql_report = fql_bench.run_benchmark()
    print(fql_bench.format_report(fql_report))
    reports.append({"benchmark": "fql", **fql_report})
    try:
        nats_report = asyncio.run(nats_bench.run_benchmark())
    except OSError as exc:
        print(f"NATS JetStream ceiling — skipped: {exc}")
    else:
        print(nats_bench.format_report(nats_report))
        reports.append({"benchmark": "nats", **nats_report})
    problem = scaleout_bench.unreachable(scaleout_bench.DEFAULT_POSTGRES_URL, scaleout_bench.nats_url_from_env())
    if problem:
        print(f"sluice scale-out benchmark — skipped: {problem}")
    else:
        scaleout_report = asyncio.run(
            scaleout_bench.run_benchmark(count=int(os.environ.get("SLUICE_BENCH_SCALEOUT_EVENTS", "100000")))
        )
        print(scaleout_bench.format_report(scaleout_report))
        reports.append({"benchmark": "scaleout", **scaleout_report})
    target = os.environ.get("SLUICE_BENCH_JSON")
    if target:
        with open(target, "ab") as out:
            for item in reports:
                out.write(orjson.dumps(item) + b"\n")


if __name__ == "__main__":
    main()
