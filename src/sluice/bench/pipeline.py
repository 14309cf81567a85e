"""End-to-end pipeline benchmark: HTTP ``/v1/batch`` → event log → insert function → webhook.

What runs (all on this machine, in separate processes):

* **the server** — a real ``sluice serve --port 0`` subprocess on a fresh temporary data folder
  (the durable embedded default: SQLite catalog, event log and deduplicator), with every
  ``SLUICE_*`` variable of the caller's environment removed and ``SLUICE_ADMIN_TOKEN`` set to a
  random token. Its output goes to a file; the port is read from the ``sluice API: …/api`` line.
* **the sink** — a minimal asyncio HTTP/1.1 keep-alive server in its own process
  (:func:`sink_main`) answering 200 to every POST. It decodes each body (a JSON array, or one
  object), counts events per tag (the ``messageId`` prefix before ``-``; repeats of a messageId
  are counted apart, as deliveries, not events), checks that the function ran
  (``properties.bench``) and records ``now − receivedAt`` per event. ``receivedAt`` has
  millisecond resolution (truncated), so latencies read up to 1 ms high. The bench reads the
  figures over ``GET /stats`` and ``GET /latencies?tag=…``.
* **the sender** — in the bench process: a few concurrent keep-alive connections (raw HTTP/1.1
  on asyncio streams; cheaper than an HTTP client library) posting pre-encoded ~1 KB track events,
  100 per ``/v1/batch`` request, each with a unique ``messageId`` spliced into a template.
  429 and 503 answers are retried after their ``Retry-After``.

Set-up through the control-plane API with the owner token: the trivial insert function
(:data:`FUNCTION_CODE`), a ``webhook`` destination (``batchSize`` 100) created *disabled* on the
demo source, its enabled insert-function instance, then the destination enabled — so the
pipeline never sees the destination without its function. The pipeline reloads the catalog
every 2 s: a probe event is sent (again every 2 s) until one arrives at the sink transformed.

Phases (each tag counted apart by the sink):

1. **throughput** — ``events`` events (default 100,000) sent as fast as the server accepts them.
   ``eventsPerSec`` = events ÷ (the sink's arrival time of the last new event − the first
   send). ``ingestEventsPerSec`` is the same count over the time until the last 200 came back.
   The burst's latencies (``phase1LatencyP50Ms``/``P99Ms``) include the backlog it builds.
2. **latency** — requests paced evenly at half the phase-1 rate for ``seconds`` (default 5);
   ``latencyP50Ms``/``latencyP99Ms`` are receivedAt → sink over those events.

Ceilings, measured in the same run before the server starts (so nothing else competes):

* ``logAppendCeilingEventsPerSec`` — ``SqliteEventLog.append`` of the same events, 100 per call,
  one call at a time, on the same disk (the server may beat it: concurrent requests share
  commits).
* ``sinkCeilingEventsPerSec`` — the same events posted straight to the sink in 100-event arrays
  over the same number of connections (bounded by the sender as much as by the sink).
* ``runtimeIsolatedEventsPerSec`` — the same events through a worker pool sized and limited like
  the pipeline's (:class:`~sluice.pipeline.runner.RunnerOptions`) running the same function,
  with :func:`sluice.bench.runtime.isolated` (a few seconds at most).

``cpuSecondsPhase1`` splits the CPU time used during phase 1 between the server process, its
delivery process (:mod:`sluice.worker`), the function workers, the sink and the bench process
(the sender).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from sluice.bench import runtime

TARGETS: dict[str, float] = {"eventsPerSec": 20_000, "latencyP99Ms": 1000.0}
BATCH = 100
FUNCTION_CODE = "def on_track(event, settings):\n    event['properties']['bench'] = True\n    return event\n"
_MID = b"__MID__"
_RAT = b"__RAT__"
_PROBE_EVERY_S = 2.0
_SETUP_TIMEOUT_S = 60.0


# --- events --------------------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class EventTemplate:
    """A ~1 KB encoded track event split around its ``messageId`` and ``receivedAt`` values."""

    head: bytes
    middle: bytes
    tail: bytes

    @classmethod
    def build(cls, size: int = 1024) -> EventTemplate:
        # messageId first: the template is split at it, then at receivedAt
        event = {"messageId": _MID.decode(), **runtime.sample_track(), "receivedAt": _RAT.decode()}
        del event["timestamp"]  # ingest computes it
        filled = len(orjson.dumps(event)) - len(_MID) - len(_RAT) + len(message_id("x", 0)) + len(now_iso())
        event["properties"]["note"] = "x" * max(0, size - filled - len(',"note":""'))
        encoded = orjson.dumps(event)
        head, rest = encoded.split(_MID)
        middle, tail = rest.split(_RAT)
        return cls(head, middle, tail)

    def events(self, tag: str, start: int, count: int, received_at: str | None = None) -> list[bytes]:
        head = self.head
        rest = self.middle + (received_at or now_iso()).encode() + self.tail
        return [head + message_id(tag, i).encode() + rest for i in range(start, start + count)]

    def batch_body(self, tag: str, start: int, count: int) -> bytes:
        return b'{"batch":[' + b",".join(self.events(tag, start, count)) + b"]}"

    def array_body(self, tag: str, start: int, count: int) -> bytes:
        return b"[" + b",".join(self.events(tag, start, count)) + b"]"


def message_id(tag: str, i: int) -> str:
    return f"{tag}-{i:010d}"


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted ``samples`` (0 < q ≤ 1)."""
    if not samples:
        return 0.0
    return samples[min(len(samples) - 1, max(0, math.ceil(q * len(samples)) - 1))]


# --- a minimal HTTP/1.1 client -------------------------------------------------------------------


class HttpError(RuntimeError):
    """The server under benchmark answered something the sender cannot use."""


class Conn:
    """One keep-alive HTTP/1.1 connection; reconnects once if a reused connection was closed."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        self._extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        for attempt in range(2):
            fresh = self._writer is None
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(head + body)
                return await self._response(self._reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if fresh or attempt:
                    raise
        raise AssertionError("unreachable")

    async def _response(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, body

    async def get_json(self, path: str) -> Any:
        status, _, body = await self.request("GET", path)
        if status != 200:
            raise HttpError(f"GET {path}: HTTP {status}: {body[:300]!r}")
        return orjson.loads(body)


def retry_after_s(headers: dict[str, str], default: float = 1.0) -> float:
    try:
        return max(0.05, float(headers.get("retry-after", default)))
    except ValueError:
        return default


# --- the sink --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    ids: set[str] = field(default_factory=set)
    deliveries: int = 0
    untransformed: int = 0
    first: float = 0.0
    last: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "events": len(self.ids),
            "deliveries": self.deliveries,
            "untransformed": self.untransformed,
            "first": self.first,
            "last": self.last,
        }


class Sink:
    """Counts and times the events posted to it (see the module docstring)."""

    def __init__(self) -> None:
        self.tallies: dict[str, _Tally] = {}
        self._times: dict[str, float] = {}

    def _epoch(self, received_at: str) -> float | None:
        found = self._times.get(received_at)
        if found is None:
            try:
                found = datetime.fromisoformat(received_at).timestamp()
            except ValueError:
                return None
            if len(self._times) > 10_000:
                self._times.clear()
            self._times[received_at] = found
        return found

    def record(self, body: bytes) -> None:
        now = time.time()
        decoded = orjson.loads(body)
        for event in decoded if isinstance(decoded, list) else [decoded]:
            if not isinstance(event, dict):
                continue
            mid = str(event.get("messageId", ""))
            tag = mid.partition("-")[0]
            tally = self.tallies.get(tag)
            if tally is None:
                tally = self.tallies[tag] = _Tally(first=now)
            tally.deliveries += 1
            if mid in tally.ids:
                continue
            tally.ids.add(mid)
            tally.last = now
            props = event.get("properties")
            if not (isinstance(props, dict) and props.get("bench") is True):
                tally.untransformed += 1
            received = event.get("receivedAt")
            epoch = self._epoch(received) if isinstance(received, str) else None
            if epoch is not None:
                tally.latencies_ms.append((now - epoch) * 1000.0)

    def answer(self, method: str, target: str, body: bytes) -> bytes:
        if method == "POST":
            self.record(body)
            return b"{}"
        url = urlsplit(target)
        if url.path == "/stats":
            return orjson.dumps({tag: t.public() for tag, t in self.tallies.items()})
        if url.path == "/latencies":
            tag = parse_qs(url.query).get("tag", [""])[0]
            tally = self.tallies.get(tag)
            return orjson.dumps(tally.latencies_ms if tally else [])
        return b"{}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                lines = raw.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                try:
                    out, status = self.answer(method, target, body), b"200 OK"
                except Exception as exc:  # a body that is not JSON: tell the sender
                    out, status = orjson.dumps({"error": repr(exc)}), b"400 Bad Request"
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(out)).encode()
                    + b"\r\n\r\n"
                    + out
                )
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            return  # the client closed the connection or sent garbage: this connection is done
        finally:
            writer.close()


def sink_main() -> None:
    """The sink process: prints ``port N`` once listening, serves until its stdin closes."""

    async def main() -> None:
        sink = Sink()
        server = await asyncio.start_server(sink.handle, "127.0.0.1", 0, backlog=256)
        port = server.sockets[0].getsockname()[1]
        sys.stdout.write(f"port {port}\n")
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # EOF: the bench is done (or died)
        server.close()

    asyncio.run(main())


# --- processes -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            out.append(kid)
            out.extend(descendants(kid))
    return out


def is_delivery_process(pid: int) -> bool:
    """Whether ``pid`` runs the delivery process (``python -m sluice.worker``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"sluice.worker" in f.read().split(b"\0")
    except OSError:
        return False


@dataclass(slots=True)
class CpuSnapshot:
    server: float
    children: dict[int, float]  # the delivery process and the function workers
    delivery_pids: set[int]
    sink: float
    sender: float

    @classmethod
    def take(cls, server_pid: int, sink_pid: int) -> CpuSnapshot:
        children = {pid: cpu_seconds(pid) for pid in descendants(server_pid)}
        return cls(
            cpu_seconds(server_pid),
            children,
            {pid for pid in children if is_delivery_process(pid)},
            cpu_seconds(sink_pid),
            time.process_time(),
        )

    def since(self, before: CpuSnapshot, wall_s: float) -> dict[str, float]:
        used = {pid: v - before.children.get(pid, 0.0) for pid, v in self.children.items()}
        delivery = sum(v for pid, v in used.items() if pid in self.delivery_pids)
        workers = sum(v for pid, v in used.items() if pid not in self.delivery_pids)
        return {
            "server": round(self.server - before.server, 2),
            "delivery": round(delivery, 2),
            "workers": round(workers, 2),
            "sink": round(self.sink - before.sink, 2),
            "sender": round(self.sender - before.sender, 2),
            "wall": round(wall_s, 2),
        }


@contextlib.contextmanager
def running_sink() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from sluice.bench.pipeline import sink_main; sink_main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"the benchmark sink did not start (said {line!r})")
        yield proc, int(line.split()[1])
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(slots=True)
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    log_path: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.asynccontextmanager
async def running_server(root: Path) -> AsyncIterator[ServerProcess]:
    token = secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(PYTHONUNBUFFERED="1", SLUICE_ADMIN_TOKEN=token)
    log_path = root / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sluice", "serve", "--port", "0", "--data-dir", str(root / "data")],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = ServerProcess(proc, 0, token, log_path)
    try:
        deadline = time.monotonic() + _SETUP_TIMEOUT_S
        while not server.port:
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith("sluice API: http://"):
                    server.port = int(line.split()[2].rsplit(":", 1)[1].split("/", 1)[0])
            if server.port:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sluice serve did not start:\n{server.tail()}")
            await asyncio.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)


# --- control plane -----------------------------------------------------------------------------------


async def api(conn: Conn, method: str, path: str, payload: Any = None) -> dict[str, Any]:
    status, _, body = await conn.request(method, f"/api{path}", orjson.dumps(payload) if payload is not None else b"")
    if not 200 <= status < 300:
        raise HttpError(f"{method} /api{path}: HTTP {status}: {body[:500].decode(errors='replace')}")
    data = orjson.loads(body)["data"]
    assert isinstance(data, dict)
    return data


async def configure(server: ServerProcess, sink_port: int) -> str:
    """Function, destination and instance as in the module docstring; returns the write key."""
    conn = Conn("127.0.0.1", server.port, {"Authorization": f"Bearer {server.token}"})
    try:
        source = (await api(conn, "GET", "/sources"))["sources"][0]
        function = (await api(conn, "POST", "/functions", {"displayName": "bench", "code": FUNCTION_CODE}))["function"]
        config = {"url": f"http://127.0.0.1:{sink_port}/events", "batchSize": BATCH}
        destination = (
            await api(
                conn,
                "POST",
                "/destinations",
                {
                    "name": "bench sink",
                    "type": "webhook",
                    "config": config,
                    "sourceIds": [source["id"]],
                    "enabled": False,
                },
            )
        )["destination"]
        await api(
            conn,
            "POST",
            "/insert-function-instances",
            {"functionId": function["id"], "integrationId": destination["id"], "enabled": True},
        )
        await api(conn, "PATCH", f"/destinations/{destination['id']}", {"enabled": True})
        return str(source["writeKeys"][0])
    finally:
        await conn.close()


# --- sending -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SendStats:
    requests: int = 0
    throttled: int = 0
    last_ok: float = 0.0


async def post_batch(conn: Conn, path: str, body: bytes, stats: SendStats) -> None:
    while True:
        status, headers, answer = await conn.request("POST", path, body)
        if 200 <= status < 300:
            stats.requests += 1
            stats.last_ok = time.time()
            return
        if status in (429, 503):
            stats.throttled += 1
            await asyncio.sleep(retry_after_s(headers))
            continue
        raise HttpError(f"POST {path}: HTTP {status}: {answer[:300].decode(errors='replace')}")


def connections(port: int, n: int, write_key: str | None = None) -> list[Conn]:
    headers = {}
    if write_key is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    return [Conn("127.0.0.1", port, headers) for _ in range(n)]


async def blast(
    conns: list[Conn], path: str, template: EventTemplate, tag: str, count: int, *, array: bool = False
) -> SendStats:
    """Send ``count`` events in ``BATCH``-event requests over ``conns`` as fast as accepted."""
    starts = iter(range(0, count, BATCH))
    stats = SendStats()

    async def lane(conn: Conn) -> None:
        for start in starts:
            n = min(BATCH, count - start)
            body = template.array_body(tag, start, n) if array else template.batch_body(tag, start, n)
            await post_batch(conn, path, body, stats)

    await asyncio.gather(*(lane(c) for c in conns))
    return stats


async def paced(
    conns: list[Conn], template: EventTemplate, tag: str, rate: float, seconds: float
) -> tuple[int, float, SendStats]:
    """``BATCH``-event requests evenly spaced to ``rate`` events/s for ``seconds``; returns
    (events sent, the achieved send rate, stats)."""
    interval = BATCH / rate
    requests = max(1, round(seconds / interval))
    free: asyncio.Queue[Conn] = asyncio.Queue()
    for conn in conns:
        free.put_nowait(conn)
    stats = SendStats()
    tasks: list[asyncio.Task[None]] = []

    async def one(conn: Conn, k: int) -> None:
        try:
            await post_batch(conn, "/v1/batch", template.batch_body(tag, k * BATCH, BATCH), stats)
        finally:
            free.put_nowait(conn)

    started = time.monotonic()
    for k in range(requests):
        delay = started + k * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await free.get()
        tasks.append(asyncio.create_task(one(conn, k)))
    await asyncio.gather(*tasks)
    elapsed = max(time.monotonic() - started, 1e-9)
    return requests * BATCH, requests * BATCH / max(elapsed, interval * requests), stats


async def wait_for(sink: Conn, tag: str, count: int, timeout_s: float) -> dict[str, Any]:
    """The sink's tally of ``tag`` once it holds ``count`` events (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        tally: dict[str, Any] = (await sink.get_json("/stats")).get(tag, {"events": 0})
        if tally["events"] >= count or time.monotonic() > deadline:
            return tally
        await asyncio.sleep(0.05)


async def probe_until_delivered(
    sender: Conn, sink: Conn, template: EventTemplate, tail: Callable[[], str], tag: str = "probe"
) -> dict[str, Any]:
    """Send a probe event (again every 2 s) until one reaches the sink, within a minute; fails if
    it arrived without passing through the insert function. Returns the sink's tally of ``tag``."""
    ready_by = time.monotonic() + _SETUP_TIMEOUT_S
    probes = 0
    while True:
        await post_batch(sender, "/v1/batch", template.batch_body(tag, probes, 1), SendStats())
        probes += 1
        probe = await wait_for(sink, tag, 1, _PROBE_EVERY_S)
        if probe["events"]:
            break
        if time.monotonic() > ready_by:
            raise RuntimeError(f"no event reached the sink within a minute:\n{tail()}")
    if probe["untransformed"]:
        raise RuntimeError("the probe reached the sink without passing through the insert function")
    return probe


async def latencies(sink: Conn, tag: str) -> list[float]:
    return sorted(await sink.get_json(f"/latencies?tag={tag}"))


# --- ceilings ------------------------------------------------------------------------------------------


async def log_append_ceiling(root: Path, events: list[bytes], count: int) -> float:
    from sluice.queue.sqlite import SqliteEventLog

    log = SqliteEventLog(root, filename="ceiling-queue.db")
    try:
        started = time.perf_counter()
        for done in range(0, count, BATCH):
            await log.append("bench", events[: min(BATCH, count - done)])
        return count / max(time.perf_counter() - started, 1e-9)
    finally:
        await log.close()


async def runtime_ceiling(events: list[bytes], count: int) -> tuple[float, int]:
    from sluice.bench.runtime import isolated
    from sluice.functions.pool import FunctionSource, WorkerPool
    from sluice.pipeline.runner import RunnerOptions

    options = RunnerOptions()
    blobs = (events * (count // len(events) + 1))[:count]
    async with WorkerPool(FunctionSource(FUNCTION_CODE), limits=options.limits, size=options.pool_size) as pool:
        await pool.run_encoded_events(blobs[: BATCH * 4])  # start the workers
        return await isolated(pool, blobs), pool.size


# --- the benchmark -------------------------------------------------------------------------------------


async def run_benchmark(count: int = 100_000, seconds: float = 5.0, lanes: int = 8) -> dict[str, Any]:
    template = EventTemplate.build()
    sample = template.events("s", 0, BATCH)
    ceiling_count = min(max(count, 2_000), 50_000)
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sluice-bench-pipeline-") as tmp:
        root = Path(tmp)
        append_ceiling = await log_append_ceiling(root, sample, ceiling_count)
        runtime_rate, workers = await runtime_ceiling(sample, ceiling_count)
        with running_sink() as (sink_proc, sink_port):
            sink = Conn("127.0.0.1", sink_port)
            started = time.time()
            await blast(connections(sink_port, lanes), "/events", template, "c", ceiling_count, array=True)
            ceiling_tally = await wait_for(sink, "c", ceiling_count, 30)
            sink_ceiling = ceiling_tally["events"] / max(ceiling_tally["last"] - started, 1e-9)

            async with running_server(root) as server:
                write_key = await configure(server, sink_port)
                senders = connections(server.port, lanes, write_key)
                await probe_until_delivered(senders[0], sink, template, server.tail)

                # phase 1: throughput
                before = CpuSnapshot.take(server.proc.pid, sink_proc.pid)
                t0 = time.time()
                sent = await blast(senders, "/v1/batch", template, "p1", count)
                tally = await wait_for(sink, "p1", count, max(120.0, count / 1000))
                after = CpuSnapshot.take(server.proc.pid, sink_proc.pid)
                delivered = int(tally["events"])
                if not delivered:
                    raise RuntimeError(f"phase 1: no event reached the sink:\n{server.tail()}")
                elapsed = max(tally["last"] - t0, 1e-9)
                rate = delivered / elapsed
                ingest_rate = count / max(sent.last_ok - t0, 1e-9)
                cpu = after.since(before, time.time() - t0)
                burst = await latencies(sink, "p1")

                # phase 2: latency at half the sustained rate
                await asyncio.sleep(0.5)
                half = max(rate / 2, float(BATCH))
                sent2, achieved, stats2 = await paced(senders, template, "p2", half, seconds)
                tally2 = await wait_for(sink, "p2", sent2, 60.0)
                steady = await latencies(sink, "p2")
                for conn in [*senders, sink]:
                    await conn.close()
                if server.proc.poll() is not None:
                    raise RuntimeError(f"sluice serve exited during the benchmark:\n{server.tail()}")

    report: dict[str, Any] = {
        "events": count,
        "eventBytes": len(sample[0]),
        "batchEvents": BATCH,
        "connections": lanes,
        "cpuCount": os.cpu_count(),
        "loadAverageAtStart": round(load_at_start, 2),
        "eventsPerSec": round(rate),
        "ingestEventsPerSec": round(ingest_rate),
        "phase1Delivered": delivered,
        "phase1Seconds": round(elapsed, 3),
        "phase1Throttled": sent.throttled,
        "phase1Untransformed": tally["untransformed"],
        "phase1Redeliveries": tally["deliveries"] - delivered,
        "phase1LatencyP50Ms": round(percentile(burst, 0.5), 1),
        "phase1LatencyP99Ms": round(percentile(burst, 0.99), 1),
        "latencyRateEventsPerSec": round(half),
        "latencySentEventsPerSec": round(achieved),
        "latencySeconds": seconds,
        "latencyEvents": sent2,
        "latencyDelivered": tally2["events"],
        "latencyThrottled": stats2.throttled,
        "latencyP50Ms": round(percentile(steady, 0.5), 1),
        "latencyP99Ms": round(percentile(steady, 0.99), 1),
        "latencyMaxMs": round(steady[-1] if steady else 0.0, 1),
        "logAppendCeilingEventsPerSec": round(append_ceiling),
        "sinkCeilingEventsPerSec": round(sink_ceiling),
        "runtimeIsolatedEventsPerSec": round(runtime_rate),
        "runtimeWorkers": workers,
        "ceilingEvents": ceiling_count,
        "cpuSecondsPhase1": cpu,
        "targets": TARGETS,
    }
    report["meetsTargets"] = {
        "eventsPerSec": report["eventsPerSec"] >= TARGETS["eventsPerSec"] and delivered == count,
        "latencyP99Ms": report["latencyP99Ms"] <= TARGETS["latencyP99Ms"] and tally2["events"] == sent2,
    }
    return report


def format_report(r: dict[str, Any]) -> str:
    ok = {True: "meets target", False: "MISSES target"}
    met = r["meetsTargets"]
    cpu = r["cpuSecondsPhase1"]
    lines = [
        f"sluice pipeline benchmark — {r['events']:,} track events of {r['eventBytes']} B, "
        f"{r['batchEvents']} per /v1/batch, {r['connections']} connections, {r['cpuCount']} cores "
        f"(load average {r['loadAverageAtStart']} at start)",
        f"  end to end, sustained      {r['eventsPerSec']:>10,} events/s   "
        f"(target ≥ {TARGETS['eventsPerSec']:,.0f}: {ok[met['eventsPerSec']]}; "
        f"{r['phase1Delivered']:,} delivered in {r['phase1Seconds']} s)",
        f"  ingest accepted            {r['ingestEventsPerSec']:>10,} events/s   "
        f"({r['phase1Throttled']} requests throttled)",
        f"  event-log append ceiling   {r['logAppendCeilingEventsPerSec']:>10,} events/s   (SQLite, 100 per append)",
        f"  webhook sink ceiling       {r['sinkCeilingEventsPerSec']:>10,} events/s   (posted directly)",
        f"  runtime ceiling            {r['runtimeIsolatedEventsPerSec']:>10,} events/s   "
        f"(isolated pool, {r['runtimeWorkers']} worker(s) as in the pipeline)",
        f"  latency at half rate p50   {r['latencyP50Ms']:>10,.1f} ms         "
        f"({r['latencySentEventsPerSec']:,} events/s for {r['latencySeconds']} s, receivedAt → sink)",
        f"  latency at half rate p99   {r['latencyP99Ms']:>10,.1f} ms         "
        f"(target ≤ {TARGETS['latencyP99Ms']:,.0f} ms: {ok[met['latencyP99Ms']]})",
        f"  latency in the burst p50   {r['phase1LatencyP50Ms']:>10,.1f} ms",
        f"  latency in the burst p99   {r['phase1LatencyP99Ms']:>10,.1f} ms",
        f"  CPU s in the burst         server (ingest, API) {cpu['server']}, delivery process {cpu['delivery']}, "
        f"function workers {cpu['workers']}, "
        f"sink {cpu['sink']}, sender {cpu['sender']} (over {cpu['wall']} s wall)",
    ]
    return "\n".join(lines)
