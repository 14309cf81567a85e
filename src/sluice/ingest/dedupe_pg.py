"""A shared :class:`~sluice.ingest.dedupe.Deduplicator` on PostgreSQL, for several ingest processes.

Every ``sluice serve --role ingest`` process on every machine points at the same database, so a
``messageId`` remembered by one is a duplicate for all of them. Schema (created at first use)::

    sluice_dedupe(source_id, message_id, seen_at double precision, PRIMARY KEY (source_id, message_id))
    sluice_dedupe_seen_at ON sluice_dedupe(seen_at)   -- lets prune delete bounded chunks without a scan

A ``message_id`` is stored with ``\\`` doubled and NUL as ``\\0``: JSON allows ``\\u0000`` in a
messageId, PostgreSQL text does not (without that, such an id would fail its request with a 503 forever).

Same contract as :class:`~sluice.ingest.dedupe_sqlite.SqliteDeduplicator`, one round trip per call:

* :meth:`PostgresDeduplicator.duplicates` is one ``SELECT`` over ``unnest(%s)`` of the ids, one
  primary-key probe each, that ignores entries with ``seen_at <= now - window_s`` (expired, not
  pruned yet). Not ``message_id = ANY(%s)``: without fresh statistics, or with a plan psycopg
  prepared while the table was small, PostgreSQL ran that as a scan of all the source's rows
  (0.1 s per call at 20k rows); the probe form stays ≈ 1 ms at any size.
* :meth:`PostgresDeduplicator.remember` is one ``INSERT … SELECT … unnest(%s) ON CONFLICT DO
  UPDATE … WHERE expired``: it keeps the *first-seen* time of a live entry and restarts an
  expired one at ``now``. The ids go in sorted and without repeats, so two processes remembering
  overlapping batches lock rows in the same order (no deadlock) and one statement never touches
  a row twice.
* :meth:`PostgresDeduplicator.prune` deletes expired rows oldest first in chunks of
  ``prune_chunk``, one autocommitted statement each. The chunk is locked with ``FOR UPDATE SKIP
  LOCKED``: processes pruning at once skip each other's rows instead of waiting, and a concurrent
  ``remember`` of a row being deleted waits, then inserts it afresh. Every ``prune_every`` calls
  to ``remember`` start one prune in a background task (never two at once; a failure is logged),
  so no request waits for it.

Connections: a small pool of at most ``pool_size`` autocommit :class:`psycopg.AsyncConnection`
objects, opened on demand (the event loop is never blocked; statements are prepared by psycopg
after a few uses). A call that fails discards its connection, so the next one reconnects; a
reused idle connection found dead (the server restarted, the backend was terminated) is retried
once on a new connection — every statement here is idempotent. Each call is bounded by
``timeout_s`` (connecting included): past it, or on any database error, the call raises
:class:`DedupeUnavailableError`. Ingest turns that into a 503 for ``duplicates`` (nothing was
stored, the client retries) and logs it for ``remember`` (the events are already stored: a retry
may then pass as new — at-least-once, never a loss). A timed-out statement is left to psycopg's
cancellation in a background task whose connection is then closed; the caller does not wait for it.

The table is created under a transaction-level advisory lock, so processes starting at once do
not collide; once it exists, starting up only reads the catalog (``to_regclass``) and takes no
lock on the table. A table dropped behind a running process fails one call and is created again
on the next.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from sluice.errors import ConfigError, SluiceError
from sluice.ingest.dedupe import DEFAULT_DEDUPE_WINDOW_S

__all__ = [
    "APPLICATION_NAME",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_PRUNE_CHUNK",
    "DEFAULT_PRUNE_EVERY",
    "DEFAULT_TIMEOUT_S",
    "TABLE",
    "DedupeUnavailableError",
    "PostgresDeduplicator",
    "conninfo_from_url",
]

T = TypeVar("T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

log_ = logging.getLogger(__name__)

TABLE: Final = "sluice_dedupe"
APPLICATION_NAME: Final = "sluice-dedupe"  # shows in pg_stat_activity
DEFAULT_POOL_SIZE: Final = 4
DEFAULT_TIMEOUT_S: Final = 5.0
DEFAULT_PRUNE_CHUNK: Final = 5_000  # rows per prune statement
DEFAULT_PRUNE_EVERY: Final = 1_000  # remember calls between opportunistic prunes
_CLOSE_WAIT_S: Final = 2.0  # close() waits this long for abandoned statements to finish cancelling
_SCHEMA_LOCK: Final = zlib.crc32(b"sluice.ingest.dedupe_pg schema")  # advisory lock key

_SCHEMA_EXISTS: Final = f"SELECT to_regclass('{TABLE}') IS NOT NULL AND to_regclass('{TABLE}_seen_at') IS NOT NULL"
_SCHEMA: Final = (
    "SELECT pg_advisory_xact_lock(%s)",
    f'CREATE TABLE IF NOT EXISTS {TABLE} (source_id text COLLATE "C" NOT NULL, message_id text COLLATE "C" NOT NULL, '
    "seen_at double precision NOT NULL, PRIMARY KEY (source_id, message_id))",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_seen_at ON {TABLE} (seen_at)",
)

# One primary-key probe per id, whatever the planner knows: a cached generic plan or a table that
# has never been analyzed cannot turn it into a scan (``source_id = %s AND message_id = ANY(%s)``
# did: a plan made while the table was small kept scanning the whole source as it grew).
_DUPLICATES: Final = (
    "SELECT m.id FROM unnest(%s::text[]) AS m(id) "
    f"WHERE (SELECT d.seen_at FROM {TABLE} AS d WHERE d.source_id = %s AND d.message_id = m.id) > %s"
)

# Keep the first-seen time of a live entry; restart an expired one (the last %s is the window).
_REMEMBER: Final = (
    f"INSERT INTO {TABLE} AS d (source_id, message_id, seen_at) "
    "SELECT %s, m, %s FROM unnest(%s::text[]) AS m "
    "ON CONFLICT (source_id, message_id) DO UPDATE SET seen_at = excluded.seen_at "
    "WHERE d.seen_at <= excluded.seen_at - %s"
)

# The oldest rows first, through the seen_at index; locked, so a concurrent remember waits for the
# delete and then inserts afresh; rows locked elsewhere (another process pruning) are skipped.
# Never prepared: a generic plan made while the table was small deletes by a scan of the table.
_PRUNE: Final = (
    f"DELETE FROM {TABLE} WHERE ctid = ANY(ARRAY("
    f"SELECT ctid FROM {TABLE} WHERE seen_at <= %s ORDER BY seen_at LIMIT %s FOR UPDATE SKIP LOCKED))"
)

_SCHEMES: Final = ("postgresql", "postgresql+psycopg", "postgres")
_EXPECTED: Final = "expected postgresql://user:password@host:port/database (or postgresql+psycopg://…)"


class DedupeUnavailableError(SluiceError):
    """The PostgreSQL deduplicator could not answer (unreachable, timed out, or a database error)."""


def conninfo_from_url(url: str) -> str:
    """The libpq URI for a ``postgresql://…`` or ``postgresql+psycopg://…`` URL (SQLAlchemy's form).

    Raises :class:`ConfigError` for another scheme or a malformed URL, without echoing the URL
    (it may hold a password).
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigError(f"the deduplicator's database URL is not a PostgreSQL URL: {_EXPECTED}")
    conninfo = "postgresql://" + rest
    try:
        conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        raise ConfigError(f"the deduplicator's database URL is malformed: {_EXPECTED}") from None
    return conninfo


def _key(message_id: str) -> str:
    """The stored form of an id: PostgreSQL text cannot hold NUL, so ``\\`` → ``\\\\`` and NUL → ``\\0``
    (one-to-one; JSON allows ``\\u0000`` and the other stores keep it)."""
    return message_id.replace("\\", "\\\\").replace("\x00", "\\0")


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve an abandoned task's outcome so asyncio does not warn about it."""
    if not task.cancelled():
        task.exception()


class PostgresDeduplicator:
    """Duplicate ``messageId`` detection per source within ``window_s``, shared by every process on the database.

    The constructor does no I/O (it only checks the URL and the bounds); the first call connects
    and creates the table. :meth:`connect` does both at once, to fail at startup rather than on
    the first request.
    """

    def __init__(
        self,
        url: str,
        *,
        window_s: float = DEFAULT_DEDUPE_WINDOW_S,
        clock: Callable[[], float] = time.time,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        prune_every: int = DEFAULT_PRUNE_EVERY,
        prune_chunk: int = DEFAULT_PRUNE_CHUNK,
    ) -> None:
        if window_s <= 0 or timeout_s <= 0:
            raise ValueError("window_s and timeout_s must be positive")
        if pool_size <= 0 or prune_chunk <= 0 or prune_every < 0:
            raise ValueError("pool_size and prune_chunk must be positive, prune_every >= 0")
        self._conninfo = conninfo_from_url(url)
        self.window_s = window_s
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self.prune_every = prune_every
        self.prune_chunk = prune_chunk
        self._clock = clock
        self._connect_timeout = max(2, math.ceil(timeout_s))  # libpq's unit is whole seconds, 2 at least
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[Conn] = []
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._prune_task: asyncio.Task[None] | None = None
        self._remembers = 0
        self._closed = False

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> PostgresDeduplicator:
        """Construct (same keywords as the constructor), connect and create the table.

        Raises :class:`DedupeUnavailableError` when the server cannot be reached within ``timeout_s``.
        """
        dedupe = cls(url, **kwargs)
        try:
            await dedupe._run("connecting", lambda conn: asyncio.sleep(0))
        except BaseException:
            await dedupe.close()
            raise
        return dedupe

    # --- the Deduplicator protocol -----------------------------------------------------------

    async def duplicates(self, source_id: str, message_ids: Sequence[str], now: float) -> set[str]:
        if not message_ids:
            return set()
        by_key = {_key(mid): mid for mid in message_ids}
        params = (list(by_key), source_id, now - self.window_s)

        async def run(conn: Conn) -> set[str]:
            cur = await conn.execute(_DUPLICATES, params)
            return {by_key[row[0]] for row in await cur.fetchall()}

        return await self._run("the duplicate check", run)

    async def remember(self, source_id: str, message_ids: Sequence[str], now: float) -> None:
        if not message_ids:
            return
        params = (source_id, now, sorted({_key(mid) for mid in message_ids}), self.window_s)

        async def run(conn: Conn) -> None:
            await conn.execute(_REMEMBER, params)

        await self._run("remembering ids", run)
        self._remembers += 1
        if self.prune_every and self._remembers % self.prune_every == 0:
            self._start_prune(now)

    # --- retention ---------------------------------------------------------------------------

    async def prune(self, now: float | None = None) -> int:
        """Delete the entries expired at ``now`` (default: the clock); returns how many.

        One statement per ``prune_chunk`` rows, so other calls interleave with a large prune.
        Rows another process is deleting at the same moment are skipped, not waited for.
        """
        cutoff = (self._clock() if now is None else now) - self.window_s
        params = (cutoff, self.prune_chunk)

        async def run(conn: Conn) -> int:
            cur = await conn.execute(_PRUNE, params, prepare=False)  # planned for the table's size of now
            return cur.rowcount

        removed = 0
        while True:
            n = await self._run("pruning", run)
            removed += n
            if n < self.prune_chunk:
                return removed

    def _start_prune(self, now: float) -> None:
        if self._prune_task is None or self._prune_task.done():
            self._prune_task = asyncio.create_task(self._prune_quietly(now), name="sluice-dedupe-prune")

    async def _prune_quietly(self, now: float) -> None:
        try:
            removed = await self.prune(now)
        except Exception:
            log_.warning("dedupe: pruning expired messageIds failed; the next prune retries", exc_info=True)
        else:
            log_.debug("dedupe: pruned %d expired messageIds", removed)

    async def wait_prune(self) -> None:
        """Wait for a background prune started by :meth:`remember`, if one runs (tests, shutdown)."""
        if self._prune_task is not None:
            await asyncio.shield(self._prune_task)

    async def count(self) -> int:
        """Rows stored for every source, expired or not (for tests and stats)."""

        async def run(conn: Conn) -> int:
            cur = await conn.execute(f"SELECT count(*) FROM {TABLE}")
            row = await cur.fetchone()
            return int(row[0]) if row is not None else 0

        return await self._run("counting", run)

    # --- connections -------------------------------------------------------------------------

    async def _run(self, what: str, op: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``op`` on a pooled connection within ``timeout_s``; database errors become DedupeUnavailableError."""
        if self._closed:
            raise RuntimeError("the deduplicator is closed")
        async with self._slots:
            task = asyncio.create_task(self._attempt(op))
            try:
                done, _ = await asyncio.wait((task,), timeout=self.timeout_s)
            except BaseException:  # the caller was cancelled: let the statement wind down without us
                self._abandon(task)
                raise
            if not done:
                self._abandon(task)
                raise DedupeUnavailableError(f"PostgreSQL did not answer within {self.timeout_s:g} s ({what})")
            try:
                return task.result()
            except psycopg.Error as exc:
                raise DedupeUnavailableError(f"PostgreSQL failed ({what}): {type(exc).__name__}: {exc}") from exc

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        task.add_done_callback(_consume)
        if not task.done():
            task.cancel()  # psycopg cancels the statement on the server, then the connection is closed
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)

    async def _attempt(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        retried = False
        while True:
            conn, reused = await self._checkout()
            try:
                result = await op(conn)
            except psycopg.OperationalError:
                lost = conn.broken or conn.closed
                await conn.close()
                if reused and lost and not retried:  # a stale idle connection: the others likely are too
                    retried = True
                    await self._drop_idle()
                    continue
                raise
            except BaseException as exc:  # the connection's state is unknown: never reuse it
                await conn.close()
                if isinstance(exc, psycopg.errors.UndefinedTable):  # dropped behind our back: create it again
                    self._schema_ready = False
                raise
            await self._checkin(conn)
            return result

    async def _checkout(self) -> tuple[Conn, bool]:
        conn: Conn | None = None
        while self._idle and conn is None:
            conn = self._idle.pop()
            if conn.closed:
                conn = None
        reused = conn is not None
        if conn is None:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                application_name=APPLICATION_NAME,
            )
        if not self._schema_ready:
            try:
                async with self._schema_lock:
                    if not self._schema_ready:
                        await self._ensure_schema(conn)
                        self._schema_ready = True
            except BaseException:
                await conn.close()
                raise
        return conn, reused

    async def _checkin(self, conn: Conn) -> None:
        if self._closed or conn.closed:
            await conn.close()
        else:
            self._idle.append(conn)

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    @staticmethod
    async def _ensure_schema(conn: Conn) -> None:
        cur = await conn.execute(_SCHEMA_EXISTS)
        row = await cur.fetchone()
        if row is not None and row[0]:
            return
        async with conn.transaction():
            await conn.execute(_SCHEMA[0], (_SCHEMA_LOCK,))
            for statement in _SCHEMA[1:]:
                await conn.execute(statement)

    async def close(self) -> None:
        """Close the connections; calls afterwards raise RuntimeError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._prune_task is not None and not self._prune_task.done():
            self._prune_task.cancel()
            await asyncio.wait((self._prune_task,), timeout=_CLOSE_WAIT_S)
        if self._abandoned:  # statements being cancelled: cut that short and let them close their connections
            pending = set(self._abandoned)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=_CLOSE_WAIT_S)
        await self._drop_idle()
