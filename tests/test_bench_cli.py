"""`sluice bench runtime --json` runs end to end and reports every figure the issue names."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import skip_or_fail


def bench(*args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """``sluice bench ARGS`` as a user runs it: a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "sluice", "bench", *args], capture_output=True, text=True, timeout=timeout
    )


def test_bench_runtime_json_reports_figures_beside_ceiling() -> None:
    result = bench("runtime", "--events", "2000", "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in (
        "isolatedEventsPerSec",
        "inProcessEventsPerSec",
        "frameRoundTripP50Ms",
        "frameRoundTripP99Ms",
        "idleWorkerRssMb",
    ):
        assert isinstance(report[key], int | float) and report[key] > 0, key
    assert report["events"] == 2000
    ratio = report["isolatedEventsPerSec"] / report["inProcessEventsPerSec"]
    assert abs(report["isolatedVsCeiling"] - ratio) < 0.002


def test_bench_queue_json_reports_the_log_beside_a_bare_sqlite_ceiling() -> None:
    result = bench("queue", "--events", "2000", "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("sqliteAppendEventsPerSec", "sqliteLeaseAckEventsPerSec", "bareSqliteInsertCeilingEventsPerSec"):
        assert report[key] > 0, key
    assert report["events"] == 2000


def test_bench_pipeline_json_reports_end_to_end_figures_beside_ceilings() -> None:
    result = bench("pipeline", "--events", "2000", "--seconds", "1", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in (
        "eventsPerSec",
        "latencyP50Ms",
        "latencyP99Ms",
        "logAppendCeilingEventsPerSec",
        "sinkCeilingEventsPerSec",
        "runtimeIsolatedEventsPerSec",
        "phase1LatencyP99Ms",
    ):
        assert isinstance(report[key], int | float) and report[key] > 0, key
    assert report["events"] == report["phase1Delivered"] == 2000
    assert report["phase1Untransformed"] == 0  # every event went through the insert function
    assert report["latencyDelivered"] == report["latencyEvents"] > 0


def test_bench_js_json_reports_the_pool_beside_python_and_a_bare_node_loop() -> None:
    if shutil.which("node") is None:
        skip_or_fail("the JavaScript benchmark needs Node.js on PATH")
    result = bench("js", "--events", "2000", "--latency-events", "300", "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in (
        "jsEventsPerSec",
        "pythonEventsPerSec",
        "nodeInProcessEventsPerSec",
        "jsLatencyP50Ms",
        "jsLatencyP99Ms",
        "pythonLatencyP99Ms",
    ):
        assert isinstance(report[key], int | float) and report[key] > 0, key
    assert report["events"] == 2000
    assert abs(report["jsVsNodeInProcess"] - report["jsEventsPerSec"] / report["nodeInProcessEventsPerSec"]) < 0.002
    assert set(report["meetsTargets"]) == {"jsEventsPerSec", "jsLatencyP99Ms"}


def test_bench_nats_json_reports_the_jetstream_ceiling() -> None:
    """Against the real NATS server (its own stream, deleted afterwards); no speed is asserted."""
    import socket

    with socket.socket() as probe:
        probe.settimeout(2)
        if probe.connect_ex(("127.0.0.1", 4222)) != 0:
            skip_or_fail("NATS is not listening on 127.0.0.1:4222")
    result = bench("nats", "--events", "2000", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["events"] == 2000
    assert report["publishEventsPerSec"] > 0 and report["consumeAckEventsPerSec"] > 0


def test_bench_nats_names_an_unreachable_server() -> None:
    result = bench("nats", "--url", "nats://127.0.0.1:9", "--events", "1000", timeout=60)
    assert result.returncode == 1
    assert "cannot reach NATS" in result.stderr and "127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(240)
def test_bench_scaleout_json_reports_every_worker_count_beside_its_ceilings() -> None:
    """Real PostgreSQL and NATS (a database and a prefix of its own, removed afterwards); every
    event must arrive, no speed is asserted."""
    if not _listening(5432):
        skip_or_fail("PostgreSQL is not listening on 127.0.0.1:5432")
    if not _listening(4222):
        skip_or_fail("NATS is not listening on 127.0.0.1:4222")
    result = bench("scaleout", "--events", "3000", "--workers", "1,2", "--json", timeout=200)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["events"] == 3000
    assert report["nats"]["publishEventsPerSec"] > 0 and report["nats"]["consumeAckEventsPerSec"] > 0
    assert report["embedded"]["eventsPerSec"] > 0 and report["embedded"]["delivered"] == 3000
    assert [run["workers"] for run in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert run["delivered"] == 3000 and run["missing"] == 0, run
        assert run["untransformed"] == 0  # every event went through the insert function
        assert run["duplicates"] >= 0 and run["eventsPerSec"] > 0 and run["ingestProcesses"] >= 1
        roles = {"api", "ingest", "worker", "sink", "sender", "postgres", "nats"}
        assert roles <= set(run["cpuSeconds"]) and set(run["cpuSecondsPer1000Events"]) == roles
        assert run["cpuSeconds"]["worker"] > 0 and run["cpuSeconds"]["ingest"] > 0
        assert set(run["workerSplit"]) == {"workerServe", "delivery", "functionWorkers"}


def test_bench_scaleout_names_an_unreachable_service() -> None:
    result = bench("scaleout", "--nats-url", "nats://127.0.0.1:9", "--events", "1000", timeout=60)
    assert result.returncode == 1
    assert "NATS" in result.stderr and "127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr
