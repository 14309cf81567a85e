"""A durable :class:`~sluice.ingest.dedupe.Deduplicator`: one SQLite table, so the window survives a restart.

Schema::

    dedupe(source_id, message_id, seen_at, PRIMARY KEY (source_id, message_id)) WITHOUT ROWID
    dedupe_seen_at ON dedupe(seen_at)          -- lets prune delete bounded chunks without a scan

Same contract as :class:`~sluice.ingest.dedupe.MemoryDeduplicator`:

* :meth:`SqliteDeduplicator.duplicates` returns the ids remembered for the source with
  ``seen_at > now - window_s`` (one query per chunk of at most 500 ids, all in one trip to the
  database thread). Expired rows that prune has not removed yet are ignored.
* :meth:`SqliteDeduplicator.remember` writes all ids in one transaction (one ``executemany``
  upsert). It keeps the *first-seen* time of a live entry — the window counts from it, as in the
  memory implementation — and restarts an expired one at ``now``. (A plain ``INSERT OR REPLACE``
  would slide the window forward on every re-remember; that is not the memory contract.)
* A repeat inside one batch is the caller's business (ingest counts it); passing one is harmless.

Expired rows are deleted by :meth:`SqliteDeduplicator.prune` in chunks of ``prune_chunk`` rows,
each its own transaction, so other calls interleave with a large prune. It runs opportunistically
after every ``prune_every`` calls to ``remember`` (``prune_every=0`` turns that off) and can be
called by the owner (e.g. from a periodic task).

All database work runs in one dedicated thread (an executor with one worker), like
:class:`sluice.queue.sqlite.SqliteEventLog`: the event loop stays free and writes are serialized.
WAL with ``synchronous=NORMAL``: committed entries survive a ``kill -9``; the last transactions
may be lost on power loss, which only lets a duplicate through (at-least-once, never a loss).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from sluice.ingest.dedupe import DEFAULT_DEDUPE_WINDOW_S
from sluice.sqlite_util import in_transaction

__all__ = ["DEDUPE_QUERY_CHUNK", "DEFAULT_PRUNE_CHUNK", "DEFAULT_PRUNE_EVERY", "SqliteDeduplicator"]

T = TypeVar("T")

DEDUPE_QUERY_CHUNK: Final = 500  # ids per ``IN (…)`` query
DEFAULT_PRUNE_CHUNK: Final = 5_000  # rows per prune transaction
DEFAULT_PRUNE_EVERY: Final = 1_000  # remember calls between opportunistic prunes

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS dedupe ("
    "source_id TEXT NOT NULL, message_id TEXT NOT NULL, seen_at REAL NOT NULL, "
    "PRIMARY KEY (source_id, message_id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS dedupe_seen_at ON dedupe (seen_at)",
)

# Keep the first-seen time of a live entry; restart an expired one (the ``?`` is the window).
_REMEMBER: Final = (
    "INSERT INTO dedupe (source_id, message_id, seen_at) VALUES (?, ?, ?) "
    "ON CONFLICT (source_id, message_id) DO UPDATE SET seen_at = excluded.seen_at "
    "WHERE dedupe.seen_at <= excluded.seen_at - ?"
)

_PRUNE: Final = (
    "DELETE FROM dedupe WHERE (source_id, message_id) IN "
    "(SELECT source_id, message_id FROM dedupe WHERE seen_at <= ? LIMIT ?)"
)


class SqliteDeduplicator:
    """Durable duplicate ``messageId`` detection per source within ``window_s`` (default 24 h)."""

    def __init__(
        self,
        path: Path,
        *,
        window_s: float = DEFAULT_DEDUPE_WINDOW_S,
        clock: Callable[[], float] = time.time,
        prune_every: int = DEFAULT_PRUNE_EVERY,
        prune_chunk: int = DEFAULT_PRUNE_CHUNK,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        if prune_every < 0 or prune_chunk <= 0:
            raise ValueError("prune_every must be >= 0 and prune_chunk positive")
        self.path = Path(path)
        self.window_s = window_s
        self.prune_every = prune_every
        self.prune_chunk = prune_chunk
        self._clock = clock
        self._remembers = 0
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-dedupe")
        try:
            self._conn: sqlite3.Connection = self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    # --- the database thread ---------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            conn.execute("PRAGMA synchronous = NORMAL")
            for statement in _SCHEMA:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return in_transaction(self._conn, fn)

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, tx: bool = True) -> T:
        if self._closed:
            raise RuntimeError("the deduplicator is closed")
        call: Callable[[], T] = (lambda: self._tx(fn)) if tx else (lambda: fn(self._conn))
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # --- the Deduplicator protocol -----------------------------------------------------------

    async def duplicates(self, source_id: str, message_ids: Sequence[str], now: float) -> set[str]:
        ids = list(dict.fromkeys(message_ids))
        if not ids:
            return set()
        cutoff = now - self.window_s

        def run(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(ids), DEDUPE_QUERY_CHUNK):
                chunk = ids[start : start + DEDUPE_QUERY_CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT message_id FROM dedupe WHERE source_id = ? AND seen_at > ? AND message_id IN ({marks})"
                found.update(row[0] for row in conn.execute(sql, (source_id, cutoff, *chunk)))
            return found

        return await self._run(run, tx=False)

    async def remember(self, source_id: str, message_ids: Sequence[str], now: float) -> None:
        if not message_ids:
            return
        rows = [(source_id, mid, now, self.window_s) for mid in dict.fromkeys(message_ids)]

        def run(conn: sqlite3.Connection) -> None:  # the cursor stays in the database thread
            conn.executemany(_REMEMBER, rows)

        await self._run(run)
        self._remembers += 1
        if self.prune_every and self._remembers % self.prune_every == 0:
            await self.prune(now)

    # --- retention and lifecycle -------------------------------------------------------------

    async def prune(self, now: float | None = None) -> int:
        """Delete the entries expired at ``now`` (default: the clock); returns how many.

        Deletes ``prune_chunk`` rows per transaction so other calls interleave with a large prune.
        """
        cutoff = (self._clock() if now is None else now) - self.window_s
        chunk = self.prune_chunk
        removed = 0
        while True:
            n = await self._run(lambda conn: conn.execute(_PRUNE, (cutoff, chunk)).rowcount)
            removed += n
            if n < chunk:
                return removed

    async def count(self) -> int:
        """Rows stored, expired or not (for tests and stats)."""
        return int(await self._run(lambda conn: conn.execute("SELECT count(*) FROM dedupe").fetchone()[0], tx=False))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=False)

    def close_sync(self) -> None:
        """Close from synchronous code (no call may be in flight)."""
        if not self._closed:
            self._closed = True
            self._executor.submit(self._conn.close).result()
            self._executor.shutdown(wait=False)
