"""The embedded event log: one SQLite file in WAL mode (DESIGN §5, the ``sluice serve`` default).

Schema (lazy per-destination cursors, not fan-out on append)::

    log(seq INTEGER PRIMARY KEY AUTOINCREMENT, source_id, off, appended_at, payload)
        -- seq: global append order and the entry id; off: 1, 2, 3 … per source
    sources(source_id PRIMARY KEY, head)             -- last offset appended per source
    cursors(destination_id, source_id, off)          -- last offset handed out to a destination
    deliveries(destination_id, seq, due_at, leased, attempts, first_attempt_at)
        -- only entries a destination has leased and not yet acked: in flight or retrying
    dead_letters(destination_id, seq, status, reason, failed_at, attempts, first_attempt_at)

Why lazy cursors: an append writes each event once whatever the number of destinations (the
ingest hot path stays one insert per event), and the common case — leased, delivered, acked —
costs one insert and one delete of a small ``deliveries`` row. A destination's new events are
``log`` rows after its cursor (index ``(source_id, off)``); its due retries are an index range
on ``deliveries(destination_id, due_at)``. Neither query looks at another destination's rows,
so a destination with a huge failing backlog never slows another one's leases. Backlog is
``head - cursor`` per source plus the destination's ``deliveries`` rows: no scan of the log.

Durability: ``append`` returns after COMMIT. Concurrent appends are group-committed — the calls
that arrive while a transaction is being written share the next one (``commits`` counts them).
``synchronous=NORMAL`` (the default) in WAL mode survives a ``kill -9`` of the process (the
committed WAL frames are in the OS page cache) but may lose the last transactions on power loss
or a kernel crash; ``synchronous="FULL"`` fsyncs the WAL at every commit and survives those too,
at several times the cost per commit (group commit amortizes it).

All database work runs in one dedicated thread (an executor with one worker), which keeps the
event loop free and serializes writes. Retention deletes in chunks so appends interleave with
a large prune; freed pages are reused, and ``PRAGMA incremental_vacuum`` (the file is created
with ``auto_vacuum=INCREMENTAL``) returns them to the OS when more than a quarter of the file is
free. ``journal_size_limit`` keeps the WAL file from staying large after a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from sluice.queue._schema import SCHEMA, SCHEMA_VERSION
from sluice.queue.base import (
    DEFAULT_ACKED_RETENTION_S,
    DEFAULT_DEAD_LETTER_RETENTION_S,
    DeadLetter,
    DeadLetterRecord,
    DestinationStats,
    Leased,
    PruneResult,
    QueueError,
    QueueStats,
    parse_entry_id,
)
from sluice.sqlite_util import in_transaction

T = TypeVar("T")
PRUNE_CHUNK = 20_000  # offsets per delete transaction


_AppendBatch = list[tuple[str, Sequence[bytes], "asyncio.Future[int]"]]


class SqliteEventLog:
    """The durable embedded :class:`~sluice.queue.base.EventLog` (one file under ``data_dir``)."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        filename: str = "queue.db",
        clock: Callable[[], float] = time.time,
        acked_retention_s: float = DEFAULT_ACKED_RETENTION_S,
        dead_letter_retention_s: float = DEFAULT_DEAD_LETTER_RETENTION_S,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        journal_size_limit: int = 64 * 1024 * 1024,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise QueueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(data_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self.acked_retention_s = acked_retention_s
        self.dead_letter_retention_s = dead_letter_retention_s
        self.commits = 0  # append transactions committed (group commit: ≤ append calls)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-queue")
        self._pending: _AppendBatch = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._last_appended_at = float("-inf")
        self._conn: sqlite3.Connection = self._executor.submit(self._open, synchronous, journal_size_limit).result()

    # --- the database thread ---------------------------------------------------------------

    def _open(self, synchronous: str, journal_size_limit: int) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # effective only on a new file
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute(f"PRAGMA journal_size_limit = {int(journal_size_limit)}")
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            row = conn.execute("SELECT max(appended_at) FROM log").fetchone()
            if row[0] is not None:
                self._last_appended_at = float(row[0])
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open the event log at {self.path}: {exc}") from exc
        return conn

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return in_transaction(self._conn, fn)

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, tx: bool = True) -> T:
        if self._closed:
            raise QueueError("the event log is closed")
        loop = asyncio.get_running_loop()
        call: Callable[[], T] = (lambda: self._tx(fn)) if tx else (lambda: fn(self._conn))
        try:
            return await loop.run_in_executor(self._executor, call)
        except sqlite3.Error as exc:
            raise QueueError(f"event log: {exc}") from exc

    def _write_appends(self, conn: sqlite3.Connection, *, batch: Sequence[tuple[str, Sequence[bytes]]]) -> None:
        now = max(self._clock(), self._last_appended_at)
        per_source: dict[str, list[bytes]] = {}
        for source_id, events in batch:
            per_source.setdefault(source_id, []).extend(events)
        for source_id, payloads in per_source.items():
            row = conn.execute("SELECT head FROM sources WHERE source_id = ?", (source_id,)).fetchone()
            head = 0 if row is None else int(row[0])
            conn.executemany(
                "INSERT INTO log (source_id, off, appended_at, payload) VALUES (?, ?, ?, ?)",
                [(source_id, head + i, now, p) for i, p in enumerate(payloads, 1)],
            )
            conn.execute(
                "INSERT INTO sources (source_id, head) VALUES (?, ?) "
                "ON CONFLICT (source_id) DO UPDATE SET head = excluded.head",
                (source_id, head + len(payloads)),
            )
        self._last_appended_at = now

    # --- appends (group commit) ------------------------------------------------------------

    async def append(self, source_id: str, events: Sequence[bytes]) -> int:
        if self._closed:
            raise QueueError("the event log is closed")
        if not events:
            return 0
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((source_id, list(events), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            rows = [(source_id, events) for source_id, events, _ in batch]
            try:
                await self._run(functools.partial(self._write_appends, batch=rows))
            except Exception as exc:  # every caller of the batch learns it failed
                error = exc if isinstance(exc, QueueError) else QueueError(f"append failed: {exc}")
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.commits += 1
            for _, events, future in batch:
                if not future.done():
                    future.set_result(len(events))

    # --- consumption -----------------------------------------------------------------------

    async def subscribe(self, destination_id: str, source_ids: Collection[str]) -> None:
        wanted = sorted(set(source_ids))

        def run(conn: sqlite3.Connection) -> None:
            have = {
                r[0] for r in conn.execute("SELECT source_id FROM cursors WHERE destination_id = ?", (destination_id,))
            }
            conn.executemany(
                "DELETE FROM cursors WHERE destination_id = ? AND source_id = ?",
                [(destination_id, s) for s in have - set(wanted)],
            )
            conn.executemany(
                "INSERT INTO cursors (destination_id, source_id, off) "
                "VALUES (?, ?, coalesce((SELECT head FROM sources WHERE source_id = ?), 0))",
                [(destination_id, s, s) for s in wanted if s not in have],
            )

        await self._run(run)

    def _lease(self, conn: sqlite3.Connection, destination_id: str, max_events: int, lease_s: float) -> list[Leased]:
        now = self._clock()
        until = now + lease_s
        out: list[Leased] = []
        due = conn.execute(
            "SELECT d.seq, l.source_id, l.payload, d.attempts, d.first_attempt_at, l.appended_at "
            "FROM deliveries d JOIN log l ON l.seq = d.seq "
            "WHERE d.destination_id = ? AND d.due_at <= ? ORDER BY d.due_at, d.seq LIMIT ?",
            (destination_id, now, max_events),
        ).fetchall()
        if due:
            conn.executemany(
                "UPDATE deliveries SET due_at = ?, leased = 1, first_attempt_at = coalesce(first_attempt_at, ?) "
                "WHERE destination_id = ? AND seq = ?",
                [(until, now, destination_id, r[0]) for r in due],
            )
            out = [Leased(str(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in due]
        remaining = max_events - len(out)
        if remaining <= 0:
            return out
        cursors = conn.execute(
            "SELECT source_id, off FROM cursors WHERE destination_id = ?", (destination_id,)
        ).fetchall()
        # new: (seq, source_id, off, payload, appended_at) in global append order
        new: list[tuple[int, str, int, bytes, float]] = []
        if len(cursors) == 1:
            source_id, cursor = cursors[0]
            new = [
                (r[0], source_id, r[1], r[2], r[3])
                for r in conn.execute(
                    "SELECT seq, off, payload, appended_at FROM log WHERE source_id = ? AND off > ? ORDER BY off LIMIT ?",
                    (source_id, cursor, remaining),
                )
            ]
        elif cursors:
            picked: list[tuple[int, str, int]] = []
            for source_id, cursor in cursors:
                picked.extend(
                    (r[0], source_id, r[1])
                    for r in conn.execute(
                        "SELECT seq, off FROM log WHERE source_id = ? AND off > ? ORDER BY off LIMIT ?",
                        (source_id, cursor, remaining),
                    )
                )
            picked.sort()
            for seq, source_id, off in picked[:remaining]:
                row = conn.execute("SELECT payload, appended_at FROM log WHERE seq = ?", (seq,)).fetchone()
                new.append((seq, source_id, off, row[0], row[1]))
        if not new:
            return out
        conn.executemany(
            "INSERT INTO deliveries (destination_id, seq, due_at, leased, attempts, first_attempt_at) "
            "VALUES (?, ?, ?, 1, 0, ?)",
            [(destination_id, n[0], until, now) for n in new],
        )
        last: dict[str, int] = {}
        for _, source_id, off, _, _ in new:
            last[source_id] = max(off, last.get(source_id, 0))
        conn.executemany(
            "UPDATE cursors SET off = ? WHERE destination_id = ? AND source_id = ?",
            [(off, destination_id, source_id) for source_id, off in last.items()],
        )
        out.extend(Leased(str(n[0]), n[1], n[3], 0, None, n[4]) for n in new)
        return out

    async def lease(self, destination_id: str, max_events: int, lease_s: float) -> list[Leased]:
        if max_events <= 0:
            return []
        return await self._run(lambda conn: self._lease(conn, destination_id, max_events, lease_s))

    async def release_leases(self) -> int:
        """Make every leased entry due now; returns how many. Only for the process that owns the
        file (``sluice serve`` holds a lock on the data folder): at its start, leases taken by a
        process that was killed are certainly abandoned, so they need not wait out ``lease_s``."""
        now = self._clock()

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("UPDATE deliveries SET due_at = ?, leased = 0 WHERE leased = 1", (now,)).rowcount

        return await self._run(run)

    async def ack(self, destination_id: str, entry_ids: Collection[str]) -> None:
        keys = [(destination_id, seq) for seq in map(parse_entry_id, entry_ids) if seq is not None]
        if keys:

            def run(conn: sqlite3.Connection) -> None:  # the cursor is freed in the database thread
                conn.executemany("DELETE FROM deliveries WHERE destination_id = ? AND seq = ?", keys)

            await self._run(run)

    async def retry_at(self, destination_id: str, entry_ids_with_times: Mapping[str, float]) -> None:
        rows = [
            (float(at), destination_id, seq)
            for entry_id, at in entry_ids_with_times.items()
            if (seq := parse_entry_id(entry_id)) is not None
        ]
        if rows:

            def run(conn: sqlite3.Connection) -> None:
                conn.executemany(
                    "UPDATE deliveries SET due_at = ?, leased = 0, attempts = attempts + 1 "
                    "WHERE destination_id = ? AND seq = ?",
                    rows,
                )

            await self._run(run)

    async def dead_letter(self, destination_id: str, entries: Sequence[DeadLetter]) -> None:
        rows = [
            (e.status, e.reason, float(e.failed_at), destination_id, seq)
            for e in entries
            if (seq := parse_entry_id(e.entry_id)) is not None
        ]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO dead_letters "
                "(status, reason, failed_at, destination_id, seq, attempts, first_attempt_at) "
                "SELECT ?, ?, ?, destination_id, seq, attempts + 1, first_attempt_at FROM deliveries "
                "WHERE destination_id = ? AND seq = ?",
                rows,
            )
            conn.executemany("DELETE FROM deliveries WHERE destination_id = ? AND seq = ?", [r[3:] for r in rows])

        if rows:
            await self._run(run)

    @staticmethod
    def _dead_filter(destination_id: str, status: str | None, since: float | None) -> tuple[str, list[Any]]:
        where, args = "destination_id = ?", list[Any]([destination_id])
        if status is not None:
            where, args = where + " AND status = ?", [*args, status]
        if since is not None:
            where, args = where + " AND failed_at >= ?", [*args, since]
        return where, args

    async def dead_letters(
        self, destination_id: str, *, status: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        where, args = self._dead_filter(destination_id, status, since)
        sql = (
            "SELECT d.seq, l.source_id, l.payload, d.status, d.reason, d.failed_at, d.attempts, d.first_attempt_at, "
            f"l.appended_at FROM dead_letters d JOIN log l ON l.seq = d.seq WHERE {where.replace('destination_id', 'd.destination_id')} "
            "ORDER BY d.failed_at, d.seq LIMIT ?"
        )
        rows = await self._run(lambda conn: conn.execute(sql, [*args, max(limit, 0)]).fetchall(), tx=False)
        return [DeadLetterRecord(str(r[0]), *r[1:]) for r in rows]

    async def replay(self, destination_id: str, *, status: str | None = None, since: float | None = None) -> int:
        where, args = self._dead_filter(destination_id, status, since)

        def run(conn: sqlite3.Connection) -> int:
            now = self._clock()
            conn.execute(
                "INSERT OR REPLACE INTO deliveries (destination_id, seq, due_at, leased, attempts, first_attempt_at) "
                f"SELECT destination_id, seq, ?, 0, 0, NULL FROM dead_letters WHERE {where}",
                [now, *args],
            )
            return conn.execute(f"DELETE FROM dead_letters WHERE {where}", args).rowcount

        return await self._run(run)

    # --- observation -----------------------------------------------------------------------

    async def backlog(self, destination_id: str | None = None) -> int:
        args: tuple[str, ...] = ()
        if destination_id is None:
            sql, args = (
                "SELECT (SELECT count(*) FROM deliveries) + coalesce((SELECT sum(s.head - c.off) "
                "FROM cursors c JOIN sources s ON s.source_id = c.source_id), 0)",
                (),
            )
        else:
            sql, args = (
                "SELECT (SELECT count(*) FROM deliveries WHERE destination_id = ?) + coalesce((SELECT sum(s.head - c.off) "
                "FROM cursors c JOIN sources s ON s.source_id = c.source_id WHERE c.destination_id = ?), 0)",
                (destination_id, destination_id),
            )
        return int(await self._run(lambda conn: conn.execute(sql, args).fetchone()[0], tx=False))

    async def stats(self) -> QueueStats:
        def run(conn: sqlite3.Connection) -> QueueStats:
            counts: dict[str, list[int]] = {}
            for dest, new in conn.execute(
                "SELECT c.destination_id, coalesce(sum(coalesce(s.head, 0) - c.off), 0) FROM cursors c "
                "LEFT JOIN sources s ON s.source_id = c.source_id GROUP BY c.destination_id"
            ):
                counts.setdefault(dest, [0, 0, 0, 0])[0] = int(new)
            for dest, leased, n in conn.execute(
                "SELECT destination_id, leased, count(*) FROM deliveries GROUP BY destination_id, leased"
            ):
                counts.setdefault(dest, [0, 0, 0, 0])[2 if leased else 1] = int(n)
            for dest, n in conn.execute("SELECT destination_id, count(*) FROM dead_letters GROUP BY destination_id"):
                counts.setdefault(dest, [0, 0, 0, 0])[3] = int(n)
            events = int(conn.execute("SELECT count(*) FROM log").fetchone()[0])
            return QueueStats(events=events, destinations={d: DestinationStats(*c) for d, c in sorted(counts.items())})

        return await self._run(run, tx=False)

    # --- retention -------------------------------------------------------------------------

    @staticmethod
    def _last_off_before(conn: sqlite3.Connection, source_id: str, hi: int, cutoff: float) -> tuple[int, int] | None:
        """(lowest, highest) offsets ≤ ``hi`` of ``source_id`` appended before ``cutoff`` (binary search:
        ``appended_at`` never decreases along ``off``)."""

        def probe(off: int) -> tuple[int, float] | None:
            row = conn.execute(
                "SELECT off, appended_at FROM log WHERE source_id = ? AND off >= ? ORDER BY off LIMIT 1",
                (source_id, off),
            ).fetchone()
            return None if row is None else (int(row[0]), float(row[1]))

        first = probe(0)
        if first is None or first[0] > hi or first[1] >= cutoff:
            return None
        best, a, b = first[0], first[0] + 1, hi
        while a <= b:
            mid = (a + b) // 2
            hit = probe(mid)
            if hit is None or hit[0] > hi or hit[1] >= cutoff:
                b = mid - 1
            else:
                best, a = hit[0], hit[0] + 1
        return first[0], best

    def _prune_plan(self, conn: sqlite3.Connection, now: float) -> tuple[int, list[tuple[str, int, int]]]:
        dead = conn.execute("DELETE FROM dead_letters WHERE failed_at < ?", (now - self.dead_letter_retention_s,))
        plan: list[tuple[str, int, int]] = []
        cutoff = now - self.acked_retention_s
        for source_id, head, taken in conn.execute(
            "SELECT s.source_id, s.head, (SELECT min(c.off) FROM cursors c WHERE c.source_id = s.source_id) FROM sources s"
        ).fetchall():
            span = self._last_off_before(conn, source_id, head if taken is None else int(taken), cutoff)
            if span is not None:
                plan.append((source_id, *span))
        return dead.rowcount, plan

    async def prune(self, now: float | None = None) -> PruneResult:
        at = self._clock() if now is None else now
        dead_removed, plan = await self._run(lambda conn: self._prune_plan(conn, at))
        removed = 0
        for source_id, lo, hi in plan:
            for start in range(lo, hi + 1, PRUNE_CHUNK):
                stop = min(hi, start + PRUNE_CHUNK - 1)
                removed += await self._run(
                    functools.partial(self._delete_range, source_id=source_id, lo=start, hi=stop)
                )
        await self._run(self._vacuum_if_sparse, tx=False)
        return PruneResult(events_removed=removed, dead_letters_removed=dead_removed)

    @staticmethod
    def _delete_range(conn: sqlite3.Connection, *, source_id: str, lo: int, hi: int) -> int:
        return conn.execute(
            "DELETE FROM log WHERE source_id = ? AND off BETWEEN ? AND ? "
            "AND seq NOT IN (SELECT seq FROM deliveries) AND seq NOT IN (SELECT seq FROM dead_letters)",
            (source_id, lo, hi),
        ).rowcount

    @staticmethod
    def _vacuum_if_sparse(conn: sqlite3.Connection) -> None:
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        if free > 256 and free * 4 > pages:
            conn.execute(f"PRAGMA incremental_vacuum({free // 2})").fetchall()  # keep half for reuse

    # --- lifecycle -------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=False)

    def close_sync(self) -> None:
        """Close from synchronous code (no pending appends may be in flight)."""
        if not self._closed:
            self._closed = True
            self._executor.submit(self._conn.close).result()
            self._executor.shutdown(wait=False)
