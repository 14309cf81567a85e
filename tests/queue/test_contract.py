"""The one EventLog contract, run over every backend (the ``log`` fixture: memory, sqlite, nats).

Tests marked ``embedded`` move the injected clock past lease, retry and retention times; NATS runs
those timers on the server, so they run on the embedded logs only and ``test_nats.py`` checks the
same properties on NATS with short real durations. Times the server stamps are compared with
:func:`near` (exact for the fake clock, within a second or two for NATS).
"""

from __future__ import annotations

import pytest

from sluice.queue import DeadLetter, EventLog, Leased, QueueError
from tests.queue.conftest import HOUR, FakeClock

LEASE = 30.0


def near(t: float) -> object:
    return pytest.approx(t, abs=2.0)


def evs(*names: str) -> list[bytes]:
    return [f'{{"n":"{n}"}}'.encode() for n in names]


def names(leased: list[Leased]) -> list[str]:
    return [e.payload.decode()[6:-2] for e in leased]


async def test_is_an_event_log(log: EventLog) -> None:
    assert isinstance(log, EventLog)


async def test_append_returns_count_and_lease_keeps_order_within_a_source(log: EventLog, clock: FakeClock) -> None:
    await log.subscribe("d", ["s"])
    assert await log.append("s", evs("a", "b")) == 2
    assert await log.append("s", evs("c")) == 1
    assert await log.append("s", []) == 0
    got = await log.lease("d", 10, LEASE)
    assert names(got) == ["a", "b", "c"]
    assert all(e.source_id == "s" and e.attempts == 0 and e.first_attempt_at is None for e in got)
    assert all(e.appended_at == near(clock.now) for e in got)
    assert len({e.entry_id for e in got}) == 3
    assert await log.lease("d", 10, LEASE) == []  # all leased


async def test_lease_respects_max_events_and_keeps_each_sources_order(log: EventLog) -> None:
    await log.subscribe("d", ["s1", "s2"])
    await log.append("s1", evs("a1"))
    await log.append("s2", evs("b1", "b2"))
    await log.append("s1", evs("a2"))
    first = await log.lease("d", 3, LEASE)
    second = await log.lease("d", 3, LEASE)
    assert len(first) == 3 and len(second) == 1
    got = first + second
    assert [n for n in names(got) if n.startswith("a")] == ["a1", "a2"]
    assert [n for n in names(got) if n.startswith("b")] == ["b1", "b2"]
    assert {e.source_id for e in got if names([e])[0].startswith("a")} == {"s1"}
    assert await log.lease("d", 0, LEASE) == []


@pytest.mark.embedded
async def test_lease_merges_sources_in_append_order(log: EventLog) -> None:
    """One log sequence across sources (NATS has a stream per source: order holds within each)."""
    await log.subscribe("d", ["s1", "s2"])
    await log.append("s1", evs("a1"))
    await log.append("s2", evs("b1", "b2"))
    await log.append("s1", evs("a2"))
    first = await log.lease("d", 3, LEASE)
    assert names(first) == ["a1", "b1", "b2"]
    assert [e.source_id for e in first] == ["s1", "s2", "s2"]
    assert names(await log.lease("d", 3, LEASE)) == ["a2"]
    assert await log.lease("d", 0, LEASE) == []


async def test_events_before_subscription_are_not_delivered(log: EventLog) -> None:
    await log.append("s", evs("old"))
    await log.subscribe("d", ["s"])
    await log.subscribe("d", ["s"])  # idempotent: does not move the cursor
    await log.append("s", evs("new"))
    await log.subscribe("d", ["s"])
    assert names(await log.lease("d", 10, LEASE)) == ["new"]
    assert await log.lease("other", 10, LEASE) == []  # never subscribed


async def test_changing_the_subscription_list(log: EventLog) -> None:
    await log.subscribe("d", ["s1"])
    await log.append("s1", evs("a"))
    await log.append("s2", evs("x"))
    await log.subscribe("d", ["s2"])  # drop s1 (its new events too), add s2 from now on
    await log.append("s1", evs("b"))
    await log.append("s2", evs("y"))
    assert names(await log.lease("d", 10, LEASE)) == ["y"]
    assert await log.backlog("d") == 1


async def test_destinations_consume_independently(log: EventLog, clock: FakeClock) -> None:
    await log.subscribe("failing", ["s"])
    await log.subscribe("healthy", ["s"])
    await log.append("s", evs(*[str(i) for i in range(6)]))
    bad = await log.lease("failing", 3, LEASE)
    await log.retry_at("failing", {e.entry_id: clock.now + HOUR for e in bad})
    good = await log.lease("healthy", 6, LEASE)
    assert names(good) == [str(i) for i in range(6)]
    await log.ack("healthy", [e.entry_id for e in good])
    assert await log.backlog("healthy") == 0
    # the failing destination's retries do not block its own new events either
    assert names(await log.lease("failing", 10, LEASE)) == ["3", "4", "5"]
    assert await log.backlog("failing") == 6
    assert await log.backlog() == 6


@pytest.mark.embedded
async def test_lease_expiry_redelivers(log: EventLog, clock: FakeClock) -> None:
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a", "b"))
    first = await log.lease("d", 10, LEASE)
    await log.ack("d", [first[1].entry_id])
    clock.advance(LEASE - 1)
    assert await log.lease("d", 10, LEASE) == []
    clock.advance(1)
    again = await log.lease("d", 10, LEASE)
    assert names(again) == ["a"]
    assert again[0].entry_id == first[0].entry_id
    assert again[0].attempts == 0  # a lost lease is not a finished attempt
    assert again[0].first_attempt_at == clock.now - LEASE


@pytest.mark.embedded
async def test_retry_at_honours_the_time_and_counts_attempts(log: EventLog, clock: FakeClock) -> None:
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a"))
    start = clock.now
    [e] = await log.lease("d", 10, LEASE)
    await log.retry_at("d", {e.entry_id: start + 100})
    assert await log.backlog("d") == 1
    clock.advance(99)
    assert await log.lease("d", 10, LEASE) == []
    clock.advance(1)
    [again] = await log.lease("d", 10, LEASE)
    assert (again.entry_id, again.attempts, again.first_attempt_at) == (e.entry_id, 1, start)
    await log.retry_at("d", {again.entry_id: clock.now})
    [third] = await log.lease("d", 10, LEASE)
    assert third.attempts == 2
    await log.ack("d", [third.entry_id])
    assert await log.backlog("d") == 0


@pytest.mark.embedded
async def test_due_retries_come_before_new_events(log: EventLog, clock: FakeClock) -> None:
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a", "b"))
    [a] = await log.lease("d", 1, LEASE)
    await log.retry_at("d", {a.entry_id: clock.now + 5})
    clock.advance(5)
    assert names(await log.lease("d", 1, LEASE)) == ["a"]
    assert names(await log.lease("d", 1, LEASE)) == ["b"]


async def test_ack_is_idempotent_and_ignores_unknown_ids(log: EventLog) -> None:
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a"))
    [e] = await log.lease("d", 1, LEASE)
    await log.ack("d", [e.entry_id, "999999", "not-an-id"])
    await log.ack("d", [e.entry_id])
    await log.retry_at("d", {e.entry_id: 0.0})
    await log.dead_letter("d", [DeadLetter(e.entry_id, "expired", "late", 0.0)])
    assert await log.backlog("d") == 0
    assert await log.dead_letters("d") == []
    assert await log.lease("d", 1, LEASE) == []


async def _dead(log: EventLog, clock: FakeClock) -> tuple[list[Leased], float]:
    """Three dead letters failing at t0, t0 + 10 and t0 + 20; returns them and t0."""
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a", "b", "c"))
    a, b, c = await log.lease("d", 3, LEASE)
    await log.retry_at("d", {a.entry_id: clock.now})
    [a] = await log.lease("d", 3, LEASE)
    t0 = clock.now
    await log.dead_letter("d", [DeadLetter(a.entry_id, "expired", "RetryError: HTTP 500", t0)])
    clock.advance(10)
    await log.dead_letter("d", [DeadLetter(b.entry_id, "rejected_by_destination", "HTTP 400", clock.now)])
    clock.advance(10)
    await log.dead_letter("d", [DeadLetter(c.entry_id, "expired", "timeout", clock.now)])
    return [a, b, c], t0


async def test_dead_letters_are_listed_with_filters(log: EventLog, clock: FakeClock) -> None:
    (a, b, c), t0 = await _dead(log, clock)
    assert await log.backlog("d") == 0
    every = await log.dead_letters("d")
    assert [d.entry_id for d in every] == [a.entry_id, b.entry_id, c.entry_id]
    first = every[0]
    assert (first.status, first.reason, first.failed_at, first.attempts) == ("expired", "RetryError: HTTP 500", t0, 2)
    assert (first.source_id, first.payload, first.first_attempt_at) == ("s", a.payload, near(t0))
    assert every[1].attempts == 1
    assert [d.entry_id for d in await log.dead_letters("d", status="expired")] == [a.entry_id, c.entry_id]
    assert [d.entry_id for d in await log.dead_letters("d", since=t0 + 10)] == [b.entry_id, c.entry_id]
    assert [d.entry_id for d in await log.dead_letters("d", status="expired", since=t0 + 1)] == [c.entry_id]
    assert len(await log.dead_letters("d", limit=2)) == 2
    assert await log.dead_letters("other") == []
    assert (await log.stats()).destinations["d"].dead_letters == 3


async def test_replay_moves_matching_dead_letters_back_to_due(log: EventLog, clock: FakeClock) -> None:
    (a, _, c), t0 = await _dead(log, clock)
    assert await log.replay("d", status="expired", since=t0 + 1) == 1
    [again] = await log.lease("d", 10, LEASE)
    assert (again.entry_id, again.attempts, again.first_attempt_at) == (c.entry_id, 0, None)
    await log.ack("d", [again.entry_id])
    assert await log.replay("d", status="expired") == 1
    assert [e.entry_id for e in await log.lease("d", 10, LEASE)] == [a.entry_id]
    assert await log.replay("d") == 1  # the rejected one
    assert await log.replay("d") == 0
    assert await log.dead_letters("d") == []
    assert await log.backlog("d") == 2


async def test_backlog_and_stats(log: EventLog, clock: FakeClock) -> None:
    assert await log.backlog() == 0
    await log.subscribe("d1", ["s"])
    await log.subscribe("d2", ["s", "t"])
    await log.append("s", evs("1", "2", "3", "4"))
    await log.append("t", evs("5"))
    assert (await log.backlog("d1"), await log.backlog("d2"), await log.backlog()) == (4, 5, 9)
    leased = await log.lease("d1", 3, LEASE)
    await log.ack("d1", [leased[0].entry_id])
    await log.retry_at("d1", {leased[1].entry_id: clock.now + 60})
    stats = await log.stats()
    assert stats.events == 5
    d1 = stats.destinations["d1"]
    assert (d1.new, d1.scheduled + d1.leased, d1.dead_letters, d1.backlog) == (1, 2, 0, 3)
    assert stats.destinations["d2"].new == 5
    assert stats.backlog == await log.backlog() == 8


@pytest.mark.embedded
async def test_stats_tell_scheduled_from_leased(log: EventLog, clock: FakeClock) -> None:
    """NATS counts both as acknowledgements pending (a NakWithDelay entry is still in flight there)."""
    await log.subscribe("d", ["s"])
    await log.append("s", evs("1", "2"))
    first, _ = await log.lease("d", 2, LEASE)
    await log.retry_at("d", {first.entry_id: clock.now + 60})
    d = (await log.stats()).destinations["d"]
    assert (d.new, d.scheduled, d.leased) == (0, 1, 1)


@pytest.mark.embedded
async def test_prune_keeps_events_until_every_destination_is_done_and_the_window_passed(
    log: EventLog, clock: FakeClock
) -> None:
    await log.subscribe("d1", ["s"])
    await log.subscribe("d2", ["s"])
    await log.append("s", evs("a", "b"))
    a, b = await log.lease("d1", 2, LEASE)
    await log.ack("d1", [a.entry_id, b.entry_id])
    clock.advance(25 * HOUR)
    assert (await log.prune(clock.now)).events_removed == 0  # d2 has not consumed them
    a2, b2 = await log.lease("d2", 2, LEASE)
    await log.ack("d2", [a2.entry_id])
    await log.retry_at("d2", {b2.entry_id: clock.now + HOUR})
    result = await log.prune(clock.now)
    assert result.events_removed == 1  # b is still retrying at d2
    assert (await log.stats()).events == 1
    clock.advance(HOUR)
    [b3] = await log.lease("d2", 2, LEASE)
    assert b3.payload == b.payload
    await log.ack("d2", [b3.entry_id])
    assert (await log.prune()).events_removed == 1
    assert (await log.stats()).events == 0


@pytest.mark.embedded
async def test_prune_acked_retention_window(log: EventLog, clock: FakeClock) -> None:
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a"))
    appended = clock.now
    await log.append("unsubscribed", evs("x"))
    await log.ack("d", [e.entry_id for e in await log.lease("d", 10, LEASE)])
    clock.advance(24 * HOUR)
    assert (await log.prune()).events_removed == 0  # exactly 24 h: kept
    assert (await log.prune(appended + 24 * HOUR + 1)).events_removed == 2
    assert (await log.prune(appended + 48 * HOUR)).events_removed == 0


@pytest.mark.embedded
async def test_prune_dead_letter_retention_keeps_the_payload_meanwhile(log: EventLog, clock: FakeClock) -> None:
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a"))
    [e] = await log.lease("d", 1, LEASE)
    await log.dead_letter("d", [DeadLetter(e.entry_id, "expired", "r", clock.now)])
    failed = clock.now
    clock.advance(6 * 24 * HOUR)
    assert await log.prune() == type(await log.prune())(events_removed=0, dead_letters_removed=0)
    [dl] = await log.dead_letters("d")
    assert dl.payload == e.payload
    result = await log.prune(failed + 7 * 24 * HOUR + 1)
    assert (result.dead_letters_removed, result.events_removed) == (1, 1)
    assert await log.dead_letters("d") == []
    assert await log.replay("d") == 0


@pytest.mark.embedded
async def test_entry_ids_are_never_reused_after_prune(log: EventLog, clock: FakeClock) -> None:
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a"))
    [a] = await log.lease("d", 1, LEASE)
    await log.ack("d", [a.entry_id])
    clock.advance(25 * HOUR)
    await log.prune()
    await log.append("s", evs("b"))
    [b] = await log.lease("d", 1, LEASE)
    assert b.entry_id != a.entry_id
    await log.ack("d", [a.entry_id])  # a stale ack does not ack b
    assert await log.backlog("d") == 1


@pytest.mark.embedded
async def test_appended_at_never_goes_backwards(log: EventLog, clock: FakeClock) -> None:
    await log.subscribe("d", ["s"])
    await log.append("s", evs("a"))
    clock.advance(-100)
    await log.append("s", evs("b"))
    a, b = await log.lease("d", 2, LEASE)
    assert b.appended_at == a.appended_at


async def test_closed_log_refuses_work(log: EventLog) -> None:
    await log.close()
    with pytest.raises(QueueError):
        await log.append("s", evs("a"))
    await log.close()  # idempotent
