"""Fixtures of the event-log tests: a movable clock and the log under test (memory / sqlite / nats).

On NATS, timers (AckWait, NakWithDelay, MaxAge) and append times are the server's: the contract
tests there get a :class:`RealClock` (``advance`` moves only what the client computes), and tests
marked ``embedded`` are not collected for NATS; ``tests/queue/test_nats.py`` checks the same
properties with short real durations.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.queue import EventLog, MemoryEventLog, SqliteEventLog
from sluice.queue.nats import NatsEventLog
from tests.nats_util import require_nats, unique_prefix

HOUR = 3600.0


class FakeClock:
    """Injected into the log: tests move time instead of sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class RealClock(FakeClock):
    """Wall time plus an offset: ``advance`` moves the times the client computes, not the server's."""

    def __init__(self) -> None:  # no super().__init__: ``now`` is computed
        self.offset = 0.0

    @property  # type: ignore[override]
    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        self.offset += seconds
        return self.now


BACKENDS = ["memory", "sqlite", "nats"]


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> FakeClock:
    backend = getattr(getattr(request.node, "callspec", None), "params", {}).get("log")
    return RealClock() if backend == "nats" else FakeClock()


def make_log(kind: str, clock: FakeClock, data_dir: Path) -> EventLog:
    acked, dead = 24 * HOUR, 7 * 24 * HOUR
    if kind == "memory":
        return MemoryEventLog(clock=clock, acked_retention_s=acked, dead_letter_retention_s=dead)
    if kind == "nats":
        return NatsEventLog(require_nats(), prefix=unique_prefix(), clock=clock, dead_letter_retention_s=dead)
    return SqliteEventLog(data_dir, clock=clock, acked_retention_s=acked, dead_letter_retention_s=dead)


@pytest.fixture(params=BACKENDS)
async def log(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[EventLog]:
    event_log = make_log(request.param, clock, tmp_path)
    try:
        yield event_log
    finally:
        if isinstance(event_log, NatsEventLog):
            cleaner = NatsEventLog(event_log.url, prefix=event_log.prefix)
            await cleaner.delete_everything()
            await cleaner.close()
        await event_log.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that move the clock run on the embedded backends only (see the module docstring)."""
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        on_nats = params is not None and params.params.get("log") == "nats"
        (drop if on_nats and item.get_closest_marker("embedded") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
