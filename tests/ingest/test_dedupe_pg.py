"""PostgresDeduplicator: shared by processes, prune, connection loss and outages, URL forms, ingest on top.

The contract itself (window, first-seen time, repeats, concurrency) is in test_dedupe_contract.py.
Every test gets its own database (``fresh_pg_url``); without a server they skip (fail under CI=true).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from sluice.errors import ConfigError
from sluice.ingest import Deduplicator
from sluice.ingest.dedupe_pg import (
    _DUPLICATES,
    _PRUNE,
    APPLICATION_NAME,
    TABLE,
    DedupeUnavailableError,
    PostgresDeduplicator,
    conninfo_from_url,
)
from sluice.queue.memory import MemoryEventLog
from tests.ingest.conftest import SOURCE, MakeHarness
from tests.pg import PG_HOST, PG_PORT

WINDOW = 100.0


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def sessions(url: str) -> int:
    """Connections the deduplicators hold to the database of ``url``."""
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            (APPLICATION_NAME,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def terminate_sessions(url: str) -> int:
    """Kill the deduplicators' server processes (a failover, an admin, an idle timeout…)."""
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (APPLICATION_NAME,),
        ).fetchall()
    return len(rows)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that completes the TCP handshake (the kernel's backlog) and then never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


class TcpProxy:
    """127.0.0.1:<port> → the PostgreSQL server. :meth:`stop` plays an outage: new connections are
    refused and live ones cut; :meth:`start` brings it back on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(PG_HOST, PG_PORT)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                with contextlib.suppress(OSError, RuntimeError):  # a side closed: the proxy just stops
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    p = TcpProxy()
    await p.start()
    yield p
    await p.stop()


def via(proxy: TcpProxy, url: str) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    return url.replace(f"@{PG_HOST}:{PG_PORT}/", f"@127.0.0.1:{proxy.port}/", 1)


@pytest.fixture
async def dedupe(fresh_pg_url: str) -> AsyncIterator[PostgresDeduplicator]:
    d = PostgresDeduplicator(fresh_pg_url, window_s=WINDOW)
    yield d
    await d.close()


# --- several ingest processes ---------------------------------------------------------------


async def test_two_processes_share_the_window(fresh_pg_url: str) -> None:
    a = await PostgresDeduplicator.connect(fresh_pg_url, window_s=WINDOW)
    b = await PostgresDeduplicator.connect(fresh_pg_url, window_s=WINDOW)
    try:
        assert isinstance(a, Deduplicator)
        await a.remember("s", ["m1", "m2"], 0.0)
        assert await b.duplicates("s", ["m1", "m2", "m3"], 10.0) == {"m1", "m2"}
        await b.remember("s", ["m1", "m3"], 50.0)  # m1 stays first seen at 0 for everyone
        assert await a.duplicates("s", ["m1", "m2", "m3"], 99.0) == {"m1", "m2", "m3"}
        assert await a.duplicates("s", ["m1", "m2", "m3"], 100.0) == {"m3"}
        assert await b.duplicates("other", ["m1"], 10.0) == set()
    finally:
        await a.close()
        await b.close()


async def test_processes_starting_at_once_create_the_table_once(fresh_pg_url: str) -> None:
    many = [PostgresDeduplicator(fresh_pg_url, window_s=WINDOW) for _ in range(8)]
    try:
        await asyncio.gather(*(d.remember("s", [f"m{i}"], 0.0) for i, d in enumerate(many)))
        assert await many[0].duplicates("s", [f"m{i}" for i in range(8)], 1.0) == {f"m{i}" for i in range(8)}
    finally:
        for d in many:
            await d.close()
    with psycopg.connect(_libpq(fresh_pg_url)) as conn:
        indexes = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY 1", (TABLE,)).fetchall()
    assert [r[0] for r in indexes] == [f"{TABLE}_pkey", f"{TABLE}_seen_at"]


async def test_many_concurrent_calls_share_a_bounded_pool(fresh_pg_url: str) -> None:
    a = PostgresDeduplicator(fresh_pg_url, window_s=WINDOW, pool_size=3)
    b = PostgresDeduplicator(fresh_pg_url, window_s=WINDOW, pool_size=2)
    try:

        async def request(n: int) -> None:
            d = a if n % 2 else b
            ids = [f"r{n}-{i}" for i in range(100)] + [f"shared-{i}" for i in range(50)]
            await d.duplicates("s", ids, 1.0)
            await d.remember("s", ids if n % 3 else ids[::-1], 1.0)  # overlapping batches in both orders

        await asyncio.gather(*(request(n) for n in range(200)))
        assert await a.count() == 200 * 100 + 50
        assert sessions(fresh_pg_url) <= 3 + 2
    finally:
        await a.close()
        await b.close()
    assert sessions(fresh_pg_url) == 0


# --- retention ------------------------------------------------------------------------------


async def test_prune_skips_rows_another_process_holds(dedupe: PostgresDeduplicator, fresh_pg_url: str) -> None:
    await dedupe.remember("s", ["a", "b"], 0.0)
    with psycopg.connect(_libpq(fresh_pg_url)) as other:  # a transaction holding a lock on "a"
        other.execute(f"SELECT 1 FROM {TABLE} WHERE message_id = 'a' FOR UPDATE")
        assert await dedupe.prune(200.0) == 1  # "b" only, without waiting for the lock
        other.rollback()
    assert await dedupe.prune(200.0) == 1
    assert await dedupe.count() == 0


async def test_remember_prunes_in_the_background_every_n_calls(fresh_pg_url: str) -> None:
    d = PostgresDeduplicator(fresh_pg_url, window_s=WINDOW, prune_every=3)
    try:
        await d.remember("s", ["a"], 0.0)
        await d.remember("s", ["b"], 1.0)
        await d.wait_prune()  # none started
        assert await d.count() == 2
        await d.remember("s", ["c"], 150.0)  # third call: prunes what expired by t=150
        await d.wait_prune()
        assert await d.count() == 1
        assert await d.duplicates("s", ["a", "b", "c"], 150.0) == {"c"}
    finally:
        await d.close()


# --- connections, outages -------------------------------------------------------------------


async def test_a_lost_connection_is_replaced_on_the_next_call(dedupe: PostgresDeduplicator, fresh_pg_url: str) -> None:
    await asyncio.gather(*(dedupe.remember("s", [f"m{i}"], 0.0) for i in range(4)))  # several idle connections
    assert terminate_sessions(fresh_pg_url) >= 1
    assert await dedupe.duplicates("s", ["m0", "m1", "x"], 1.0) == {"m0", "m1"}  # no error: reconnected
    await dedupe.remember("s", ["x"], 1.0)
    assert await dedupe.duplicates("s", ["x"], 2.0) == {"x"}


async def test_an_outage_raises_then_heals(proxy: TcpProxy, fresh_pg_url: str) -> None:
    d = PostgresDeduplicator(via(proxy, fresh_pg_url), window_s=WINDOW, timeout_s=5.0)
    try:
        await d.remember("s", ["m1"], 0.0)
        await proxy.stop()
        with pytest.raises(DedupeUnavailableError, match="the duplicate check"):
            await d.duplicates("s", ["m1"], 1.0)
        with pytest.raises(DedupeUnavailableError):
            await d.remember("s", ["m2"], 1.0)
        await proxy.start()
        assert await d.duplicates("s", ["m1", "m2"], 2.0) == {"m1"}
    finally:
        await d.close()


async def test_an_unreachable_server_is_a_clear_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{unused_port()}/sluice"
    d = PostgresDeduplicator(url, timeout_s=2.0)
    with pytest.raises(DedupeUnavailableError, match=r"PostgreSQL failed \(the duplicate check\).*refused") as info:
        await d.duplicates("s", ["m1"], 0.0)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    with pytest.raises(DedupeUnavailableError):
        await d.remember("s", ["m1"], 0.0)
    await d.close()
    with pytest.raises(DedupeUnavailableError, match="refused"):
        await PostgresDeduplicator.connect(url, timeout_s=2.0)


async def test_a_server_that_never_answers_times_out() -> None:
    with silent_server() as port:
        d = PostgresDeduplicator(f"postgresql://postgres@127.0.0.1:{port}/sluice", timeout_s=0.2)
        try:
            with pytest.raises(DedupeUnavailableError, match=r"did not answer within 0.2 s \(the duplicate check\)"):
                await d.duplicates("s", ["m1"], 0.0)
        finally:
            await d.close()


async def test_closed(fresh_pg_url: str) -> None:
    d = await PostgresDeduplicator.connect(fresh_pg_url)
    assert sessions(fresh_pg_url) == 1
    await d.close()
    await d.close()  # idempotent
    assert sessions(fresh_pg_url) == 0
    with pytest.raises(RuntimeError, match="closed"):
        await d.duplicates("s", ["m1"], 0.0)
    with pytest.raises(RuntimeError, match="closed"):
        await d.remember("s", ["m1"], 0.0)


# --- construction ---------------------------------------------------------------------------


def test_url_forms() -> None:
    assert conninfo_from_url("postgresql+psycopg://u:p@db:5433/sluice") == "postgresql://u:p@db:5433/sluice"
    assert conninfo_from_url(" postgresql://u@db/sluice?sslmode=require ") == "postgresql://u@db/sluice?sslmode=require"
    assert conninfo_from_url("postgres://u@db/sluice") == "postgresql://u@db/sluice"
    for bad in ("sqlite:///x.db", "mysql://u:secret@db/x", "db:5432", "postgresql://u:secret@[::1/x"):
        with pytest.raises(ConfigError) as info:
            conninfo_from_url(bad)
        assert "secret" not in str(info.value)


def test_rejects_nonsense_settings() -> None:
    url = "postgresql://u@db/sluice"
    settings: list[dict[str, Any]] = [
        {"window_s": 0},
        {"timeout_s": 0},
        {"pool_size": 0},
        {"prune_chunk": 0},
        {"prune_every": -1},
    ]
    for kwargs in settings:
        with pytest.raises(ValueError):
            PostgresDeduplicator(url, **kwargs)
    with pytest.raises(ConfigError):
        PostgresDeduplicator("nats://localhost:4222")


# --- the Tracking API on top ----------------------------------------------------------------


def track(mid: str) -> dict[str, Any]:
    return {"type": "track", "userId": "u", "event": "E", "messageId": mid}


async def test_two_ingest_apps_drop_each_others_duplicates(make_harness: MakeHarness, fresh_pg_url: str) -> None:
    log = MemoryEventLog()
    await log.subscribe(f"probe-{SOURCE}", [SOURCE])
    a = PostgresDeduplicator(fresh_pg_url)
    b = PostgresDeduplicator(fresh_pg_url)
    try:
        one, two = make_harness(log=log, dedupe=a), make_harness(log=log, dedupe=b)
        assert (await one.post("/v1/batch", {"batch": [track("m1"), track("m2")]})).status_code == 200
        assert (await two.post("/v1/batch", {"batch": [track("m2"), track("m3")]})).status_code == 200
        assert [e["messageId"] for e in await one.stored()] == ["m1", "m2", "m3"]
        assert two.stats.snapshot().duplicates == {SOURCE: 1}
    finally:
        await a.close()
        await b.close()


async def test_ingest_during_an_outage_is_503_and_stores_nothing(
    make_harness: MakeHarness, proxy: TcpProxy, fresh_pg_url: str
) -> None:
    d = PostgresDeduplicator(via(proxy, fresh_pg_url))
    try:
        h = make_harness(dedupe=d)
        await h.log.subscribe(f"probe-{SOURCE}", [SOURCE])
        await proxy.stop()
        r = await h.post("/v1/track", track("m1"))
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "DedupeUnavailableError" in r.json()["error"] and "nothing was accepted" in r.json()["error"]
        assert await h.stored() == []
        await proxy.start()  # the client's retry
        assert (await h.post("/v1/track", track("m1"))).status_code == 200
        assert (await h.post("/v1/track", track("m1"))).status_code == 200
        assert [e["messageId"] for e in await h.stored()] == ["m1"]
        assert h.stats.snapshot().duplicates == {SOURCE: 1}
    finally:
        await d.close()


async def test_an_outage_after_the_append_still_acknowledges_the_stored_events(
    make_harness: MakeHarness, proxy: TcpProxy, fresh_pg_url: str
) -> None:
    class CutAfterAppend(MemoryEventLog):
        async def append(self, source_id: str, events: Any) -> int:
            n = await super().append(source_id, events)
            await proxy.stop()  # PostgreSQL goes away between the append and remember
            return n

    d = PostgresDeduplicator(via(proxy, fresh_pg_url))
    try:
        h = make_harness(log=CutAfterAppend(), dedupe=d)
        await h.log.subscribe(f"probe-{SOURCE}", [SOURCE])
        assert (await h.post("/v1/track", track("m1"))).status_code == 200  # stored, so acknowledged
        assert [e["messageId"] for e in await h.stored()] == ["m1"]
        await proxy.start()
        assert (
            await d.duplicates(SOURCE, ["m1"], h.clock.now) == set()
        )  # not remembered: a retry passes (at-least-once)
    finally:
        await d.close()


# --- query plans ----------------------------------------------------------------------------


def _numbered(query: str) -> str:
    """``query`` with psycopg's ``%s`` placeholders as ``$1``, ``$2``…"""
    numbers = iter(range(1, 100))
    return re.sub(r"%s", lambda _: f"${next(numbers)}", query)


async def test_plans_stay_index_probes_as_the_table_grows_unanalyzed(
    dedupe: PostgresDeduplicator, fresh_pg_url: str
) -> None:
    # psycopg prepares a statement after 5 uses; PostgreSQL then keeps one generic plan, made for
    # the table's size of that moment, until statistics change (never, without autovacuum)
    await dedupe.remember("src_0", ["a"], 0.0)  # creates the table
    with psycopg.connect(_libpq(fresh_pg_url), autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE dup (text[], text, float8) AS {_numbered(_DUPLICATES)}")
        conn.execute("EXPLAIN EXECUTE dup (array['a', 'b'], 'src_0', 0)")  # planned on a one-row table
        conn.execute(
            f"INSERT INTO {TABLE} SELECT 'src_' || (i % 2), md5(i::text), i FROM generate_series(1, 50000) AS i"
        )

        plan = "\n".join(str(r[0]) for r in conn.execute("EXPLAIN EXECUTE dup (array['a', 'b'], 'src_0', 0)"))
        assert f"Index Scan using {TABLE}_pkey" in plan and "Seq Scan" not in plan, plan
        assert "message_id = m.id" in plan, plan  # both key columns bound: one probe per id

        prune = _PRUNE.replace("%s", "100", 1).replace("%s", "5000", 1)  # never prepared: planned per call
        plan = "\n".join(str(r[0]) for r in conn.execute(f"EXPLAIN {prune}"))
        assert "Tid Scan" in plan and f"Index Scan using {TABLE}_seen_at" in plan, plan


async def test_a_dropped_table_is_created_again(dedupe: PostgresDeduplicator, fresh_pg_url: str) -> None:
    await asyncio.gather(*(dedupe.remember("s", [f"m{i}"], 0.0) for i in range(4)))  # several idle connections
    with psycopg.connect(_libpq(fresh_pg_url), autocommit=True) as conn:
        conn.execute(f"DROP TABLE {TABLE}")
    with pytest.raises(DedupeUnavailableError, match="UndefinedTable"):
        await dedupe.duplicates("s", ["m1"], 1.0)
    assert await dedupe.duplicates("s", ["m1"], 1.0) == set()
    await dedupe.remember("s", ["m1"], 1.0)
    assert await dedupe.duplicates("s", ["m1"], 2.0) == {"m1"}
