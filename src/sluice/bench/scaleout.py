"""Scale-out benchmark: end-to-end events/s with 1, 2 and 4 worker processes on PostgreSQL + NATS.

The same pipeline as :mod:`sluice.bench.pipeline` (HTTP ``/v1/batch`` → event log → the trivial
insert function → a batched webhook sink), run as separate ``sluice serve --role …`` processes
sharing only a PostgreSQL catalog and NATS JetStream, as in production scale-out (DESIGN §5).

In one run, in this order:

1. **NATS's own ceiling** — :func:`sluice.bench.nats.run_benchmark` with the same event count: one
   client's server-acknowledged publish and pull+ack events/s on this server.
2. **the embedded figure** — :func:`sluice.bench.pipeline.run_benchmark` with the same event count
   (its latency phase cut to 1 s): one ``sluice serve`` on SQLite.
3. **for each worker count N** (default 1, 2, 4): a fresh PostgreSQL database
   (``sluice_bench_<random>``, created on the server's ``postgres`` database and dropped ``WITH
   (FORCE)`` afterwards) and a fresh NATS prefix (its streams deleted afterwards); processes: one
   ``api`` (started first: it creates the schema, the owner token and the demo source), ``ingest``
   processes (default two, the sender's 8 connections spread over them: against one, measured
   the same end-to-end events/s with 1 worker, 8% more with 2 and 19% more with 4, and ingest
   accepting 30% faster) and N ``worker`` processes (each with its delivery child and function
   workers), every one on its own temporary data folder and with this process's environment
   minus its ``SLUICE_*`` variables (``PGOPTIONS``, say, reaches them).
   The function, destination and instance are set up through the API as in the pipeline bench;
   once every worker reports the function in ``/metrics`` (it reads the catalog every 2 s), probe
   events are sent until one arrives transformed. Then ``events`` events are sent as fast as
   ingest accepts them: ``eventsPerSec`` = events ÷ (the sink's arrival of the last new event −
   the first send); ``ingestEventsPerSec`` = events ÷ (the last 200 − the first send);
   ``duplicates`` = deliveries − distinct events at that moment (later redeliveries are not
   waited for); ``missing`` = events that had not arrived within max(120 s, events/1000 s).

CPU seconds used during each throughput phase are read from ``/proc`` and grouped by role: api,
ingest, worker (its serve process, delivery child and function workers; the split is kept in
``workerSplit``), sink and sender (this process). ``postgres`` and ``nats`` are the shared
services, approximate: every PostgreSQL process except other databases' connections, and the
whole NATS server (other users of the same servers count too). Divided by the event count this
gives CPU seconds per 1,000 events per role, from which the scaling can be projected onto larger
machines: on this 2-core machine, adding workers cannot add cores.

Everything is torn down even on errors: SIGTERM to every process, SIGKILL to its process group
after a timeout; the NATS prefix is deleted and the database dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sluice.bench import nats as nats_bench
from sluice.bench import pipeline
from sluice.bench.pipeline import (
    BATCH,
    Conn,
    EventTemplate,
    ServerProcess,
    blast,
    configure,
    connections,
    cpu_seconds,
    descendants,
    is_delivery_process,
    probe_until_delivered,
    running_sink,
    wait_for,
)

__all__ = [
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_WORKERS",
    "format_report",
    "run_benchmark",
    "unreachable",
]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_WORKERS = (1, 2, 4)
DEFAULT_INGEST = 2
ACK_WAIT_S = 30
ROLES = ("api", "ingest", "worker", "sink", "sender")
SERVICES = ("postgres", "nats")
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0
_CLIENT_BACKEND = re.compile(r"\S\(\d+\)|\[local\]")  # "user database host(port) state" in its title


# --- services ------------------------------------------------------------------------------------


def nats_url_from_env() -> str:
    return os.environ.get("SLUICE_NATS_URL") or nats_bench.DEFAULT_URL


def unreachable(postgres_url: str, nats_url: str) -> str | None:
    """What does not answer on its port (PostgreSQL, NATS), or None when both listen."""
    problems = []
    for what, url, default in (("PostgreSQL", postgres_url, 5432), ("NATS", nats_url, 4222)):
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or default
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            problems.append(f"no {what} server answers at {host}:{port} ({exc.strerror or exc})")
    return "; ".join(problems) or None


def _database_url(postgres_url: str, name: str) -> str:
    parts = urlsplit(postgres_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


def _admin(postgres_url: str, statement: str, name: str = "") -> None:
    """Run ``statement`` (``{}`` is ``name`` as an identifier) on the admin database."""
    import psycopg
    from psycopg import sql

    try:
        conn = psycopg.connect(postgres_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise OSError(f"cannot connect to PostgreSQL: {str(exc).strip()}") from None
    with conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(name)))


async def _delete_prefix(nats_url: str, prefix: str) -> None:
    from sluice.queue.nats import NatsEventLog

    log = NatsEventLog(nats_url, prefix=prefix)
    try:
        await log.delete_everything()
    finally:
        await log.close()


# --- processes -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Cluster:
    api: ServerProcess
    ingest: list[ServerProcess]
    workers: list[ServerProcess]
    database: str
    prefix: str

    def members(self) -> list[tuple[str, ServerProcess]]:
        return [("api", self.api), *(("ingest", p) for p in self.ingest), *(("worker", p) for p in self.workers)]

    def describe(self) -> str:
        return "\n".join(f"--- {role} (pid {p.proc.pid}):\n{p.tail()}" for role, p in self.members())


def _spawn(role: str, index: int, root: Path, env: dict[str, str], token: str) -> ServerProcess:
    folder = root / f"{role}-{index}"
    folder.mkdir(parents=True)
    log_path = folder / "serve.log"
    command = [sys.executable, "-m", "sluice", "serve", "--role", role, "--port", "0"]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [*command, "--data-dir", str(folder / "data")],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the kill on timeout reaches its children
        )
    return ServerProcess(proc, 0, token, log_path)


async def _wait_listening(server: ServerProcess, role: str) -> None:
    """Until the process printed its port (``sluice API: …`` or ``sluice <role> process: metrics at …``)."""
    marker = "sluice API: http://" if role == "api" else f"sluice {role} process: metrics at http://"
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        for line in server.log_path.read_text(errors="replace").splitlines():
            if line.startswith(marker):
                address = line.split("http://", 1)[1].split()[0].split("/", 1)[0]
                server.port = int(address.rsplit(":", 1)[1])
                return
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sluice serve --role {role} did not start:\n{server.tail()}")
        await asyncio.sleep(0.05)


async def _stop(server: ServerProcess) -> None:
    """SIGTERM, then SIGKILL to its process group after the timeout; leftovers of its group go too."""
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, _STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # an orphaned delivery child or function worker


@contextlib.asynccontextmanager
async def running_cluster(
    root: Path, workers: int, ingests: int, postgres_url: str, nats_url: str
) -> AsyncIterator[Cluster]:
    """A fresh database and NATS prefix, 1 api + ``ingests`` ingest + ``workers`` worker processes."""
    database = f"sluice_bench_{secrets.token_hex(6)}"
    prefix = f"bench{secrets.token_hex(5)}"
    token = secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(
        PYTHONUNBUFFERED="1",
        NO_PROXY="127.0.0.1,localhost",
        SLUICE_ADMIN_TOKEN=token,
        SLUICE_SECRET_KEY=secrets.token_hex(32),
        SLUICE_DATABASE_URL=_database_url(postgres_url, database),
        SLUICE_QUEUE_URL=f"{nats_url.rstrip('/')}?prefix={prefix}&ack_wait={ACK_WAIT_S}",
    )
    started: list[ServerProcess] = []
    await asyncio.to_thread(_admin, postgres_url, "CREATE DATABASE {}", database)
    try:
        api = _spawn("api", 0, root, env, token)
        started.append(api)
        await _wait_listening(api, "api")  # the schema, the owner token and the demo source exist now
        ingest = [_spawn("ingest", i, root, env, token) for i in range(ingests)]
        started.extend(ingest)
        worker = [_spawn("worker", i, root, env, token) for i in range(workers)]
        started.extend(worker)
        await asyncio.gather(
            *(_wait_listening(p, "ingest") for p in ingest), *(_wait_listening(p, "worker") for p in worker)
        )
        yield Cluster(api, ingest, worker, database, prefix)
    finally:
        await asyncio.gather(*(_stop(p) for p in started))
        try:
            await _delete_prefix(nats_url, prefix)
        except Exception as exc:  # keep going: the database must be dropped too
            print(f"sluice bench scaleout: could not delete the NATS prefix {prefix}: {exc!r}", file=sys.stderr)
        await asyncio.to_thread(_admin, postgres_url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", database)


async def _workers_loaded(cluster: Cluster) -> None:
    """Until every worker's ``/metrics`` names the function (its pipeline loaded the destination)."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    waiting = list(cluster.workers)
    while waiting:
        still = []
        for worker in waiting:
            conn = Conn("127.0.0.1", worker.port)
            try:
                _, _, body = await conn.request("GET", "/metrics")
            finally:
                await conn.close()
            if b"\nsluice_function_version_info{" not in body:
                still.append(worker)
        waiting = still
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} worker(s) never loaded the destination:\n{cluster.describe()}")
        if waiting:
            await asyncio.sleep(0.2)


# --- CPU by role ---------------------------------------------------------------------------------


def _service_pids(database: str) -> dict[int, str]:
    """PostgreSQL processes (other databases' connections left out) and the NATS server."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", encoding="utf-8", errors="replace") as f:
                comm = f.read().strip()
            if comm == "nats-server":
                found[int(entry)] = "nats"
            elif comm == "postgres":
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                if not _CLIENT_BACKEND.search(cmdline) or f" {database} " in cmdline:  # background, or ours
                    found[int(entry)] = "postgres"
        except OSError:
            continue
    return found


@dataclass(slots=True)
class RoleCpu:
    """CPU seconds per process at one moment, each process labelled with its group."""

    seconds: dict[int, tuple[str, float]] = field(default_factory=dict)
    sender: float = 0.0

    @classmethod
    def take(cls, cluster: Cluster, sink_pid: int) -> RoleCpu:
        snap = cls(sender=time.process_time())
        for role, member in cluster.members():
            pid = member.proc.pid
            snap.seconds[pid] = ("workerServe" if role == "worker" else role, cpu_seconds(pid))
            for child in descendants(pid):
                group = role
                if role == "worker":
                    group = "delivery" if is_delivery_process(child) else "functionWorkers"
                snap.seconds[child] = (group, cpu_seconds(child))
        snap.seconds[sink_pid] = ("sink", cpu_seconds(sink_pid))
        for pid, service in _service_pids(cluster.database).items():
            snap.seconds[pid] = (service, cpu_seconds(pid))
        return snap

    def since(self, before: RoleCpu) -> dict[str, float]:
        used: dict[str, float] = {"workerServe": 0.0, "delivery": 0.0, "functionWorkers": 0.0}
        used.update(dict.fromkeys((*ROLES, *SERVICES), 0.0))
        for pid, (group, value) in self.seconds.items():
            used[group] += value - before.seconds.get(pid, (group, 0.0))[1]
        used["worker"] = used["workerServe"] + used["delivery"] + used["functionWorkers"]
        used["sender"] = self.sender - before.sender
        return {k: round(v, 2) for k, v in used.items()}


def per_thousand(cpu: dict[str, float], events: int) -> dict[str, float]:
    return {k: round(v * 1000 / max(events, 1), 4) for k, v in cpu.items()}


# --- one worker count ----------------------------------------------------------------------------


async def measure(
    cluster: Cluster, sink_proc: subprocess.Popen[str], sink_port: int, tag: str, count: int, lanes: int
) -> dict[str, Any]:
    template = EventTemplate.build()
    write_key = await configure(cluster.api, sink_port)
    await _workers_loaded(cluster)
    sink = Conn("127.0.0.1", sink_port)
    per_ingest = [lanes // len(cluster.ingest) + (i < lanes % len(cluster.ingest)) for i in range(len(cluster.ingest))]
    senders = [c for p, n in zip(cluster.ingest, per_ingest, strict=True) for c in connections(p.port, n, write_key)]
    try:
        await probe_until_delivered(senders[0], sink, template, cluster.describe, tag=f"probe{tag}")
        before = RoleCpu.take(cluster, sink_proc.pid)
        t0 = time.time()
        sent = await blast(senders, "/v1/batch", template, tag, count)
        tally = await wait_for(sink, tag, count, max(120.0, count / 1000))
        after = RoleCpu.take(cluster, sink_proc.pid)
        wall = time.time() - t0
    finally:
        for conn in [*senders, sink]:
            await conn.close()
    gone = [f"{role} (pid {p.proc.pid})" for role, p in cluster.members() if p.proc.poll() is not None]
    if gone:
        raise RuntimeError(f"{', '.join(gone)} exited during the benchmark:\n{cluster.describe()}")
    delivered = int(tally["events"])
    if not delivered:
        raise RuntimeError(f"no event reached the sink:\n{cluster.describe()}")
    cpu = after.since(before)
    split = {k: cpu.pop(k) for k in ("workerServe", "delivery", "functionWorkers")}
    sluice_cpu = cpu["api"] + cpu["ingest"] + cpu["worker"]
    return {
        "workers": len(cluster.workers),
        "ingestProcesses": len(cluster.ingest),
        "eventsPerSec": round(delivered / max(tally["last"] - t0, 1e-9)),
        "ingestEventsPerSec": round(count / max(sent.last_ok - t0, 1e-9)),
        "delivered": delivered,
        "missing": count - delivered,
        "duplicates": int(tally["deliveries"]) - delivered,
        "untransformed": int(tally["untransformed"]),
        "throttled": sent.throttled,
        "seconds": round(tally["last"] - t0, 3),
        "cpuSeconds": {**cpu, "wall": round(wall, 2)},
        "workerSplit": split,
        "cpuSecondsPer1000Events": per_thousand(cpu, delivered),
        "sluiceCpuSecondsPer1000Events": round(sluice_cpu * 1000 / delivered, 4),
        "withServicesCpuSecondsPer1000Events": round(
            (sluice_cpu + cpu["postgres"] + cpu["nats"]) * 1000 / delivered, 4
        ),
        "loadAverageAfter": round(os.getloadavg()[0], 2),
    }


# --- the benchmark -------------------------------------------------------------------------------


async def run_benchmark(
    count: int = 100_000,
    workers: Sequence[int] = DEFAULT_WORKERS,
    ingests: int = DEFAULT_INGEST,
    lanes: int = 8,
    nats_url: str | None = None,
    postgres_url: str | None = None,
) -> dict[str, Any]:
    nats_url = nats_url or nats_url_from_env()
    postgres_url = postgres_url or DEFAULT_POSTGRES_URL
    problem = unreachable(postgres_url, nats_url)
    if problem:
        raise OSError(problem)
    await asyncio.to_thread(_admin, postgres_url, "SELECT 1")  # fail before measuring anything
    load_at_start = os.getloadavg()[0]
    ceiling = await nats_bench.run_benchmark(count=count, url=nats_url)
    embedded = await pipeline.run_benchmark(count=count, seconds=1.0, lanes=lanes)
    runs = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-scaleout-") as tmp, running_sink() as (sink_proc, sink_port):
        for i, n in enumerate(workers):
            async with running_cluster(Path(tmp) / f"run{i}", n, ingests, postgres_url, nats_url) as cluster:
                runs.append(await measure(cluster, sink_proc, sink_port, f"run{i}", count, lanes))
    e_cpu = embedded["cpuSecondsPhase1"]
    embedded_cpu = {"server": e_cpu["server"], "worker": round(e_cpu["delivery"] + e_cpu["workers"], 2)}
    embedded_cpu.update(sink=e_cpu["sink"], sender=e_cpu["sender"])
    return {
        "events": count,
        "eventBytes": embedded["eventBytes"],
        "batchEvents": BATCH,
        "connections": lanes,
        "cpuCount": os.cpu_count(),
        "loadAverageAtStart": round(load_at_start, 2),
        "ackWaitS": ACK_WAIT_S,
        "nats": {
            "events": ceiling["events"],
            "publishEventsPerSec": ceiling["publishEventsPerSec"],
            "consumeAckEventsPerSec": ceiling["consumeAckEventsPerSec"],
        },
        "embedded": {
            "events": embedded["events"],
            "eventsPerSec": embedded["eventsPerSec"],
            "ingestEventsPerSec": embedded["ingestEventsPerSec"],
            "delivered": embedded["phase1Delivered"],
            "cpuSeconds": embedded_cpu,
            "cpuSecondsPer1000Events": per_thousand(embedded_cpu, embedded["phase1Delivered"]),
            "sluiceCpuSecondsPer1000Events": round(
                (embedded_cpu["server"] + embedded_cpu["worker"]) * 1000 / max(embedded["phase1Delivered"], 1), 4
            ),
        },
        "runs": runs,
    }


def _per_core(cpu_per_1000: float) -> str:
    return f"≈ {1000 / cpu_per_1000:,.0f} events/s per core" if cpu_per_1000 > 0 else "—"


def format_report(r: dict[str, Any]) -> str:
    nats, embedded = r["nats"], r["embedded"]
    pull = max(nats["consumeAckEventsPerSec"], 1)
    e_per = embedded["cpuSecondsPer1000Events"]
    lines = [
        f"sluice scale-out benchmark — {r['events']:,} track events of {r['eventBytes']} B, {r['batchEvents']} per "
        f"/v1/batch, {r['connections']} connections, {r['cpuCount']} cores (load average "
        f"{r['loadAverageAtStart']} at start); PostgreSQL catalog + NATS JetStream log, one process per role",
        f"  NATS publish ceiling          {nats['publishEventsPerSec']:>8,} events/s   "
        f"(one client, server-acknowledged, {nats['events']:,} events)",
        f"  NATS pull + ack ceiling       {nats['consumeAckEventsPerSec']:>8,} events/s   (one client)",
        f"  embedded (SQLite, 1 process)  {embedded['eventsPerSec']:>8,} events/s   (sluice bench pipeline, "
        f"{embedded['events']:,} events)",
        f"      CPU s per 1,000 events: server {e_per['server']:.3f}, delivery + functions {e_per['worker']:.3f}; "
        f"sluice {embedded['sluiceCpuSecondsPer1000Events']:.3f} "
        f"({_per_core(embedded['sluiceCpuSecondsPer1000Events'])})",
    ]
    for run in r["runs"]:
        per, split = run["cpuSecondsPer1000Events"], run["workerSplit"]
        n = run["workers"]
        label = f"{n} worker{'s' if n != 1 else ''} + {run['ingestProcesses']} ingest"
        lines += [
            f"  {label:<29} {run['eventsPerSec']:>8,} events/s   "
            f"({run['eventsPerSec'] / pull:.2f}× NATS pull+ack, "
            f"{run['eventsPerSec'] / max(embedded['eventsPerSec'], 1):.2f}× embedded)",
            f"      ingest accepted {run['ingestEventsPerSec']:,}/s ({run['throttled']} requests throttled); "
            f"{run['delivered']:,} delivered, {run['duplicates']} duplicates, {run['missing']} missing",
            "      CPU s per 1,000 events: "
            + ", ".join(f"{role} {per[role]:.3f}" for role in (*ROLES, *SERVICES))
            + f"; worker = delivery {split['delivery']:.1f} s + functions {split['functionWorkers']:.1f} s "
            f"+ serve {split['workerServe']:.1f} s",
            f"      sluice {run['sluiceCpuSecondsPer1000Events']:.3f} "
            f"({_per_core(run['sluiceCpuSecondsPer1000Events'])}); with PostgreSQL and NATS "
            f"{run['withServicesCpuSecondsPer1000Events']:.3f} ({_per_core(run['withServicesCpuSecondsPer1000Events'])})",
        ]
    lines.append(
        f"  Note: these {r['cpuCount']} cores run every process above, PostgreSQL and NATS included: adding "
        "workers cannot add cores. Project larger machines from the CPU seconds per 1,000 events "
        "(postgres, nats: the whole shared servers, approximate)."
    )
    return "\n".join(lines)
