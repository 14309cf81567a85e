"""The NATS JetStream event log where its timers are the server's: short real durations, polled.

The contract suite (test_contract.py) runs on NATS too, except the tests that move a fake clock;
these check the same properties with AckWait, NakWithDelay and MaxAge of a second or so, and what
only a shared log has: several processes (log objects) consuming one destination.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sluice.queue import DeadLetter, Leased, QueueError
from sluice.queue.nats import NatsEventLog, decode_name, encode_name
from tests.nats_util import require_nats, unique_prefix

DEADLINE_S = 15.0


def evs(*names: str) -> list[bytes]:
    return [f'{{"n":"{n}"}}'.encode() for n in names]


async def poll_lease(log: NatsEventLog, destination: str, lease_s: float = 30.0) -> tuple[list[Leased], float]:
    """Lease until something comes (deadline): the entries and how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        got = await log.lease(destination, 100, lease_s)
        if got:
            return got, time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing came due for {destination} within {DEADLINE_S} s")


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., NatsEventLog]]:
    """Log objects on one fresh prefix (each one = one sluice process); all deleted afterwards."""
    url, prefix = require_nats(), unique_prefix()
    made: list[NatsEventLog] = []

    def factory(**options: Any) -> NatsEventLog:
        log = NatsEventLog(url, prefix=prefix, **options)
        made.append(log)
        return log

    yield factory
    cleaner = NatsEventLog(url, prefix=prefix)
    await cleaner.delete_everything()
    await cleaner.close()
    for log in made:
        await log.close()


async def test_a_lost_lease_comes_back_after_ack_wait(make: Callable[..., NatsEventLog]) -> None:
    log = make(ack_wait_s=1.0)
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a"))
    [first] = await log.lease("d", 10, 1.0)
    assert await log.lease("d", 10, 1.0) == []
    [again], waited = await poll_lease(log, "d", 1.0)
    assert waited >= 0.5  # AckWait is 1 s, counted on the server from the delivery
    assert (again.entry_id, again.payload, again.attempts) == (first.entry_id, first.payload, 0)
    assert again.first_attempt_at == again.appended_at  # documented: no failed attempt was recorded


async def test_retry_at_naks_with_delay_and_counts_attempts(make: Callable[..., NatsEventLog]) -> None:
    log = make()
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a", "b"))
    a, b = await log.lease("d", 10, 30.0)
    leased_at = time.time()
    await log.retry_at("d", {a.entry_id: time.time() + 1.0})
    await log.ack("d", [b.entry_id])
    assert await log.lease("d", 10, 30.0) == []
    [again], waited = await poll_lease(log, "d")
    assert waited >= 0.7
    assert (again.entry_id, again.attempts) == (a.entry_id, 1)
    assert again.first_attempt_at == pytest.approx(leased_at, abs=1.0)
    await log.retry_at("d", {again.entry_id: 0.0})  # due now: a plain NAK
    [third] = await log.lease("d", 10, 30.0)
    assert (third.attempts, third.first_attempt_at) == (2, again.first_attempt_at)
    await log.ack("d", [third.entry_id])
    assert await log.backlog("d") == 0


async def test_due_retries_come_before_new_events(make: Callable[..., NatsEventLog]) -> None:
    log = make()
    await log.subscribe("d", ["s"])
    await log.subscribe("probe", ["s"])  # a timer on the server: its retry comes due with d's
    await log.append("s", evs("a", "b"))
    [a] = await log.lease("d", 1, 30.0)
    [p, _] = await log.lease("probe", 2, 30.0)
    due = time.time() + 0.3
    await log.retry_at("d", {a.entry_id: due})
    await log.retry_at("probe", {p.entry_id: due})
    await poll_lease(log, "probe")
    [first] = await log.lease("d", 1, 30.0)
    assert first.entry_id == a.entry_id
    [second] = await log.lease("d", 1, 30.0)
    assert second.payload == evs("b")[0]


async def test_in_progress_acks_hold_a_lease_longer_than_ack_wait(make: Callable[..., NatsEventLog]) -> None:
    holder, other = make(ack_wait_s=0.6), make(ack_wait_s=0.6)
    for log in (holder, other):
        await log.subscribe("d", ["s"])
    await holder.append("s", evs("a"))
    [held] = await holder.lease("d", 10, 2.5)  # 2.5 s lease on a 0.6 s AckWait: kept alive
    started = time.monotonic()
    [again], _ = await poll_lease(other, "d")
    assert time.monotonic() - started >= 2.0  # not before the requested lease ran out
    assert again.entry_id == held.entry_id


async def test_processes_share_a_destination_and_each_event_goes_to_one(make: Callable[..., NatsEventLog]) -> None:
    one, two = make(), make()
    for log in (one, two):
        await log.subscribe("d", ["s"])
    await one.append("s", evs(*[str(i) for i in range(200)]))
    first, second = await asyncio.gather(one.lease("d", 150, 30.0), two.lease("d", 150, 30.0))
    assert len(first) + len(second) == 200
    assert not {e.entry_id for e in first} & {e.entry_id for e in second}
    await two.ack("d", [e.entry_id for e in first])  # not held by two: ignored
    assert await one.backlog("d") == 200
    await asyncio.gather(one.ack("d", [e.entry_id for e in first]), two.ack("d", [e.entry_id for e in second]))
    assert await one.backlog("d") == 0
    assert await two.backlog() == 0


async def test_attempts_and_dead_letters_are_shared_between_processes(make: Callable[..., NatsEventLog]) -> None:
    one, two = make(), make()
    for log in (one, two):
        await log.subscribe("d", ["s"])
    await one.append("s", evs("a"))
    [a] = await one.lease("d", 1, 30.0)
    await one.retry_at("d", {a.entry_id: 0.0})
    [again] = await two.lease("d", 1, 30.0)
    assert again.attempts == 1
    await two.dead_letter("d", [DeadLetter(again.entry_id, "expired", "HTTP 500 for 4 h", time.time())])
    [dead] = await one.dead_letters("d")
    assert (dead.entry_id, dead.attempts, dead.reason, dead.payload) == (a.entry_id, 2, "HTTP 500 for 4 h", a.payload)
    assert await one.replay("d") == 1
    [replayed] = await two.lease("d", 1, 30.0)
    assert (replayed.entry_id, replayed.attempts, replayed.first_attempt_at) == (a.entry_id, 0, None)
    assert replayed.appended_at == a.appended_at
    await two.ack("d", [replayed.entry_id])
    assert (await one.stats()).destinations["d"].backlog == 0


async def test_max_age_is_the_retention(make: Callable[..., NatsEventLog]) -> None:
    log = make(stream_max_age_s=1.0)
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a", "b"))
    assert (await log.stats()).events == 2
    assert (await log.prune()).events_removed == 0  # the server prunes, not sluice

    async def gone() -> bool:
        return (await log.stats()).events == 0

    await until(gone)


async def test_ids_that_are_not_plain_tokens_round_trip(make: Callable[..., NatsEventLog]) -> None:
    assert encode_name("src_1-A") == "src_1-A"
    assert decode_name(encode_name("my source/ü.*")) == "my source/ü.*"
    log = make()
    await log.subscribe("dest one.>", ["source *1"])
    await log.append("source *1", evs("a"))
    [e] = await log.lease("dest one.>", 5, 30.0)
    assert e.source_id == "source *1"
    assert (await log.stats()).destinations["dest one.>"].leased == 1


async def test_unsubscribing_deletes_the_consumer_and_resubscribing_starts_from_now(
    make: Callable[..., NatsEventLog],
) -> None:
    log = make()
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a"))
    await log.subscribe("d", [])
    await log.append("s", evs("while-off"))
    assert await log.lease("d", 10, 30.0) == []
    await log.subscribe("d", ["s"])
    await log.append("s", evs("b"))
    assert [e.payload for e in await log.lease("d", 10, 30.0)] == evs("b")


async def test_an_unreachable_server_is_a_clear_error() -> None:
    log = NatsEventLog("nats://127.0.0.1:9", prefix=unique_prefix())
    with pytest.raises(QueueError, match=r"cannot reach NATS at 127\.0\.0\.1:9"):
        await log.append("s", evs("a"))
    await log.close()


def test_a_bad_url_or_prefix_is_refused() -> None:
    with pytest.raises(QueueError, match="nats://host:4222"):
        NatsEventLog("http://127.0.0.1:4222")
    with pytest.raises(QueueError, match="prefix"):
        NatsEventLog("nats://127.0.0.1:4222", prefix="a.b")
