"""Parent side of the isolated runtime: a pool of worker processes per function instance.

The pool splits events into micro-batch frames, keeps up to ``max_in_flight`` frames queued
per worker, and watches every worker: a worker that sends neither a result nor a heartbeat
for ``timeout + grace`` seconds is killed (its current frame ends as ``timeout``); a worker
that dies mid-frame (crash, ``os._exit``, segfault) fails its current frame as ``retry``.
Frames queued behind it had not started and are sent again to a fresh worker — no event is
ever lost. A replacement worker is started on the next frame.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import itertools
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.errors import FunctionLoadError, PoolClosedError, WorkerStartError
from sluice.functions import protocol
from sluice.functions.loader import HANDLER_TYPES, StaticInfo, camel_name, check_source
from sluice.functions.settings import SettingSpec, secret_strings, validate_values
from sluice.functions.store_bridge import MemoryStore, StoreBackend, StoreBridge

EventResult = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-instance limits (DESIGN §3.6); every one is configurable."""

    timeout_s: float = 5.0
    memory_mb: int = 256
    max_output_bytes: int = 64 * 1024
    grace_s: float = 1.0
    frame_max_events: int = 100
    start_timeout_s: float = 15.0

    def wire(self) -> dict[str, Any]:
        return {
            "timeoutMs": int(self.timeout_s * 1000),
            "memoryMb": self.memory_mb,
            "maxOutputBytes": self.max_output_bytes,
        }


@dataclass(frozen=True, slots=True)
class FunctionSource:
    code: str
    filename: str = "function.py"
    language: str = "python"
    #: ``None`` = no schema known (a bare file): settings pass unchecked, nothing is secret.
    schema: tuple[SettingSpec, ...] | None = None


@dataclass(slots=True)
class PoolStats:
    started: int = 0
    crashed: int = 0
    killed_for_timeout: int = 0
    recycled: int = 0
    frames: int = 0
    round_trips_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=10_000))


def python_worker_command() -> list[str]:
    return [sys.executable, "-I", "-B", "-m", "sluice.functions.child_py"]


PIPE_BYTES = 1024 * 1024
WATCH_EVERY_S = 0.1
WORKER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "MALLOC_ARENA_MAX": "2"}

#: The JavaScript worker (plain CommonJS, no build step); its libraries resolve from the nearest
#: ``node_modules`` above it (the repository root's, installed by ``npm ci``).
JS_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child_js", "worker.js")
NODE_MIN_MAJOR = 20
#: Libraries the JavaScript worker cannot start without (the rest load on first use).
_JS_REQUIRED = ("node-fetch", "lodash")
_node_checked: dict[str, str] = {}
_JS_HANDLER = re.compile(r"\b(on(?:Track|Identify|Page|Screen|Group|Alias|Delete|Batch))\b\s*(?:=|\()")


def _node_modules() -> str | None:
    directory = os.path.dirname(JS_WORKER)
    while True:
        candidate = os.path.join(directory, "node_modules")
        if all(os.path.isfile(os.path.join(candidate, name, "package.json")) for name in _JS_REQUIRED):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


async def _node_version(node: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        node, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=WORKER_ENV
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 10.0)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return ""
    return out.decode("ascii", "replace").strip()


#: Replaced by the worker's private scratch directory when the command is run.
WORKDIR_ARG = "{workdir}"


async def js_worker_command(memory_mb: int) -> list[str]:
    """``node --max-old-space-size=<memory_mb> worker.js``, behind :mod:`sluice.functions.launch_js`.

    Raises :class:`WorkerStartError` when Node.js ≥ 20 or the runtime's libraries are missing: the
    function's code is not at fault, the machine lacks the JavaScript runtime.
    """
    node = shutil.which("node", path=WORKER_ENV["PATH"])
    if node is None:
        raise WorkerStartError(
            f"JavaScript functions need Node.js {NODE_MIN_MAJOR} or newer (node was not found on PATH "
            f"{WORKER_ENV['PATH']}); Python functions work without it"
        )
    version = _node_checked.get(node)
    if version is None:
        version = await _node_version(node)
        match = re.match(r"v(\d+)\.", version)
        if not match or int(match.group(1)) < NODE_MIN_MAJOR:
            raise WorkerStartError(
                f"JavaScript functions need Node.js {NODE_MIN_MAJOR} or newer ({node} is {version or 'unknown'})"
            )
        _node_checked[node] = version
    if _node_modules() is None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(JS_WORKER))))
        raise WorkerStartError(
            "the JavaScript runtime's libraries are not installed: run `npm ci --ignore-scripts` in "
            f"{root} (`make run` and `make test` do it when Node.js is present)"
        )
    # The launcher applies the same Landlock sandbox as a Python worker's, switches core dumps off
    # (a V8 heap overflow aborts: the core would hold the settings) and execs node.
    launcher = [sys.executable, "-I", "-B", "-m", "sluice.functions.launch_js", WORKDIR_ARG]
    return [*launcher, node, f"--max-old-space-size={memory_mb}", JS_WORKER]


def js_static_info(code: str) -> StaticInfo:
    """The handlers a JavaScript source appears to define (the worker checks it for real)."""
    found = set(_JS_HANDLER.findall(code))
    return StaticInfo(handlers=tuple(k for k in HANDLER_TYPES if camel_name(k) in found))


def _grow_pipes(proc: asyncio.subprocess.Process) -> None:
    """A 1 MiB pipe takes a whole micro-batch frame in one write (the 64 KiB default needs several)."""
    for stream in (proc.stdin, proc.stdout):
        transport = getattr(stream, "transport", None) or getattr(stream, "_transport", None)
        pipe = transport.get_extra_info("pipe") if transport is not None else None
        if pipe is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


_warned: list[bool] = []


def _warn_no_landlock() -> None:
    if not _warned:
        _warned.append(True)
        logging.getLogger("sluice.functions").warning(
            "Landlock is not available on this kernel: function workers are isolated by process, "
            "environment and an audit hook only (see docs/isolation.md)"
        )


def _materialize(reply: dict[str, Any], decode: bool) -> list[EventResult]:
    """Full result dicts from a reply's metadata and its payload of returned events."""
    payload: bytes = reply.get("payload", b"")
    loads = orjson.loads
    out: list[EventResult] = []
    for meta in reply["results"]:
        at = meta.pop("at", None)
        if at is None:
            meta["event"] = None
        else:
            raw = payload[at[0] : at[0] + at[1]]
            meta["event"] = loads(raw) if decode else raw
        if "error" not in meta:
            meta["error"] = None
        if "logs" not in meta:
            meta["logs"] = []
        if "requests" not in meta:
            meta["requests"] = []
        out.append(meta)
    return out


class _Requeue(Exception):
    """The frame never started on a worker that went away: send it again."""


class _FrameFailed(Exception):
    def __init__(self, status: str, type_: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


class _Worker:
    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        clock: Callable[[], float],
        allowance: float,
        on_timeout: Callable[[], None],
        store: StoreBridge | None = None,
    ) -> None:
        self.proc = proc
        self.store = store
        self.clock = clock
        self.pending: collections.OrderedDict[int, asyncio.Future[dict[str, Any]]] = collections.OrderedDict()
        self.last_activity = clock()
        self.retiring = False
        self.timed_out = False
        self.dead = False
        self.stderr_tail: collections.deque[bytes] = collections.deque(maxlen=32)
        self._tasks: list[asyncio.Task[None]] = []
        self._watchdog: asyncio.Task[None] | None = None
        self.backstops: dict[int, float] = {}
        self.workdir: str | None = None  # the worker's private scratch directory, removed when it exits
        self.allowance = allowance
        self.on_timeout = on_timeout
        self.sandbox: dict[str, Any] = {}
        self.memory_mb = 0  # a JavaScript worker's V8 heap limit: its death by heap overflow is bad_request

    async def handshake(self, init: dict[str, Any], timeout: float) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(protocol.encode_frame(init))
        try:
            message = await asyncio.wait_for(self._read(), timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            self.kill()
            await self.proc.wait()
            if isinstance(exc, TimeoutError):
                raise FunctionLoadError(f"the function did not finish loading within {timeout:g} s") from None
            detail = ""
            if self.memory_mb and self.proc.stderr is not None:  # a JavaScript worker: say why node stopped
                with contextlib.suppress(Exception):
                    tail = await asyncio.wait_for(self.proc.stderr.read(4000), 1.0)
                    detail = ": " + tail.decode("utf-8", "replace").strip()[-1000:] if tail.strip() else ""
            raise WorkerStartError(f"worker exited while loading ({self._exit_text()}){detail}") from None
        if message.get("op") == "load_error":
            await self.proc.wait()
            raise FunctionLoadError.from_wire(message.get("error") or {})
        if message.get("op") != "ready":
            self.kill()
            raise WorkerStartError(f"unexpected first message from worker: {message.get('op')!r}")
        self._tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._drain_stderr())]
        self.sandbox = dict(message.get("sandbox") or {})
        return list(message.get("handlers") or [])

    async def _read_raw(self) -> bytes:
        assert self.proc.stdout is not None
        header = await self.proc.stdout.readexactly(protocol.HEADER.size)
        return await self.proc.stdout.readexactly(protocol.read_length(header))

    async def _read(self) -> dict[str, Any]:
        return protocol.decode_body(await self._read_raw())

    async def _reader(self) -> None:
        try:
            while True:
                message = await self._read()
                self.last_activity = self.clock()
                if message.get("op") == "result":
                    if "payloadBytes" in message:  # the returned events follow as one raw frame
                        message["payload"] = await self._read_raw()
                    frame_id = int(message.get("id") or 0)
                    future = self.pending.pop(frame_id, None)
                    self.backstops.pop(frame_id, None)
                    if message.get("recycle"):
                        self.retiring = True
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("op") == "store" and self.store is not None:
                    self.store.handle(message, self._write)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # end of the pipe: the worker exited or was killed; handled below
        except ValueError:  # a malformed frame: this worker can no longer be trusted
            self.kill()
        await self.proc.wait()
        if self.memory_mb and len(self._tasks) > 1:
            # The stderr reader may lag the stdout EOF: let it reach the end before deciding why it died.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._tasks[1]), 1.0)
        self.dead = True
        self._fail_pending()
        self.remove_workdir()

    def _write(self, frame: bytes) -> None:
        assert self.proc.stdin is not None
        if self.proc.returncode is None and not self.proc.stdin.is_closing():
            self.proc.stdin.write(frame)

    def _out_of_memory(self) -> bool:
        return bool(self.memory_mb) and any(b"heap out of memory" in line for line in self.stderr_tail)

    def remove_workdir(self) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        with contextlib.suppress(Exception):
            while line := await self.proc.stderr.readline():
                self.stderr_tail.append(line[:500])

    def _exit_text(self) -> str:
        code = self.proc.returncode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def _fail_pending(self) -> None:
        first = True
        for future in self.pending.values():
            if future.done():
                continue
            if first and not self.retiring:
                if self.timed_out:
                    exc: Exception = _FrameFailed(
                        "timeout", "Timeout", "the function did not yield within the time limit; its worker was killed"
                    )
                elif self._out_of_memory():
                    exc = _FrameFailed(
                        "bad_request",
                        "MemoryError",
                        f"the function ran out of memory (heap limit {self.memory_mb} MiB)",
                    )
                else:
                    exc = _FrameFailed(
                        "retry", "WorkerCrashed", f"the function's worker died ({self._exit_text()}); will be retried"
                    )
            else:
                exc = _Requeue()
            future.set_exception(exc)
            first = False
        self.pending.clear()
        self.backstops.clear()

    def submit(self, frame_id: int, frame: bytes, backstop: float) -> asyncio.Future[dict[str, Any]]:
        assert self.proc.stdin is not None
        if not self.pending:
            self.last_activity = self.clock()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[frame_id] = future
        self.backstops[frame_id] = backstop
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch())
        with contextlib.suppress(ConnectionError, RuntimeError):  # the reader sees EOF and fails or requeues it
            self.proc.stdin.write(frame)
        return future

    async def _watch(self) -> None:
        """While frames are pending: kill a worker silent for ``allowance`` or past a frame's backstop."""
        while self.pending and not self.dead:
            await asyncio.sleep(WATCH_EVERY_S)
            if not self.pending or self.dead or self.timed_out:
                continue
            now = self.clock()
            first = next(iter(self.pending))
            if now - self.last_activity > self.allowance or now > self.backstops.get(first, now + 1):
                self.timed_out = True
                self.on_timeout()
                self.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.write(protocol.encode_frame({"op": "stop"}))
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 2.0)
            except TimeoutError:
                self.kill()
                await self.proc.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class WorkerPool:
    """Runs one function instance's events in isolated worker processes."""

    def __init__(
        self,
        source: FunctionSource,
        settings: Mapping[str, Any] | None = None,
        *,
        limits: Limits | None = None,
        size: int = 1,
        max_in_flight: int = 3,
        mocks: Sequence[Mapping[str, Any]] = (),
        command: Sequence[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        store: StoreBackend | None = None,
    ) -> None:
        self.source = source
        #: The instance's ``store`` (DESIGN §3.5); without one, an in-memory store for this pool's life.
        self.store: StoreBackend = store if store is not None else MemoryStore()
        self._store_bridge = StoreBridge(self.store)
        self.settings = dict(settings or {})
        self.limits = limits or Limits()
        self.size = max(1, size)
        self.max_in_flight = max(1, max_in_flight)
        self.mocks = [dict(m) for m in mocks]
        #: ``None`` until the first JavaScript worker starts (resolving ``node`` may fail: start() raises).
        self.command: list[str] | None = list(command) if command else None
        if self.command is None and source.language != "javascript":
            self.command = python_worker_command()
        self.clock = clock
        self.stats = PoolStats()
        self.handlers: tuple[str, ...] = ()
        #: What the worker's sandbox applied (``landlock_abi`` 0 = Landlock unavailable).
        self.sandbox: dict[str, Any] = {}
        schema = source.schema
        self.settings_problems = validate_values(schema, self.settings) if schema is not None else []
        self._secrets = secret_strings(schema, self.settings) if schema is not None else []
        self._workers: list[_Worker] = []
        self._spawning = 0
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------------
    def check(self) -> StaticInfo:
        """Static check of the source in the parent (raises :class:`FunctionLoadError`).

        JavaScript is only scanned for handler names here: its worker compiles it and reports
        syntax errors and a missing handler when :meth:`start` loads it.
        """
        if self.source.language == "javascript":
            return js_static_info(self.source.code)
        return check_source(self.source.code, self.source.filename)

    async def start(self) -> None:
        """Check and load the function in a first worker; raises :class:`FunctionLoadError`."""
        self.check()
        if not self._workers:
            self._workers.append(await self._spawn())

    async def _spawn(self) -> _Worker:
        self._spawning += 1
        try:
            if self.command is None:
                self.command = await js_worker_command(self.limits.memory_mb)
            workdir = tempfile.mkdtemp(prefix="sluice-fn-")
            command = [workdir if part == WORKDIR_ARG else part for part in self.command]
            try:
                proc = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=WORKER_ENV,
                    cwd="/",
                    start_new_session=True,
                    limit=protocol.MAX_FRAME_BYTES,  # a small reader limit pauses the pipe on every large frame
                )
            except OSError as exc:
                shutil.rmtree(workdir, ignore_errors=True)
                raise WorkerStartError(f"cannot start a function worker ({command[0]}): {exc}") from exc
            _grow_pipes(proc)
            allowance = self.limits.timeout_s + self.limits.grace_s
            worker = _Worker(proc, self.clock, allowance, self._count_timeout, self._store_bridge)
            worker.workdir = workdir
            if self.source.language == "javascript":
                worker.memory_mb = self.limits.memory_mb
            init = {
                "op": "init",
                "code": self.source.code,
                "filename": self.source.filename,
                "settings": self.settings,
                "secrets": self._secrets,
                "limits": self.limits.wire(),
                "mocks": self.mocks,
                "workdir": workdir,
            }
            try:
                handlers = await worker.handshake(init, self.limits.start_timeout_s + self.limits.timeout_s)
            except BaseException:
                worker.remove_workdir()
                raise
            self.handlers = tuple(handlers)
            self.sandbox = worker.sandbox
            if not worker.sandbox.get("landlock_abi"):
                _warn_no_landlock()
            self.stats.started += 1
            return worker
        finally:
            self._spawning -= 1

    async def close(self) -> None:
        self._closed = True
        workers, self._workers = self._workers, []
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        await self._store_bridge.aclose()

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if not w.dead]

    # --- running ------------------------------------------------------------------------------
    async def run_events(self, events: Sequence[Any]) -> list[EventResult]:
        """Each event through its single-event handler; results in input order.

        A result is ``{"status", "event", "error", "logs", "requests", "durationMs"}``.
        """
        return await self._run_chunks(events, encoded=False, decode=True)

    async def run_encoded_events(self, events: Sequence[bytes], *, decode: bool = False) -> list[EventResult]:
        """As :meth:`run_events` for events encoded as JSON bytes (spliced into frames as they are).

        Unless ``decode``, each returned ``event`` stays JSON bytes, ready to send on.
        """
        return await self._run_chunks(events, encoded=True, decode=decode)

    async def _run_chunks(self, events: Sequence[Any], *, encoded: bool, decode: bool) -> list[EventResult]:
        if self.settings_problems:
            return [self._settings_result() for _ in events]
        step = self.limits.frame_max_events
        chunks = [list(events[i : i + step]) for i in range(0, len(events), step)]
        replies: list[dict[str, Any]] = [{} for _ in chunks]
        queue = iter(enumerate(chunks))

        async def lane() -> None:  # a bounded number of frames in flight, whatever the input size
            for index, chunk in queue:
                replies[index] = await self._run_frame("single", chunk, encoded=encoded)

        lanes = min(len(chunks), self.size * self.max_in_flight)
        await asyncio.gather(*(lane() for _ in range(lanes)))
        return [result for reply in replies for result in _materialize(reply, decode)]

    async def run_batch(self, events: Sequence[Any]) -> dict[str, Any]:
        """One ``on_batch`` invocation (each event through its single handler when there is none).

        Returns ``{"status", "error", "results": [{"status", "event", "error"}], "logs", "requests",
        "durationMs"}``; ``status``/``error`` describe the batch invocation as a whole.
        """
        if self.settings_problems:
            results = [self._settings_result() for _ in events]
            batch = {k: v for k, v in results[0].items() if k != "event"} if events else None
        else:
            reply = await self._run_frame("batch", list(events))
            results, batch = _materialize(reply, decode=True), reply.get("batch")
        if batch is None:  # no on_batch: the single handlers ran
            batch = {
                "status": "ok",
                "error": None,
                "logs": [line for r in results for line in r["logs"]],
                "requests": [q for r in results for q in r["requests"]],
                "durationMs": round(sum(r["durationMs"] for r in results), 3),
            }
        else:
            batch = {**batch, "durationMs": round(batch.get("durationMs", 0.0), 3)}
        return {**batch, "results": [self._slot(r) for r in results]}

    @staticmethod
    def _slot(result: EventResult) -> EventResult:
        return {"status": result["status"], "event": result.get("event"), "error": result.get("error")}

    def _settings_result(self) -> EventResult:
        message = "; ".join(self.settings_problems)
        return {
            "status": "invalid_settings",
            "event": None,
            "error": {"type": "InvalidSettings", "message": message},
            "logs": [],
            "requests": [],
            "durationMs": 0.0,
        }

    async def _run_frame(self, mode: str, events: list[Any], *, encoded: bool = False) -> dict[str, Any]:
        frame_id = next(self._ids)
        if encoded:  # splice the events' bytes in as they are: one copy, no re-encoding
            head = b'{"op":"run","id":%d,"mode":"%s","events":[' % (frame_id, mode.encode())
            joined = b",".join(events)
            size = len(head) + len(joined) + 2
            frame = b"".join((protocol.HEADER.pack(size), head, joined, b"]}"))
        else:
            frame = protocol.encode_frame({"op": "run", "id": frame_id, "mode": mode, "events": events})
        while True:
            worker = await self._acquire()
            sent = time.perf_counter()
            # Backstop: even a worker that keeps sending heartbeats must finish its frame.
            backstop = self.clock() + self.limits.timeout_s * max(1, len(events)) + self.limits.grace_s
            future = worker.submit(frame_id, frame, backstop)
            try:
                reply = await future
            except _Requeue:
                continue
            except _FrameFailed as failed:
                error = {"type": failed.type, "message": failed.message}
                result: dict[str, Any] = {
                    "status": failed.status,
                    "event": None,
                    "error": error,
                    "logs": [],
                    "requests": [],
                }
                results = [dict(result, durationMs=0.0) for _ in events]
                batch = dict(result, durationMs=0.0) if mode == "batch" else None
                return {"op": "result", "id": frame_id, "results": results, "batch": batch}
            finally:
                async with self._changed:
                    self._changed.notify_all()
            self.stats.frames += 1
            self.stats.round_trips_ms.append((time.perf_counter() - sent) * 1000.0)
            return reply

    def _count_timeout(self) -> None:
        self.stats.killed_for_timeout += 1

    async def _acquire(self) -> _Worker:
        async with self._changed:
            while True:
                if self._closed:
                    raise PoolClosedError("the function's worker pool is closed")
                self._reap()
                live = [w for w in self._workers if not w.retiring and not w.dead]
                free = [w for w in live if len(w.pending) < self.max_in_flight]
                if free and (min(len(w.pending) for w in free) == 0 or len(live) + self._spawning >= self.size):
                    return min(free, key=lambda w: len(w.pending))
                if len(live) + self._spawning < self.size:
                    break
                await self._changed.wait()
        worker = await self._spawn()
        async with self._changed:
            self._workers.append(worker)
            self._changed.notify_all()
        return worker

    def _reap(self) -> None:
        for worker in list(self._workers):
            if worker.dead or (worker.retiring and not worker.pending):
                self._workers.remove(worker)
                if worker.retiring:
                    self.stats.recycled += 1
                elif not worker.timed_out:
                    self.stats.crashed += 1
