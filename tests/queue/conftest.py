"""Fixtures of the event-log tests: a movable clock and the log under test (memory / sqlite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.queue import EventLog, MemoryEventLog, SqliteEventLog

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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_log(kind: str, clock: FakeClock, data_dir: Path) -> EventLog:
    acked, dead = 24 * HOUR, 7 * 24 * HOUR
    if kind == "memory":
        return MemoryEventLog(clock=clock, acked_retention_s=acked, dead_letter_retention_s=dead)
    return SqliteEventLog(data_dir, clock=clock, acked_retention_s=acked, dead_letter_retention_s=dead)


@pytest.fixture(params=["memory", "sqlite"])
async def log(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[EventLog]:
    event_log = make_log(request.param, clock, tmp_path)
    try:
        yield event_log
    finally:
        await event_log.close()
