"""The pipeline of one process: a runner per destination, kept in step with the catalog.

:class:`Pipeline` reads the catalog's plans every ``refresh_s`` seconds (a deploy, an enabled
flag, new settings or sources reach delivery within that time, without a restart), subscribes
each destination to its sources, flushes the outcome recorder to the store every ``flush_s``
seconds and applies retention every ``prune_s`` seconds.

Decisions:

* A disabled destination is unsubscribed: events sent while it is disabled are never delivered
  to it, as in Segment. Entries it already held (retries) stay and are ``filtered`` by
  ``disabled`` if they come due while it is off.
* A deleted destination's runner stops after its batches in flight settle.
* :meth:`close` (SIGTERM) stops leasing, lets every batch in flight finish and settle, flushes
  the recorder and closes the worker pools; entries never leased stay in the log for next time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from anyio import to_thread

from sluice.delivery.recorder import DeliveryRecorder, RecorderBatch
from sluice.metrics import DeliveryTotals
from sluice.pipeline.plan import DestinationPlan
from sluice.pipeline.runner import DestinationRunner, PoolFactory, RunnerOptions
from sluice.queue.base import EventLog

__all__ = ["Pipeline"]

log = logging.getLogger("sluice.pipeline")
#: Outcome batches (one per flush, each second) kept while the store refuses them: 10 minutes.
UNFLUSHED_MAX = 600


def _new_client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)
    return httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False)


class Pipeline:
    def __init__(
        self,
        *,
        event_log: EventLog,
        load_plans: Callable[[], Sequence[DestinationPlan]],
        recorder: DeliveryRecorder,
        write_outcomes: Callable[[RecorderBatch], None] | None = None,
        prune_outcomes: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.time,
        options: RunnerOptions | None = None,
        refresh_s: float = 2.0,
        flush_s: float = 1.0,
        prune_s: float = 300.0,
        client: httpx.AsyncClient | None = None,
        pool_factory: PoolFactory | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.log = event_log
        self.recorder = recorder
        self.options = options or RunnerOptions()
        self.refresh_s = refresh_s
        self.flush_s = flush_s
        self.prune_s = prune_s
        self.runners: dict[str, DestinationRunner] = {}
        self._load_plans = load_plans
        self._write_outcomes = write_outcomes
        self._prune_outcomes = prune_outcomes
        self._clock = clock
        self._own_client = client is None
        self._client = client or _new_client()
        self._pool_factory = pool_factory
        self._rng = rng or random.Random()
        self._subscribed: dict[str, frozenset[str]] = {}
        self._unflushed: collections.deque[RecorderBatch] = collections.deque(maxlen=UNFLUSHED_MAX)
        self._loops: list[asyncio.Task[None]] = []
        self._refresh_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()  # the periodic flush and a caller's must not write one batch twice
        self._closed = False

    async def start(self) -> None:
        await self.refresh()
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._every(self.refresh_s, self.refresh), name="sluice-pipeline-refresh"),
            loop.create_task(self._every(self.flush_s, self.flush), name="sluice-pipeline-flush"),
            loop.create_task(self._every(self.prune_s, self.prune), name="sluice-pipeline-prune"),
        ]

    def wake(self, *_: Any) -> None:
        """New events were appended (ingest calls this): idle runners lease now, not at their next poll."""
        for runner in self.runners.values():
            runner.wake()

    async def _every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.exception("pipeline: %s failed; trying again in %.1f s", getattr(job, "__name__", job), seconds)

    async def refresh(self) -> None:
        """Apply the catalog now: new, changed and deleted destinations."""
        async with self._refresh_lock:
            if self._closed:
                return
            plans = list(await to_thread.run_sync(self._load_plans))
            seen: set[str] = set()
            for plan in plans:
                seen.add(plan.id)
                sources = plan.source_ids if plan.enabled else frozenset()
                if self._subscribed.get(plan.id) != sources:
                    await self.log.subscribe(plan.id, sources)
                    self._subscribed[plan.id] = sources
                runner = self.runners.get(plan.id)
                if runner is None:
                    runner = DestinationRunner(
                        plan,
                        log_=self.log,
                        recorder=self.recorder,
                        client=self._client,
                        clock=self._clock,
                        rng=self._rng,
                        options=self.options,
                        pool_factory=self._pool_factory,
                    )
                    self.runners[plan.id] = runner
                    runner.start()
                else:
                    runner.update(plan)
            for gone in [d for d in self.runners if d not in seen]:
                runner = self.runners.pop(gone)
                await runner.stop()
                if self._subscribed.pop(gone, None):
                    await self.log.subscribe(gone, ())

    def totals(self) -> DeliveryTotals:
        """Outcomes and function-pool counters since this pipeline started (for /metrics)."""
        totals = DeliveryTotals(outcomes=Counter(self.recorder.totals))
        for destination, runner in self.runners.items():
            counts, trips = runner.pool_stats()
            if counts:
                totals.pools[destination] = counts
            if trips is not None:
                totals.round_trip_ms[destination] = trips
            function = runner.plan.function
            if function is not None and function.enabled:
                totals.versions[destination] = function.version_id
        return totals

    async def flush(self) -> None:
        """Write the recorder's pending counters, latencies and samples to the store.

        A batch the store refused (the catalog database is down) is kept and written first next
        time, up to :data:`UNFLUSHED_MAX` batches (then the oldest are dropped, with a log line)."""
        async with self._flush_lock:
            if len(self._unflushed) == UNFLUSHED_MAX:
                log.error(
                    "pipeline: the outcome store refused counters for %d flushes; dropping the oldest", UNFLUSHED_MAX
                )
            self._unflushed.append(self.recorder.take())
            if self._write_outcomes is None:
                self._unflushed.clear()
                return
            while self._unflushed:
                await to_thread.run_sync(self._write_outcomes, self._unflushed[0])
                self._unflushed.popleft()

    async def prune(self) -> None:
        await self.log.prune()
        if self._prune_outcomes is not None:
            await to_thread.run_sync(self._prune_outcomes)

    async def close(self) -> None:
        """Drain: stop leasing, finish and settle every batch in flight, flush, close pools."""
        async with self._refresh_lock:
            self._closed = True
        loops, self._loops = self._loops, []
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(runner.stop() for runner in self.runners.values()), return_exceptions=True)
        self.runners.clear()
        try:
            await self.flush()
        except Exception:
            log.exception("pipeline: the last flush of outcome counters failed")
        if self._own_client:
            await self._client.aclose()
