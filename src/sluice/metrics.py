"""Prometheus text exposition (format 0.0.4) of sluice's own counters, without a client library.

``GET /metrics`` on ``sluice serve`` renders :func:`render` over families built from the ingest
counters, the event log's backlog and what the delivery process reports (see
:class:`DeliveryTotals`). Counters count since the server started (the delivery process's
totals are carried over when it is restarted).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DeliveryTotals", "Family", "render"]

Kind = Literal["counter", "gauge"]


@dataclass(slots=True)
class Family:
    name: str
    kind: Kind
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            if labels:
                inner = ",".join(f'{key}="{_escape(str(val))}"' for key, val in sorted(labels.items()))
                lines.append(f"{family.name}{{{inner}}} {_number(value)}")
            else:
                lines.append(f"{family.name} {_number(value)}")
    return "\n".join(lines) + "\n"


POOL_FIELDS = ("started", "crashed", "killed_for_timeout", "recycled", "frames")


@dataclass(slots=True)
class DeliveryTotals:
    """What the delivery process counted: outcomes per destination and its function pools' stats.

    The delivery process sends a snapshot of its own totals every few seconds; when it is
    replaced, the last snapshot is carried over so the counters never go backwards.
    """

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    pools: dict[str, Counter[str]] = field(default_factory=dict)
    round_trip_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # destination → (p50, p99)
    #: destination → the function version id this process delivers with now (a deploy reached it)
    versions: dict[str, str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "outcomes": [[d, o, n] for (d, o), n in self.outcomes.items()],
            "pools": {d: dict(c) for d, c in self.pools.items()},
            "roundTripMs": {d: list(v) for d, v in self.round_trip_ms.items()},
            "versions": dict(self.versions),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> DeliveryTotals:
        totals = cls()
        for destination, outcome, n in data.get("outcomes", []):
            totals.outcomes[(str(destination), str(outcome))] += int(n)
        for destination, stats in dict(data.get("pools", {})).items():
            totals.pools[str(destination)] = Counter({str(k): int(v) for k, v in dict(stats).items()})
        for destination, pair in dict(data.get("roundTripMs", {})).items():
            totals.round_trip_ms[str(destination)] = (float(pair[0]), float(pair[1]))
        totals.versions = {str(d): str(v) for d, v in dict(data.get("versions", {})).items()}
        return totals

    def plus(self, other: DeliveryTotals) -> DeliveryTotals:
        """Counters added (for a replaced process); the latest round trips win."""
        merged = DeliveryTotals(self.outcomes + other.outcomes)
        for destination in self.pools.keys() | other.pools.keys():
            merged.pools[destination] = self.pools.get(destination, Counter()) + other.pools.get(destination, Counter())
        merged.round_trip_ms = {**self.round_trip_ms, **other.round_trip_ms}
        merged.versions = dict(other.versions)  # what runs now: the latest process's
        return merged

    def families(self) -> list[Family]:
        outcomes = Family("sluice_delivery_events_total", "counter", "Events settled per destination and outcome.")
        for (destination, outcome), n in sorted(self.outcomes.items()):
            outcomes.add(n, destination=destination, outcome=outcome)
        names = {
            "started": ("sluice_function_workers_started_total", "Function worker processes started."),
            "crashed": ("sluice_function_workers_crashed_total", "Function workers that died mid-frame."),
            "killed_for_timeout": ("sluice_function_workers_killed_total", "Function workers killed by the watchdog."),
            "recycled": ("sluice_function_workers_recycled_total", "Function workers replaced after a frame."),
            "frames": ("sluice_function_frames_total", "Micro-batch frames run by function workers."),
        }
        pools = [Family(name, "counter", text) for name, text in names.values()]
        for destination, stats in sorted(self.pools.items()):
            for family, key in zip(pools, names, strict=True):
                family.add(stats.get(key, 0), destination=destination)
        latency = Family(
            "sluice_function_frame_round_trip_ms", "gauge", "Round trip of a micro-batch frame (recent frames)."
        )
        for destination, (p50, p99) in sorted(self.round_trip_ms.items()):
            latency.add(p50, destination=destination, quantile="0.5")
            latency.add(p99, destination=destination, quantile="0.99")
        versions = Family(
            "sluice_function_version_info", "gauge", "The function version each destination runs in this process."
        )
        for destination, version in sorted(self.versions.items()):
            versions.add(1, destination=destination, version=version)
        return [outcomes, *pools, latency, versions]
