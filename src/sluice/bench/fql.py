"""FQL benchmark: compiled-condition evaluations per second on one core, beside a hand-written ceiling.

The condition has three clauses — ``type = 'track' and properties.total > 100 or contains(context.page.url,
'checkout')`` — and runs over the conformance events (tests/fql/conformance.jsonl, or a built-in sample when
the file is not there). The ceiling is a hand-written Python function doing the same checks on the same events
in the same run, so the ratio is the compiler's overhead. Target: ≥ 200,000 evaluations/s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from sluice.fql import compile_fql

CONDITION: Final = "type = 'track' and properties.total > 100 or contains(context.page.url, 'checkout')"
TARGET_PER_SEC: Final = 200_000

_CONFORMANCE: Final = Path(__file__).resolve().parents[3] / "tests" / "fql" / "conformance.jsonl"

_SAMPLE: Final[list[dict[str, Any]]] = [
    {"type": "track", "event": "Order Completed", "properties": {"total": 250.5}},
    {"type": "track", "event": "Order Completed", "properties": {"total": 50}},
    {"type": "page", "context": {"page": {"url": "https://shop.example.com/checkout/complete"}}},
    {"type": "identify", "traits": {"email": "jane@example.com"}},
    {"type": "track", "event": "Weird Values", "properties": {"total": "250"}},
    {},
]


def load_events() -> list[dict[str, Any]]:
    try:
        lines = _CONFORMANCE.read_bytes().splitlines()
    except OSError:
        return list(_SAMPLE)
    events = [orjson.loads(line)["event"] for line in lines if line.strip()]
    return [e for e in events if isinstance(e, dict)] or list(_SAMPLE)


def ceiling(event: Mapping[str, Any]) -> bool:
    """The same three checks written by hand (with the same strictness: numbers only, strings only)."""
    if event.get("type") == "track":
        properties = event.get("properties")
        if isinstance(properties, dict):
            total = properties.get("total")
            if isinstance(total, int | float) and not isinstance(total, bool) and total > 100:
                return True
    context = event.get("context")
    if isinstance(context, dict):
        page = context.get("page")
        if isinstance(page, dict):
            url = page.get("url")
            return isinstance(url, str) and "checkout" in url
    return False


def _rate(fn: Callable[[Mapping[str, Any]], bool], events: list[dict[str, Any]], count: int) -> tuple[float, int]:
    rounds = max(1, count // len(events))
    matched = 0
    start = time.perf_counter()
    for _ in range(rounds):
        for event in events:
            if fn(event):
                matched += 1
    elapsed = time.perf_counter() - start
    return rounds * len(events) / max(elapsed, 1e-9), matched


def run_benchmark(count: int = 1_000_000) -> dict[str, Any]:
    events = load_events()
    condition = compile_fql(CONDITION)
    compile_start = time.perf_counter()
    for _ in range(100):
        compile_fql(CONDITION)
    compile_us = (time.perf_counter() - compile_start) / 100 * 1e6
    _rate(condition, events, min(count, 10_000))  # warm-up
    _rate(ceiling, events, min(count, 10_000))
    fql_rate, fql_matched = _rate(condition, events, count)
    ceiling_rate, ceiling_matched = _rate(ceiling, events, count)
    return {
        "condition": CONDITION,
        "events": len(events),
        "evaluations": max(1, count // len(events)) * len(events),
        "fqlEvaluationsPerSec": round(fql_rate),
        "ceilingEvaluationsPerSec": round(ceiling_rate),
        "fqlVsCeiling": round(fql_rate / ceiling_rate, 3),
        "compileMicroseconds": round(compile_us, 1),
        "agreesWithCeiling": fql_matched == ceiling_matched,
        "targetEvaluationsPerSec": TARGET_PER_SEC,
        "meetsTarget": fql_rate >= TARGET_PER_SEC,
    }


def format_report(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"sluice FQL benchmark — {r['evaluations']:,} evaluations over {r['events']} events, one core",
            f"  condition: {r['condition']}",
            f"  compiled FQL               {r['fqlEvaluationsPerSec']:>10,} evaluations/s"
            f"   (target ≥ {r['targetEvaluationsPerSec']:,}: {'met' if r['meetsTarget'] else 'MISSED'})",
            f"  hand-written ceiling       {r['ceilingEvaluationsPerSec']:>10,} evaluations/s"
            f"   (FQL at {r['fqlVsCeiling']:.0%} of it)",
            f"  compile once               {r['compileMicroseconds']:>10,.1f} µs",
        ]
    )
