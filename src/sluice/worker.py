"""The delivery process of ``sluice serve`` (``python -m sluice.worker``; started by the server).

Ingest and the API run in the server's process, delivery runs here: the two share no Python
objects, only the files under the data folder (the catalog, the event log), so each gets a core
of its own instead of sharing one interpreter lock. The server talks to it over this process's
stdin and stdout, one JSON object per line:

server → here: ``{"op": "wake"}`` (events were appended; lease now), ``{"op": "follow",
"destinationId"}`` (someone tails that destination).
here → server: ``{"op": "ready", "releasedLeases"}`` once delivering, ``{"op": "line",
"destinationId", "line": [...]}`` (an :class:`~sluice.delivery.recorder.OutcomeLine`'s fields, only
while someone follows), and every few seconds ``{"op": "stats", …}``: its totals for ``/metrics``
(:class:`sluice.metrics.DeliveryTotals`).

It holds ``delivery.lock`` in the data folder while it runs: one delivery process per folder, so
it can make the leases of a predecessor that was killed due at once. It stops, after draining
the batches in flight, on SIGTERM or when its stdin closes (the server went away); SIGINT is
the server's to handle. Logs go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

import orjson

from sluice.catalog.service import Catalog
from sluice.catalog.topology import load_plans
from sluice.config import Config
from sluice.delivery.recorder import DeliveryRecorder, OutcomeLine
from sluice.errors import ConfigError
from sluice.pipeline.runner import RunnerOptions, default_pool_factory
from sluice.pipeline.supervisor import Pipeline
from sluice.queue.factory import open_event_log
from sluice.queue.sqlite import SqliteEventLog

__all__ = ["LOCK_NAME", "main"]

log = logging.getLogger("sluice.worker")
LOCK_NAME = "delivery.lock"
LOCK_WAIT_S = 60.0
STATS_EVERY_S = 2.0


def _lock(data_dir: Path) -> IO[str]:
    """Wait (up to a minute) for a predecessor still draining, then hold the delivery lock."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_NAME, "a+")  # noqa: SIM115 - held for the life of the process
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise ConfigError(f"another delivery process holds {data_dir / LOCK_NAME}") from None
            time.sleep(0.05)


def _send(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


def _forward_line(destination_id: str, line: OutcomeLine) -> None:
    _send({"op": "line", "destinationId": destination_id, "line": dataclasses.astuple(line)})


async def _commands(pipeline: Pipeline, recorder: DeliveryRecorder, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("delivery process: ignored a malformed command %r", line[:200])
                continue
            op = message.get("op")
            if op == "wake":
                pipeline.wake()
            elif op == "follow" and isinstance(message.get("destinationId"), str):
                recorder.follow(message["destinationId"])
    finally:
        stop.set()  # stdin closed: the server is gone


async def _report(pipeline: Pipeline) -> None:
    while True:
        await asyncio.sleep(STATS_EVERY_S)
        _send({"op": "stats", **pipeline.totals().to_wire()})


async def run(config: Config, options: dict[str, Any]) -> None:
    lock = await asyncio.to_thread(_lock, config.data_dir)
    catalog = Catalog.open(config)
    event_log = open_event_log(config)
    recorder = DeliveryRecorder(on_line=_forward_line)
    runner_options = RunnerOptions(**options.get("runner", {}))
    pipeline = Pipeline(
        event_log=event_log,
        load_plans=lambda: load_plans(catalog.core),
        recorder=recorder,
        write_outcomes=catalog.delivery.write,
        prune_outcomes=lambda: (catalog.delivery.prune(), catalog.function_store.purge_expired()),
        options=runner_options,
        pool_factory=default_pool_factory(runner_options, stores=catalog.function_store.backend),
        refresh_s=float(options.get("refreshS", 2.0)),
        flush_s=float(options.get("flushS", 1.0)),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        # The file log is this folder's alone: leases of a killed predecessor are abandoned for
        # sure. A shared log (NATS) may be leased by other processes: its leases run out instead.
        released = await event_log.release_leases() if isinstance(event_log, SqliteEventLog) else 0
        await pipeline.start()
        commands = loop.create_task(_commands(pipeline, recorder, stop))
        _send({"op": "ready", "releasedLeases": released})
        reporter = loop.create_task(_report(pipeline))
        await stop.wait()
        for task in (commands, reporter):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await pipeline.close()
        await event_log.close()
        catalog.close()
        lock.close()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="sluice delivery: %(levelname)s %(name)s: %(message)s")
    options: dict[str, Any] = orjson.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    config = Config.from_env()
    if "dataDir" in options:
        config = config.with_data_dir(Path(options["dataDir"]))
    try:
        asyncio.run(run(config, options))
    except ConfigError as exc:
        print(f"sluice delivery: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
