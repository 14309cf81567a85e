"""Outcome counters survive a catalog outage: a refused flush is written again next time."""

from __future__ import annotations

import pytest

from sluice.delivery.recorder import DeliveryRecorder, RecorderBatch
from sluice.pipeline.supervisor import Pipeline
from sluice.queue.memory import MemoryEventLog


async def test_a_refused_flush_is_kept_and_written_first_next_time() -> None:
    written: list[RecorderBatch] = []
    refuse = [True]

    def write(batch: RecorderBatch) -> None:
        if refuse[0]:
            raise ConnectionError("the catalog database is down")
        written.append(batch)

    log = MemoryEventLog()
    pipeline = Pipeline(event_log=log, load_plans=list, recorder=DeliveryRecorder(), write_outcomes=write)
    with pytest.raises(ConnectionError):
        await pipeline.flush()
    with pytest.raises(ConnectionError):
        await pipeline.flush()
    refuse[0] = False
    await pipeline.flush()
    assert len(written) == 3  # the two refused batches, oldest first, then this flush's
    await pipeline.flush()
    assert len(written) == 4
    await pipeline.close()
    await log.close()
