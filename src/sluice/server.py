"""The all-in-one server of ``sluice serve``: the Tracking API (``/v1/*``) and the control-plane
API (``/api``) in this process, delivery in a child process (:mod:`sluice.worker`) so that the
two use a core each.

Files under the data folder: ``sluice.db`` (the catalog, unless ``SLUICE_DATABASE_URL`` points
elsewhere), ``queue.db`` (the event log, shared by both processes: SQLite WAL), ``dedupe.db``
(messageIds seen in the last 24 h), ``serve.lock`` (held by the server: one server per folder)
and ``delivery.lock`` (held by its delivery process).

With ``--role ingest|worker|api`` (:func:`build_server`, docs/scale-out.md) a process runs one
part only and shares its state through PostgreSQL and NATS JetStream instead of these files.

The delivery process is watched: if it dies it is started again (after 1 s), and the new one
makes the dead one's leases due at once. On shutdown the server first finishes the requests in
flight, then asks the delivery process to drain (SIGTERM) and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from sluice.api.app import create_app
from sluice.catalog.access import SYSTEM
from sluice.catalog.service import Catalog
from sluice.config import Config
from sluice.console import console_route
from sluice.delivery.recorder import DeliveryRecorder, OutcomeLine
from sluice.errors import ConfigError, SluiceError
from sluice.ingest.app import DEFAULT_MAX_BACKLOG, create_ingest_app
from sluice.ingest.dedupe import Deduplicator
from sluice.ingest.dedupe_sqlite import SqliteDeduplicator
from sluice.ingest.stats import IngestStats
from sluice.metrics import DeliveryTotals, Family, render
from sluice.pipeline.runner import RunnerOptions
from sluice.queue.base import EventLog
from sluice.queue.factory import open_event_log

__all__ = [
    "ROLES",
    "DeliveryProcess",
    "Server",
    "ServerOptions",
    "build_server",
    "check_role",
    "ensure_demo_source",
    "lock_data_dir",
]

log = logging.getLogger("sluice.server")
DEMO_SOURCE_NAME = "Demo source"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 120.0
RESTART_DELAY_S = 1.0


@dataclass(frozen=True, slots=True)
class ServerOptions:
    runner: RunnerOptions = field(default_factory=RunnerOptions)
    refresh_s: float = 2.0
    flush_s: float = 1.0
    max_backlog: int | None = DEFAULT_MAX_BACKLOG

    def wire(self, data_dir: Path) -> bytes:
        runner = dataclasses.asdict(self.runner)
        runner.pop("limits")  # the runtime's defaults (DESIGN §3.6)
        return orjson.dumps(
            {"dataDir": str(data_dir), "runner": runner, "refreshS": self.refresh_s, "flushS": self.flush_s}
        )


class DeliveryProcess:
    """The server's side of :mod:`sluice.worker`: start, wake, follow, watch, stop."""

    def __init__(self, config: Config, options: ServerOptions) -> None:
        self._config = config
        self._options = options
        #: The tail ring of this process: ``follow`` is passed on, the lines come back.
        self.recorder = DeliveryRecorder(on_follow=self.follow)
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        self.starts = 0
        self.released_leases = 0
        self._carried = DeliveryTotals()  # totals of delivery processes that were replaced
        self._latest = DeliveryTotals()  # the running one's last report

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["SLUICE_DATA_DIR"] = str(self._config.data_dir)
        env["SLUICE_DATABASE_URL"] = self._config.database_url
        if self._config.secret_key:
            env["SLUICE_SECRET_KEY"] = self._config.secret_key
        if self._config.queue_url:
            env["SLUICE_QUEUE_URL"] = self._config.queue_url
        return env

    async def start(self) -> None:
        """Start the delivery process and wait until it delivers; raises if it cannot start."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sluice.worker",
            self._options.wire(self._config.data_dir).decode(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._env(),
            start_new_session=True,  # Ctrl+C reaches the server, which drains it in order
        )
        assert proc.stdout is not None
        try:
            ready = await asyncio.wait_for(self._until_ready(proc.stdout), READY_TIMEOUT_S)
        except (TimeoutError, SluiceError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        self._proc = proc
        self.starts += 1
        self.released_leases = int(ready.get("releasedLeases", 0))
        self._watch = asyncio.get_running_loop().create_task(self._follow_output(proc), name="sluice-delivery")

    @staticmethod
    async def _until_ready(stdout: asyncio.StreamReader) -> dict[str, Any]:
        while line := await stdout.readline():
            message = orjson.loads(line)
            if message.get("op") == "ready":
                return dict(message)
        raise SluiceError("the delivery process exited before it was ready (see its messages above)")

    async def _follow_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                message = orjson.loads(line)
                if message.get("op") == "line":
                    self.recorder.record_line(message["destinationId"], OutcomeLine(*message["line"]))
                elif message.get("op") == "stats":
                    self._latest = DeliveryTotals.from_wire(message)
            except (orjson.JSONDecodeError, TypeError, KeyError):
                log.warning("ignored a malformed message from the delivery process: %r", line[:200])
        code = await proc.wait()
        self._carried, self._latest = self._carried.plus(self._latest), DeliveryTotals()
        if self._stopping:
            return
        log.error("the delivery process exited (code %s); starting another in %.0f s", code, RESTART_DELAY_S)
        while not self._stopping:
            await asyncio.sleep(RESTART_DELAY_S)
            try:
                await self.start()
                return
            except (OSError, TimeoutError, SluiceError) as exc:
                log.error("cannot restart the delivery process: %s", exc)

    def totals(self) -> DeliveryTotals:
        """What delivery counted since the server started (every delivery process together)."""
        return self._carried.plus(self._latest)

    def _send(self, message: bytes) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None or proc.stdin.is_closing():
            return
        proc.stdin.write(message)

    def wake(self, *_: object) -> None:
        self._send(b'{"op":"wake"}\n')

    def follow(self, destination_id: str) -> None:
        self._send(orjson.dumps({"op": "follow", "destinationId": destination_id}) + b"\n")

    async def stop(self) -> None:
        """Drain: SIGTERM, then wait for the batches in flight to settle (kill after 2 minutes)."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("the delivery process did not stop within %.0f s; killing it", STOP_TIMEOUT_S)
                proc.kill()
                await proc.wait()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch


ROLES = ("all", "ingest", "worker", "api")


@dataclass(slots=True)
class Server:
    app: FastAPI
    role: str
    event_log: EventLog
    dedupe: ClosingDeduplicator | None
    recorder: DeliveryRecorder
    delivery: DeliveryProcess | None
    started: bool = False


def check_role(role: str, config: Config) -> None:
    """Roles other than ``all`` share their state through PostgreSQL and NATS only (DESIGN §5)."""
    if role not in ROLES:
        raise ConfigError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "all":
        return
    missing = []
    if not config.shared_catalog:
        missing.append("SLUICE_DATABASE_URL=postgresql://…")
    if not config.shared_queue:
        missing.append("SLUICE_QUEUE_URL=nats://…")
    if not config.secret_key:
        missing.append("SLUICE_SECRET_KEY (the same on every process: it seals secret settings)")
    if missing:
        raise ConfigError(f"--role {role} runs beside other sluice processes and needs {', '.join(missing)}")


def metrics_endpoint(
    stats: IngestStats, event_log: EventLog, delivery: DeliveryProcess | None
) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``: Prometheus text format, no authentication (as Prometheus scrapes it);
    it names source and destination ids, never events or settings."""

    async def endpoint(_: Request) -> Response:
        snapshot = stats.snapshot()
        ingest = Family("sluice_ingest_events_total", "counter", "Events received by the Tracking API.")
        for source, n in sorted(snapshot.accepted.items()):
            ingest.add(n, source=source, result="accepted", reason="")
        for source, reasons in sorted(snapshot.failed.items()):
            for reason, n in sorted(reasons.items()):
                ingest.add(n, source=source, result="failed", reason=reason)
        for source, n in sorted(snapshot.duplicates.items()):
            ingest.add(n, source=source, result="duplicate", reason="")
        refused = Family("sluice_ingest_requests_refused_total", "counter", "Tracking API requests refused.")
        for status, n in sorted(snapshot.refused.items()):
            refused.add(n, status=str(status))
        queue = Family("sluice_queue_entries", "gauge", "Event-log entries per destination and state (lag).")
        for destination, state in sorted((await event_log.stats()).destinations.items()):
            for name in ("new", "scheduled", "leased", "dead_letters"):
                queue.add(getattr(state, name), destination=destination, state=name)
        families = [ingest, refused, queue]
        if delivery is not None:
            restarts = Family("sluice_delivery_process_restarts_total", "counter", "Delivery processes replaced.")
            restarts.add(max(0, delivery.starts - 1))
            families += [restarts, *delivery.totals().families()]
        return Response(render(families), media_type="text/plain; version=0.0.4; charset=utf-8")

    return endpoint


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold ``serve.lock`` for the life of the process; a second server on the folder is refused."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / "serve.lock", "a+")  # noqa: SIM115 - held open until the process ends
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(
            f"another sluice server is running on the data folder {data_dir.resolve()} "
            "(stop it, or give this one another --data-dir)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def ensure_demo_source(catalog: Catalog) -> dict[str, Any] | None:
    """On a catalog without sources, create the demo source; returns it (with its write key) or None."""
    if catalog.sources.list_all(SYSTEM):
        return None
    return catalog.sources.create(SYSTEM, {"name": DEMO_SOURCE_NAME})


def build_server(
    catalog: Catalog, config: Config, options: ServerOptions | None = None, *, role: str = "all"
) -> Server:
    """The ASGI app of one ``sluice serve --role …`` process.

    ``all``: ingest, API, console and a delivery child process. ``ingest``: the Tracking API only.
    ``api``: the API and the console. ``worker``: a delivery child process only. Every role serves
    ``/metrics`` and ``/healthz``.
    """
    check_role(role, config)
    options = options or ServerOptions()
    event_log = open_event_log(config)
    delivery = DeliveryProcess(config, options) if role in ("all", "worker") else None
    recorder = delivery.recorder if delivery is not None else DeliveryRecorder()
    stats = IngestStats()
    dedupe: ClosingDeduplicator | None = None
    serves_api = role in ("all", "api")
    if serves_api:  # the tail of live outcomes needs this process's delivery (role all)
        app = create_app(
            catalog, recorder=delivery.recorder if delivery else None, event_log=event_log, ingest_stats=stats
        )
    else:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.router.routes.append(Route("/healthz", _healthz, methods=["GET"]))
    app.router.routes.append(Route("/metrics", metrics_endpoint(stats, event_log, delivery), methods=["GET"]))
    if serves_api:
        app.router.routes.append(console_route(app, catalog.console_sessions))  # the web console, calls /api
    if role in ("all", "ingest"):
        dedupe = open_deduplicator(config)
        ingest = create_ingest_app(
            resolve_write_key=catalog.sources.resolve_write_key,
            log=event_log,
            dedupe=dedupe,
            max_backlog=options.max_backlog,
            on_appended=delivery.wake if delivery is not None else None,
            stats=stats,
        )
        app.router.routes.append(Mount("/", app=ingest))  # last: /api, /healthz (and the console) come first
    server = Server(app, role, event_log, dedupe, recorder, delivery)

    @contextlib.asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        if delivery is not None:
            await delivery.start()
        server.started = True
        try:
            yield
        finally:
            if delivery is not None:
                await delivery.stop()  # uvicorn has finished the requests in flight: drain delivery
            await event_log.close()
            if dedupe is not None:
                await dedupe.close()

    app.router.lifespan_context = lifespan
    return server


async def _healthz(_: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


class ClosingDeduplicator(Deduplicator, Protocol):
    async def close(self) -> None: ...


def open_deduplicator(config: Config) -> ClosingDeduplicator:
    """``dedupe.db`` in the data folder; with a PostgreSQL catalog, a table there (shared by ingest processes)."""
    if config.shared_catalog:
        from sluice.ingest.dedupe_pg import PostgresDeduplicator

        return PostgresDeduplicator(config.database_url)
    return SqliteDeduplicator(config.data_dir / "dedupe.db")
