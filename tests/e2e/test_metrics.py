"""``GET /metrics`` on a real ``sluice serve``: Prometheus text with ingest, queue, delivery and
function-worker counters, kept across a restart of the delivery process."""

from __future__ import annotations

import os
import re
import signal

import httpx
import pytest

from tests.conftest import HttpServer
from tests.e2e.conftest import Sluice, poll

pytestmark = pytest.mark.timeout(120)

LINE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (-?[0-9.e+]+|NaN|[+-]Inf)$")


def scrape(sluice: Sluice) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{sluice.url}/metrics", timeout=10, trust_env=False)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    out = {}
    for line in response.text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = LINE.match(line)
        assert found, f"not Prometheus text: {line!r}"
        name, labels, value = found.groups()
        pairs = frozenset(tuple(p.split("=", 1)) for p in re.findall(r'[a-z_]+="[^"]*"', labels or ""))
        out[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_ingest_delivery_and_workers_across_a_delivery_restart(
    sluice: Sluice, http_server: HttpServer
) -> None:
    http_server.route("/hook", 200, {})
    destination = sluice.connect_webhook(
        http_server, "def on_track(event, settings):\n    return event\n", path="/hook"
    )
    dst, src = destination["id"], sluice.source_id
    before = scrape(sluice)
    sluice.send("batch", {"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"ok": True}}] * 5})
    sluice.send("track", {"userId": "u"})  # no event name: fails on ingest

    def settled() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        now = scrape(sluice)
        grown = value(now, "sluice_delivery_events_total", destination=dst, outcome="delivered") - value(
            before, "sluice_delivery_events_total", destination=dst, outcome="delivered"
        )
        return now if grown >= 5 else None

    metrics = poll(settled, deadline_s=30, message="no delivered events in /metrics")
    assert value(metrics, "sluice_ingest_events_total", source=src, result="accepted", reason="") >= 6
    assert value(metrics, "sluice_ingest_events_total", source=src, result="failed", reason="event_not_defined") == 1
    assert value(metrics, "sluice_function_workers_started_total", destination=dst) >= 1
    assert value(metrics, "sluice_function_frames_total", destination=dst) >= 1
    assert value(metrics, "sluice_queue_entries", destination=dst, state="new") == 0
    assert (("sluice_function_frame_round_trip_ms", frozenset({("destination", dst), ("quantile", "0.99")}))) in metrics

    # the delivery process dies and is replaced: counters do not go backwards
    [delivery] = sluice.worker_pids(b"sluice.worker")
    delivered = value(metrics, "sluice_delivery_events_total", destination=dst, outcome="delivered")
    os.kill(delivery, signal.SIGKILL)

    def replaced() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        now = scrape(sluice)
        restarted = value(now, "sluice_delivery_process_restarts_total") == 1
        return now if restarted and sluice.worker_pids(b"sluice.worker") else None

    after = poll(replaced, deadline_s=60, message="the delivery process was not replaced")
    assert value(after, "sluice_delivery_events_total", destination=dst, outcome="delivered") >= delivered
