"""A destination's consumer: lease → :func:`~sluice.pipeline.stages.process` → settle (DESIGN §2).

Each destination has its own :class:`DestinationRunner` with a few concurrent *flights* (lease,
process, settle), so the next batch is read while the previous one is in the function or on the
wire, and a slow or failing destination never holds back another (each leases only its own
entries).

Batches for ``on_batch`` (DESIGN §3.4): when the deployed function defines ``on_batch``, its
``batchMaxCount`` is above 1 and the destination's recent rate is at least
``low_volume_rate`` (1 event/s), a flight leases up to ``batchMaxCount`` events and tops the
batch up until it is full or ``batch_max_wait_s`` (10 s) passed since its first event. Below
that rate events go through the single-event handlers. Only one flight forms a batch at a time,
so partial batches do not pile up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from sluice.delivery.adapters import make_adapter
from sluice.delivery.recorder import DeliveryRecorder
from sluice.delivery.retry import RetryPolicy
from sluice.delivery.secrets import secrets_of
from sluice.errors import FunctionLoadError, SluiceError
from sluice.functions.pool import FunctionSource, Limits, WorkerPool
from sluice.functions.settings import secret_strings
from sluice.functions.store_bridge import StoreProvider
from sluice.pipeline.plan import DestinationPlan, FunctionPlan
from sluice.pipeline.stages import Generation, Settlement, process
from sluice.queue.base import EventLog, Leased, QueueError

__all__ = ["DestinationRunner", "PoolFactory", "RunnerOptions", "default_pool_factory"]

log = logging.getLogger("sluice.pipeline")

PoolFactory = Callable[[FunctionPlan], WorkerPool]


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    flights: int = 3
    lease_max: int = 500
    lease_s: float = 120.0
    idle_poll_s: float = 0.25
    batch_max_wait_s: float = 10.0
    low_volume_rate: float = 1.0
    rate_window_s: float = 10.0
    pool_size: int = 1
    limits: Limits = field(default_factory=Limits)
    retry_base_s: float = 1.0
    retry_cap_s: float = 600.0
    error_backoff_s: float = 1.0


def _stat_counts(pool: WorkerPool) -> dict[str, int]:
    stats = pool.stats
    return {
        "started": stats.started,
        "crashed": stats.crashed,
        "killed_for_timeout": stats.killed_for_timeout,
        "recycled": stats.recycled,
        "frames": stats.frames,
    }


class _RateMeter:
    """Events per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._marks: collections.deque[tuple[float, int]] = collections.deque()
        self._total = 0

    def add(self, now: float, n: int) -> None:
        self._marks.append((now, n))
        self._total += n

    def rate(self, now: float) -> float:
        while self._marks and self._marks[0][0] < now - self.window_s:
            self._total -= self._marks.popleft()[1]
        return self._total / self.window_s


def default_pool_factory(options: RunnerOptions, stores: StoreProvider | None = None) -> PoolFactory:
    """Pools with the runner's limits; ``stores`` gives each the ``store`` of its instance
    (``catalog.function_store.backend``); without it a pool's ``store`` lives in memory."""

    def make(fn: FunctionPlan) -> WorkerPool:
        source = FunctionSource(code=fn.code, filename=fn.filename, language=fn.language, schema=fn.schema)
        store = stores(fn.instance_id) if stores is not None else None
        return WorkerPool(source, fn.settings, limits=options.limits, size=options.pool_size, store=store)

    return make


class DestinationRunner:
    def __init__(
        self,
        plan: DestinationPlan,
        *,
        log_: EventLog,
        recorder: DeliveryRecorder,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        options: RunnerOptions | None = None,
        pool_factory: PoolFactory | None = None,
    ) -> None:
        self.options = options or RunnerOptions()
        self._log = log_
        self._recorder = recorder
        self._client = client
        self._clock = clock
        self._rng = rng or random.Random()
        self._pool_factory = pool_factory or default_pool_factory(self.options)
        self._gen = self._build(plan, None)
        self._ready = asyncio.Lock()
        self._forming = asyncio.Lock()
        self._wake = asyncio.Event()
        self._rate = _RateMeter(self.options.rate_window_s)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.settled = 0  # entries settled by this runner (for tests and stats)
        self._closed_pool_stats: collections.Counter[str] = collections.Counter()

    @property
    def plan(self) -> DestinationPlan:
        return self._gen.plan

    @property
    def destination_id(self) -> str:
        return self._gen.plan.id

    # --- generations -------------------------------------------------------------------------
    def _build(self, plan: DestinationPlan, previous: Generation | None) -> Generation:
        gen = Generation(plan=plan, route=plan.route)
        fn = plan.function
        previous_fn = previous.plan.function if previous is not None else None
        if (
            previous is not None
            and previous_fn is not None
            and fn is not None
            and previous_fn.pool_key() == fn.pool_key()
        ):
            gen.pool, gen.load_error = previous.pool, previous.load_error
        if plan.type != "function":
            if (
                previous is not None
                and previous.adapter is not None
                and previous.plan.adapter_key() == plan.adapter_key()
            ):
                gen.adapter = previous.adapter
            else:
                secrets = secrets_of(plan.type, plan.config)
                if fn is not None:
                    secrets += secret_strings(fn.schema, fn.settings)
                try:
                    gen.adapter = make_adapter(plan.type, plan.config, client=self._client, secrets=secrets)
                except SluiceError as exc:  # a config the catalog accepted but the adapter refuses
                    log.error("destination %s: cannot build its adapter: %s", plan.id, exc)
        return gen

    def update(self, plan: DestinationPlan) -> None:
        """Deliver with ``plan`` from the next batch on; batches in flight finish with the old one."""
        if plan == self._gen.plan:
            return
        old = self._gen
        self._gen = self._build(plan, old)
        old.retired = True
        if old.pool is not None and old.pool is not self._gen.pool:
            self._close_when_idle(old)
        self.wake()

    def pool_stats(self) -> tuple[collections.Counter[str], tuple[float, float] | None]:
        """Function worker counters of every pool this runner had, and the current pool's recent
        frame round trip (p50, p99 ms), for /metrics."""
        totals = collections.Counter(self._closed_pool_stats)
        pool = self._gen.pool
        if pool is None:
            return totals, None
        totals.update(_stat_counts(pool))
        trips = sorted(pool.stats.round_trips_ms)
        if not trips:
            return totals, None
        return totals, (trips[len(trips) // 2], trips[min(len(trips) - 1, int(len(trips) * 0.99))])

    def _retire_pool(self, pool: WorkerPool) -> None:
        self._closed_pool_stats.update(_stat_counts(pool))

    def _close_when_idle(self, gen: Generation) -> None:
        if gen.users == 0 and gen.pool is not None and gen.pool is not self._gen.pool:
            pool, gen.pool = gen.pool, None
            self._retire_pool(pool)
            task = asyncio.get_running_loop().create_task(pool.close())
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _current(self) -> Generation:
        """The current generation with its pool started (started once, under a lock)."""
        async with self._ready:
            gen = self._gen
            fn = gen.plan.function
            if fn is not None and fn.enabled and gen.pool is None and gen.load_error is None:
                pool = self._pool_factory(fn)
                try:
                    await pool.start()
                except FunctionLoadError as exc:
                    gen.load_error = exc
                    await pool.close()
                    return gen
                except BaseException:
                    await pool.close()
                    raise
                gen.pool = pool  # if the plan changed meanwhile, the flight using gen closes it after use
            return gen

    # --- running -----------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._flight(), name=f"sluice-dst-{self.destination_id}-{n}")
            for n in range(max(1, self.options.flights))
        ]

    async def _idle(self, timeout: float | None = None) -> None:
        wait = self.options.idle_poll_s if timeout is None else max(0.0, timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)
        self._wake.clear()

    async def _flight(self) -> None:
        while not self._stopping:
            try:
                gen = await self._current()
                leased, batch_mode = await self._lease(gen)
            except (SluiceError, QueueError, OSError) as exc:
                log.warning("destination %s: cannot lease or start its function: %s", self.destination_id, exc)
                await self._idle(self.options.error_backoff_s)
                continue
            if not leased:
                await self._idle()
                continue
            gen.users += 1
            try:
                settlement = await process(
                    gen,
                    leased,
                    recorder=self._recorder,
                    policy=self._policy(gen.plan),
                    rng=self._rng,
                    clock=self._clock,
                    batch_mode=batch_mode,
                )
                await self._settle(settlement)
                self.settled += len(leased)
            except Exception:  # never seen in tests; the leases expire and the entries come back
                log.exception("destination %s: a batch failed; its events will be retried", self.destination_id)
                await self._idle(self.options.error_backoff_s)
            finally:
                gen.users -= 1
                if gen.retired:
                    self._close_when_idle(gen)

    async def _lease(self, gen: Generation) -> tuple[list[Leased], bool]:
        """Lease the next batch; ``batch_mode`` when it goes to ``on_batch`` (DESIGN §3.4).

        The rate that picks the mode includes the events just leased, so a burst is batched at once
        while a trickle (under ``low_volume_rate``) goes to the single-event handlers.
        """
        options = self.options
        fn = gen.plan.function
        async with self._forming:
            now = self._clock()
            if not gen.batch_capable or fn is None:
                leased = await self._log.lease(self.destination_id, options.lease_max, options.lease_s)
                self._rate.add(now, len(leased))
                return leased, False
            want = fn.batch_max_count
            lease_s = options.lease_s + options.batch_max_wait_s
            leased = await self._log.lease(self.destination_id, want, lease_s)
            self._rate.add(now, len(leased))
            if not leased or self._rate.rate(now) < options.low_volume_rate:
                return leased, False
            deadline = now + options.batch_max_wait_s
            while len(leased) < want and not self._stopping and self._clock() < deadline:
                await self._idle(min(options.idle_poll_s, deadline - self._clock()))
                more = await self._log.lease(self.destination_id, want - len(leased), lease_s)
                self._rate.add(self._clock(), len(more))
                leased.extend(more)
            return leased, True

    def _policy(self, plan: DestinationPlan) -> RetryPolicy:
        return RetryPolicy(
            base_s=self.options.retry_base_s, cap_s=self.options.retry_cap_s, max_age_s=plan.retry_max_age_s
        )

    async def _settle(self, out: Settlement) -> None:
        dest = self.destination_id
        now = self._clock()
        for (outcome, code), n in out.counts.items():
            self._recorder.count(dest, outcome, code, n, now)
        if out.latencies_ms:
            self._recorder.latency(dest, out.latencies_ms, now)
        if out.dead:
            await self._log.dead_letter(dest, out.dead)
        if out.retries:
            await self._log.retry_at(dest, out.retries)
        if out.acks:
            await self._log.ack(dest, out.acks)

    async def stop(self) -> None:
        """Stop leasing; batches in flight finish and settle; then close the pools."""
        self._stopping = True
        self.wake()
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks, return_exceptions=True)
        gen = self._gen
        gen.retired = True
        if gen.pool is not None:
            pool, gen.pool = gen.pool, None
            await pool.close()
