"""SQLite-only guarantees: durability across reopen and kill -9, group commit, bounded size."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sluice.queue import DeadLetter, QueueError, SqliteEventLog
from sluice.queue.bench import measure_append_ceiling, measure_lease_ack, sample_event
from tests.queue.conftest import HOUR, FakeClock


async def test_state_survives_close_and_reopen(tmp_path: Path, clock: FakeClock) -> None:
    log = SqliteEventLog(tmp_path, clock=clock)
    await log.subscribe("d", ["s"])
    await log.append("s", [b"1", b"2", b"3", b"4"])
    one, two, three = await log.lease("d", 3, 30)
    await log.ack("d", [one.entry_id])
    await log.retry_at("d", {two.entry_id: clock.now + 60})
    await log.dead_letter("d", [DeadLetter(three.entry_id, "expired", "why", clock.now)])
    await log.close()

    log = SqliteEventLog(tmp_path, clock=clock)
    try:
        assert (await log.stats()).destinations["d"].backlog == 2
        assert [e.payload for e in await log.lease("d", 10, 600)] == [b"4"]
        clock.advance(60)
        [again] = await log.lease("d", 10, 30)
        assert (again.entry_id, again.attempts) == (two.entry_id, 1)
        [dead] = await log.dead_letters("d")
        assert (dead.entry_id, dead.reason, dead.payload) == (three.entry_id, "why", b"3")
        await log.append("s", [b"5"])
        assert [e.payload for e in await log.lease("d", 10, 30)] == [b"5"]
    finally:
        await log.close()


async def test_release_leases_makes_a_dead_owners_leases_due_at_once(tmp_path: Path, clock: FakeClock) -> None:
    log = SqliteEventLog(tmp_path, clock=clock)
    await log.subscribe("d", ["s"])
    await log.append("s", [b"1", b"2", b"3"])
    one, two, _ = await log.lease("d", 3, 600)
    await log.retry_at("d", {two.entry_id: clock.now + 3600})  # waiting for its retry: not a lease
    await log.close()  # the owner "dies" holding leases on 1 and 3

    log = SqliteEventLog(tmp_path, clock=clock)
    try:
        assert await log.lease("d", 10, 30) == []  # still leased for 600 s
        assert await log.release_leases() == 2
        again = await log.lease("d", 10, 30)
        assert sorted(e.payload for e in again) == [b"1", b"3"]
        assert all(e.attempts == 0 for e in again)  # a lost lease is not a failed attempt
        await log.ack("d", [e.entry_id for e in again])
        clock.advance(3600)
        assert [e.payload for e in await log.lease("d", 10, 30)] == [b"2"]
        assert one.entry_id in {e.entry_id for e in again}
    finally:
        await log.close()


def test_synchronous_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(QueueError):
        SqliteEventLog(tmp_path, synchronous="OFF")  # type: ignore[arg-type]
    log = SqliteEventLog(tmp_path, synchronous="FULL")
    log.close_sync()


async def test_concurrent_appends_are_group_committed(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path)
    try:
        await log.subscribe("d", ["s"])
        before = log.commits
        results = await asyncio.gather(*(log.append("s", [b'{"i":%d}' % i]) for i in range(200)))
        assert results == [1] * 200
        assert log.commits - before <= 5  # not one commit per call
        assert await log.backlog("d") == 200
    finally:
        await log.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from sluice.queue import SqliteEventLog

    async def main() -> None:
        log = SqliteEventLog(sys.argv[1])
        async def one(i: int) -> None:
            await log.append("s", [b'{"i":%d}' % i])
            sys.stdout.write(f"{i}\\n")
            sys.stdout.flush()
        i = 0
        while True:
            await asyncio.gather(*(one(i + k) for k in range(25)))
            i += 25

    asyncio.run(main())
    """
)


def test_kill_9_loses_no_committed_append(tmp_path: Path) -> None:
    setup = SqliteEventLog(tmp_path)
    asyncio.run(setup.subscribe("d", ["s"]))
    setup.close_sync()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None
    committed: set[int] = set()
    buffer = b""
    deadline = time.monotonic() + 30
    try:
        while len(committed) < 3000:
            assert time.monotonic() < deadline, "the child did not append in time"
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            ready, _, _ = select.select([child.stdout], [], [], 0.5)
            if ready:
                buffer += os.read(child.stdout.fileno(), 65536)
                *lines, buffer = buffer.split(b"\n")
                committed.update(int(line) for line in lines)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    rest = child.stdout.read()
    committed.update(int(line) for line in (buffer + rest).split(b"\n")[:-1])

    async def read_back() -> set[int]:
        log = SqliteEventLog(tmp_path)
        try:
            leased = await log.lease("d", 1_000_000, 30)
            return {int(e.payload[5:-1]) for e in leased}
        finally:
            await log.close()

    present = asyncio.run(read_back())
    assert committed <= present
    assert len(present) >= 3000


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


async def test_data_directory_stays_bounded_under_steady_load(tmp_path: Path, clock: FakeClock) -> None:
    log = SqliteEventLog(tmp_path, clock=clock, acked_retention_s=2 * HOUR, journal_size_limit=4 * 1024 * 1024)
    events = [sample_event(i) for i in range(500)]
    sizes: list[int] = []
    try:
        await log.subscribe("d", ["s"])
        for _ in range(40):  # 20,000 events of ~1 KB
            await log.append("s", events)
            while leased := await log.lease("d", 200, 30):
                await log.ack("d", [e.entry_id for e in leased])
            clock.advance(HOUR)
            await log.prune()
            sizes.append(_dir_size(tmp_path))
        assert (await log.stats()).events <= 3 * len(events)
    finally:
        await log.close()
    appended = 40 * sum(len(e) for e in events)
    plateau = max(sizes[:10])
    assert max(sizes[10:]) <= plateau * 1.1, sizes
    assert sizes[-1] < appended / 3, sizes


async def test_bench_helpers_report_rates(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path)
    try:
        assert await measure_append_ceiling(log, 1_050, batch=100) > 0
        assert await measure_lease_ack(log, 500, batch=100) > 0
        assert await log.backlog() == 0
    finally:
        await log.close()
