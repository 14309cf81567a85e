"""Event-log benchmark: the SQLite log's appends and lease+ack beside a bare SQLite ceiling.

The ceiling is the same ~1 KB events inserted by a bare ``sqlite3`` loop (WAL, NORMAL, 100 rows
per transaction) into a one-table database on the same disk, measured in the same run; the
in-memory twin's figures show the log's own overhead without any I/O.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from sluice.queue.bench import measure_append_ceiling, measure_lease_ack, sample_event
from sluice.queue.memory import MemoryEventLog
from sluice.queue.sqlite import SqliteEventLog


def bare_sqlite_inserts(path: Path, n: int, batch: int = 100) -> float:
    events = [sample_event(i) for i in range(batch)]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        start = time.perf_counter()
        for done in range(0, n, batch):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO log (payload) VALUES (?)", [(e,) for e in events[: min(batch, n - done)]])
            conn.execute("COMMIT")
        return n / max(time.perf_counter() - start, 1e-9)
    finally:
        conn.close()


async def run_benchmark(count: int = 100_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sluice-bench-queue-") as tmp:
        root = Path(tmp)
        ceiling = await asyncio.to_thread(bare_sqlite_inserts, root / "bare.db", count)
        log = SqliteEventLog(root / "log")
        try:
            append = await measure_append_ceiling(log, count)
            lease_ack = await measure_lease_ack(log, count)
        finally:
            await log.close()
    memory = MemoryEventLog()
    memory_append = await measure_append_ceiling(memory, count)
    memory_lease_ack = await measure_lease_ack(memory, count)
    await memory.close()
    return {
        "events": count,
        "eventBytes": len(sample_event(0)),
        "sqliteAppendEventsPerSec": round(append),
        "sqliteLeaseAckEventsPerSec": round(lease_ack),
        "bareSqliteInsertCeilingEventsPerSec": round(ceiling),
        "memoryAppendEventsPerSec": round(memory_append),
        "memoryLeaseAckEventsPerSec": round(memory_lease_ack),
    }


def format_report(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"sluice event-log benchmark — {r['events']} events of {r['eventBytes']} B, 100 per call",
            f"  SQLite log append          {r['sqliteAppendEventsPerSec']:>10,} events/s",
            f"  bare SQLite insert ceiling {r['bareSqliteInsertCeilingEventsPerSec']:>10,} events/s",
            f"  SQLite log lease + ack     {r['sqliteLeaseAckEventsPerSec']:>10,} events/s",
            f"  in-memory twin append      {r['memoryAppendEventsPerSec']:>10,} events/s   (no I/O: the log's own cost)",
            f"  in-memory lease + ack      {r['memoryLeaseAckEventsPerSec']:>10,} events/s",
        ]
    )
