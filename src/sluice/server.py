"""The all-in-one server of ``sluice serve``: the Tracking API (``/v1/*``), the control-plane API
(``/api``) and the delivery pipeline in one process, on the embedded SQLite default.

Files under the data folder: ``sluice.db`` (the catalog, unless ``SLUICE_DATABASE_URL`` points
elsewhere), ``queue.db`` (the event log), ``dedupe.db`` (messageIds seen in the last 24 h) and
``serve.lock`` (held while a server runs: the embedded event log has exactly one owner, which
is what lets a restart release the leases of a killed process at once).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fastapi import FastAPI
from starlette.routing import Mount

from sluice.api.app import create_app
from sluice.catalog.access import SYSTEM
from sluice.catalog.service import Catalog
from sluice.catalog.topology import load_plans
from sluice.config import Config
from sluice.delivery.recorder import DeliveryRecorder
from sluice.errors import ConfigError
from sluice.ingest.app import DEFAULT_MAX_BACKLOG, create_ingest_app
from sluice.ingest.dedupe_sqlite import SqliteDeduplicator
from sluice.pipeline.runner import RunnerOptions
from sluice.pipeline.supervisor import Pipeline
from sluice.queue.sqlite import SqliteEventLog

__all__ = ["Server", "ServerOptions", "build_server", "ensure_demo_source", "lock_data_dir"]

DEMO_SOURCE_NAME = "Demo source"


@dataclass(frozen=True, slots=True)
class ServerOptions:
    runner: RunnerOptions = field(default_factory=RunnerOptions)
    refresh_s: float = 2.0
    flush_s: float = 1.0
    max_backlog: int | None = DEFAULT_MAX_BACKLOG


@dataclass(slots=True)
class Server:
    app: FastAPI
    event_log: SqliteEventLog
    dedupe: SqliteDeduplicator
    recorder: DeliveryRecorder
    pipeline: Pipeline
    started: bool = False
    released_leases: int = 0


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


def build_server(catalog: Catalog, config: Config, options: ServerOptions | None = None) -> Server:
    options = options or ServerOptions()
    event_log = SqliteEventLog(config.data_dir, filename="queue.db")
    dedupe = SqliteDeduplicator(config.data_dir / "dedupe.db")
    recorder = DeliveryRecorder()
    pipeline = Pipeline(
        event_log=event_log,
        load_plans=lambda: load_plans(catalog.core),
        recorder=recorder,
        write_outcomes=catalog.delivery.write,
        prune_outcomes=catalog.delivery.prune,
        options=options.runner,
        refresh_s=options.refresh_s,
        flush_s=options.flush_s,
    )
    app = create_app(catalog, recorder=recorder, event_log=event_log)
    ingest = create_ingest_app(
        resolve_write_key=catalog.sources.resolve_write_key,
        log=event_log,
        dedupe=dedupe,
        max_backlog=options.max_backlog,
        on_appended=pipeline.wake,
    )
    app.state.ingest_stats = ingest.state.ingest_stats
    app.router.routes.append(Mount("/", app=ingest))  # last: /api, /healthz (and the console) come first
    server = Server(app, event_log, dedupe, recorder, pipeline)

    @contextlib.asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        server.released_leases = await event_log.release_leases()
        await pipeline.start()
        server.started = True
        try:
            yield
        finally:
            await pipeline.close()  # uvicorn has finished the requests in flight: drain delivery
            await event_log.close()
            await dedupe.close()

    app.router.lifespan_context = lifespan
    return server
