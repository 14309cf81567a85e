"""The Python function worker: ``python -I -m sluice.functions.child_py``.

Speaks the frame protocol (:mod:`sluice.functions.protocol`) on its stdin/stdout pipes. It
imports nothing from catalog, queue or config. Between frames it blocks on the pipe; while a
frame runs, an asyncio loop overlaps the I/O of async handlers, a heartbeat tells the parent it
still yields, and ``SIGALRM`` interrupts a handler that keeps the loop busy past the limit.
"""

from __future__ import annotations

import asyncio
import builtins
import contextvars
import gc
import logging
import os
import signal
import sys
import tempfile
import time
import types
from collections.abc import Callable, Generator
from typing import Any

import orjson

from sluice import fn
from sluice.errors import FunctionLoadError
from sluice.functions import protocol, sandbox
from sluice.functions.batching import BatchShapeError, pair_batch
from sluice.functions.channel import Channel
from sluice.functions.loader import HANDLER_TYPES, camel_name, check_source, snake_name
from sluice.functions.services import CapturedStream, CaptureHandler, Invocation, RuntimeServices, current
from sluice.functions.settings import redact

HEARTBEAT_EVERY_S = 0.5
TICK_S = 0.1
YIELD_EVERY_S = 0.05
GC_YOUNG_THRESHOLD = 20_000


class StallTimeout(BaseException):
    """Raised by SIGALRM inside code that kept the event loop busy past the time limit."""


def _on_alarm(signum: int, frame: object) -> None:
    raise StallTimeout()


class _Resume:
    """Continue a coroutine that already ran its first step outside a task."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # thrown in by the task (cancellation)
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class _Suspended:
    """A handler coroutine that awaited during its first step."""

    __slots__ = ("coro", "first", "inv", "started")

    def __init__(self, coro: Any, first: Any, inv: Invocation, started: float) -> None:
        self.coro, self.first, self.inv, self.started = coro, first, inv, started


class _Singles:
    """One micro-batch through the single-event handlers.

    Handlers run inline, one after another, inside one task. When a handler suspends (it
    awaits I/O), the *rest of the events* move to a new task and the current task finishes that
    handler — so each handler starts and ends in the same task (libraries such as anyio rely on
    it) and a micro-batch of handlers that never await costs no task at all. (A class, not a
    closure: a closure that schedules itself is a reference cycle that would keep every frame's
    events alive until the garbage collector runs.)
    """

    __slots__ = ("events", "results", "runner", "tasks", "waiting")

    def __init__(self, runner: FunctionRunner, events: list[Any]) -> None:
        self.runner = runner
        self.events = events
        self.results: list[Any] = [None] * len(events)
        self.tasks: list[asyncio.Task[None]] = []
        #: task → (index of the event it is finishing, when to abandon it)
        self.waiting: dict[asyncio.Task[None], tuple[int, float]] = {}

    async def process(self, start: int) -> None:
        runner, events, results = self.runner, self.events, self.results
        settings = runner.settings
        handler_for = runner.event_handlers.get
        begin = runner._begin
        clock = time.perf_counter
        last_yield = clock()
        for i in range(start, len(events)):
            event = events[i]
            kind = event.get("type") if type(event) is dict else None
            handler = handler_for(kind) if type(kind) is str else None
            if handler is None:
                results[i] = runner._unsupported(event, kind)
                continue
            out = begin(handler, event, settings.copy(), False)
            if type(out) is _Suspended:
                loop = asyncio.get_running_loop()
                if i + 1 < len(events):
                    self.tasks.append(loop.create_task(self.process(i + 1), context=contextvars.Context()))
                task = asyncio.current_task()
                assert task is not None
                self.waiting[task] = (i, loop.time() + runner.timeout_s + 0.5)
                results[i] = await runner._finish(out, batch=False)
                return
            results[i] = out
            if clock() - last_yield > YIELD_EVERY_S:  # let the heartbeat and I/O run
                await asyncio.sleep(0)
                last_yield = clock()


def _err(type_: str, message: str) -> dict[str, str]:
    return {"type": type_, "message": message}


class FunctionRunner:
    """Runs one loaded function's handlers on micro-batches."""

    def __init__(self, init: dict[str, Any], write: Callable[[bytes], None]) -> None:
        limits = init.get("limits") or {}
        self.timeout_s = float(limits.get("timeoutMs", 5000)) / 1000.0
        self.max_event_bytes = int(limits.get("maxOutputBytes", 64 * 1024))
        self.memory_mb = int(limits.get("memoryMb", 256))
        self.settings: dict[str, Any] = init.get("settings") or {}
        self.secrets: list[str] = list(init.get("secrets") or [])
        self.filename = str(init.get("filename") or "function.py")
        self.write = write
        self.services = RuntimeServices(
            secrets=self.secrets, mocks=init.get("mocks") or [], default_timeout_s=self.timeout_s
        )
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.event_handlers: dict[str, Callable[..., Any]] = {}
        self.recycle = False
        self._busy = False
        self._last_hb = 0.0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._stdout = CapturedStream(self.services.load_logs)

    # --- loading -------------------------------------------------------------------------
    def load(self, source: str) -> list[str]:
        check_source(source, self.filename)
        fn._install(self.services)
        sys.stdout = self._stdout
        sys.stderr = self._stdout
        root = logging.getLogger()
        root.handlers[:] = [CaptureHandler(self.services.load_logs)]
        root.setLevel(logging.INFO)
        for noisy in ("httpx", "httpcore", "asyncio"):  # the runtime's own libraries are not the user's logs
            logging.getLogger(noisy).setLevel(logging.WARNING)
        module = types.ModuleType("sluice_function")
        module.__file__ = self.filename
        namespace = module.__dict__
        namespace["__builtins__"] = builtins
        for cls in (*fn.ERROR_CLASSES, fn.FetchError):
            namespace[cls.__name__] = cls
        namespace["StoreError"] = fn.StoreError
        namespace.update(fetch=fn.fetch, cache=fn.cache, store=fn.store, log=fn.log)
        sys.modules["sluice_function"] = module
        code = compile(source, self.filename, "exec")
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        try:
            exec(code, namespace)
        except StallTimeout:
            raise FunctionLoadError(
                f"loading the function took longer than the {self.timeout_s:g} s limit", filename=self.filename
            ) from None
        except BaseException as exc:
            line = _user_line(exc, self.filename)
            raise FunctionLoadError(
                f"error while loading the function: {type(exc).__name__}: {self._safe(exc)}",
                line=line,
                filename=self.filename,
            ) from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for kind in HANDLER_TYPES:
            handler = namespace.get(snake_name(kind)) or namespace.get(camel_name(kind))
            if callable(handler):
                self.handlers[kind] = handler
        if not self.handlers:
            raise FunctionLoadError("no callable handler defined", filename=self.filename)
        self.event_handlers = {k: h for k, h in self.handlers.items() if k != "batch"}
        return [k for k in HANDLER_TYPES if k in self.handlers]

    def _safe(self, exc: BaseException) -> str:
        return redact(str(exc), self.secrets)

    def _safe_text(self, text: str) -> str:
        return redact(text, self.secrets)

    # --- the loop ------------------------------------------------------------------------
    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._busy:
            return
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        now = time.monotonic()
        if now - self._last_hb >= HEARTBEAT_EVERY_S:
            self._last_hb = now
            self.write(protocol.encode_frame({"op": "hb"}))
        self._tick_handle = loop.call_later(TICK_S, self._tick, loop)

    async def run_frame(self, message: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self._busy = True
        self._last_hb = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        self._tick_handle = loop.call_later(TICK_S, self._tick, loop)
        try:
            events = message.get("events") or []
            if message.get("mode") == "batch":
                batch, results = await self._run_batch(events)
            else:
                batch, results = None, await self._run_singles(events)
        finally:
            self._busy = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            if self._tick_handle is not None:
                self._tick_handle.cancel()
        return {"op": "result", "id": message.get("id"), "results": results, "batch": batch, "recycle": self.recycle}

    async def _run_singles(self, events: list[Any]) -> list[dict[str, Any]]:
        """Run each event's handler; handlers that await overlap on the loop (see :class:`_Singles`)."""
        run = _Singles(self, events)
        run.tasks.append(asyncio.get_running_loop().create_task(run.process(0), context=contextvars.Context()))
        await self._await_all(run.tasks, run.waiting, run.results)
        return run.results

    async def _await_all(
        self,
        tasks: list[asyncio.Task[None]],
        waiting: dict[asyncio.Task[None], tuple[int, float]],
        results: list[Any],
    ) -> None:
        """Wait for every task; one whose handler ignores its cancellation is abandoned."""
        loop = asyncio.get_running_loop()
        abandoned: set[asyncio.Task[None]] = set()
        while True:
            open_tasks = [t for t in tasks if not t.done() and t not in abandoned]
            if not open_tasks:
                break
            now = loop.time()
            # Tasks not yet suspended get looked at again soon: they may suspend and overrun.
            horizons = [waiting[t][1] - now if t in waiting else TICK_S for t in open_tasks]
            timeout = max(0.0, min(horizons))
            await asyncio.wait(open_tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            now = loop.time()
            for task in open_tasks:
                if task.done() or task not in waiting or waiting[task][1] > now:
                    continue
                task.cancel()
                abandoned.add(task)
                index = waiting.pop(task)[0]
                self.recycle = True  # the abandoned task may still run: replace this worker after the frame
                message = f"the function ran past the {self.timeout_s:g} s time limit and ignored cancellation"
                results[index] = self._result("timeout", None, _err("Timeout", message), Invocation(), 0.0)
                results[index]["durationMs"] = self.timeout_s * 1000
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _unsupported(self, event: Any, kind: object) -> dict[str, Any]:
        what = f"on_{kind}" if isinstance(kind, str) else "a handler (the event has no type)"
        if not isinstance(event, dict):
            what = "a handler (the event is not a JSON object)"
        error = _err("EventNotSupported", f"the function defines no {what}")
        return self._result("unsupported_event_type", None, error, Invocation(), 0.0)

    async def _run_batch(self, events: list[Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        handler = self.handlers.get("batch")
        if handler is None:
            return None, await self._run_singles(events)
        loop = asyncio.get_running_loop()
        box: list[Any] = [None]

        async def invoke() -> None:
            out = self._begin(handler, events, dict(self.settings), True)
            if isinstance(out, _Suspended):
                task = asyncio.current_task()
                assert task is not None
                waiting[task] = (0, loop.time() + self.timeout_s + 0.5)
                out = await self._finish(out, batch=True)
            box[0] = out

        waiting: dict[asyncio.Task[None], tuple[int, float]] = {}
        await self._await_all([loop.create_task(invoke(), context=contextvars.Context())], waiting, box)
        result = box[0]
        batch = {
            "status": result["status"],
            "error": result.get("error"),
            "logs": result.get("logs", []),
            "requests": result.get("requests", []),
            "durationMs": result["durationMs"],
        }
        if result["status"] != "ok":
            return batch, [{"status": result["status"], "event": None, "error": result.get("error")} for _ in events]
        try:
            slots = pair_batch(events, result["event"])
        except BatchShapeError as exc:
            error = _err("BatchShapeError", str(exc))
            batch.update(status="bad_request", error=error)
            return batch, [{"status": "bad_request", "event": None, "error": error} for _ in events]
        results = [
            {"status": s, "event": e, "error": _err(err["type"], self._safe_text(err["message"])) if err else None}
            for s, e, err in slots
        ]
        return batch, results

    # --- one invocation --------------------------------------------------------------------
    def _begin(
        self, handler: Callable[..., Any], payload: Any, settings: Any, batch: bool
    ) -> dict[str, Any] | _Suspended:
        """Run a handler up to its first suspension; return its result, or where it suspended."""
        inv = Invocation()
        token = current.set(inv)
        started = time.perf_counter()
        try:
            value = handler(payload, settings)
            if type(value) is types.CoroutineType:
                try:
                    first = value.send(None)
                except StopIteration as stop:
                    value = stop.value
                else:
                    return _Suspended(value, first, inv, started)
            if type(value) is dict and not inv.logs and not inv.requests and not self._stdout.pending:
                # the common case, without the general bookkeeping of _complete
                return {"status": "ok", "event": value, "durationMs": (time.perf_counter() - started) * 1000}
            return self._complete(value, None, inv, started, batch)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            return self._complete(None, exc, inv, started, batch)
        finally:
            current.reset(token)

    async def _finish(self, suspended: _Suspended, batch: bool) -> dict[str, Any]:
        inv, started = suspended.inv, suspended.started
        token = current.set(inv)
        deadline = asyncio.get_running_loop().time() + self.timeout_s - (time.perf_counter() - started)
        try:
            async with asyncio.timeout_at(deadline):
                value = await _Resume(suspended.coro, suspended.first)
        except BaseException as exc:
            return self._complete(None, exc, inv, started, batch)
        finally:
            current.reset(token)
        return self._complete(value, None, inv, started, batch)

    def _complete(
        self, value: Any, exc: BaseException | None, inv: Invocation, started: float, batch: bool
    ) -> dict[str, Any]:
        if self._stdout.pending:
            self._stdout.flush_invocation(inv)
        duration = (time.perf_counter() - started) * 1000.0
        if exc is None:
            if value is None:
                return self._result("filtered", None, None, inv, duration)
            if isinstance(value, dict) or (batch and isinstance(value, list | tuple)):
                return self._result("ok", value, None, inv, duration)
            error = _err("TypeError", f"handler returned {type(value).__name__}; return the event (a dict) or None")
            return self._result("bad_request", None, error, inv, duration)
        if isinstance(exc, fn.FunctionError):
            return self._result(exc.status, None, _err(type(exc).__name__, self._safe(exc)), inv, duration)
        if isinstance(exc, StallTimeout | TimeoutError):
            message = f"the function ran past the {self.timeout_s:g} s time limit"
            return self._result("timeout", None, _err("Timeout", message), inv, duration)
        if isinstance(exc, MemoryError):
            self.recycle = True
            message = f"the function ran out of memory (limit {self.memory_mb} MiB)"
            return self._result("bad_request", None, _err("MemoryError", message), inv, duration)
        line = _user_line(exc, self.filename)
        where = f" (line {line})" if line else ""
        error = _err(type(exc).__name__, self._safe(exc) + where)
        return self._result("bad_request", None, error, inv, duration)

    def _result(
        self, status: str, event: Any, error: dict[str, str] | None, inv: Invocation, duration: float
    ) -> dict[str, Any]:
        result: dict[str, Any] = {"status": status, "event": event, "durationMs": duration}
        if error is not None:
            result["error"] = error
        if inv.logs:
            result["logs"] = [redact(line, self.secrets) for line in inv.logs] if self.secrets else inv.logs
        if inv.requests:
            result["requests"] = inv.requests
        return result

    def encode_reply(self, reply: dict[str, Any]) -> bytes:
        """Two frames: the results' metadata as JSON, then the returned events as one JSON array.

        Each ok result carries ``at: [offset, length]`` into the array, so the parent can hand
        an event's bytes on (to a destination) without decoding it. Encoding each event here
        is also where a returned event that is not JSON or is over the size limit is refused.
        """
        parts: list[bytes] = []
        offset = 1
        for result in reply["results"]:
            event = result.pop("event", None)
            if result["status"] != "ok":
                continue
            try:
                data = orjson.dumps(event)
            except (TypeError, orjson.JSONEncodeError) as exc:
                result.update(status="bad_request", error=_err("TypeError", f"returned event is not JSON: {exc}"))
                continue
            if len(data) > self.max_event_bytes:
                message = f"returned event is {len(data)} bytes, over the {self.max_event_bytes} byte limit"
                result.update(status="bad_request", error=_err("OutputTooLarge", message))
                continue
            result["at"] = (offset, len(data))
            parts.append(data)
            offset += len(data) + 1
        payload = b"[" + b",".join(parts) + b"]"
        reply["payloadBytes"] = len(payload)
        return protocol.encode_frame(reply) + protocol.encode_body_frame(payload)


def _user_line(exc: BaseException, filename: str) -> int | None:
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        return exc.lineno
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def main() -> None:
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # stray writes to fd 1 must never corrupt the protocol pipe

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(proto_out, view) :]

    channel = Channel(proto_in, write)
    init = channel.receive()
    if init is None or init.get("op") != "init":
        sys.exit(3)
    workdir = str(init.get("workdir") or "") or tempfile.mkdtemp(prefix="sluice-fn-")
    os.chdir(workdir)
    signal.signal(signal.SIGALRM, _on_alarm)
    runner = FunctionRunner(init, write)
    runner.services.store_transport = channel.request
    applied = sandbox.isolate(runner.memory_mb, workdir)
    try:
        handlers = runner.load(str(init.get("code") or ""))
    except FunctionLoadError as exc:
        error = exc.to_wire()
        error["message"] = redact(str(error["message"]), runner.secrets)
        write(protocol.encode_frame({"op": "load_error", "error": error}))
        return
    gc.collect()
    gc.freeze()  # what loading created is long-lived: keep it out of every later collection
    # A micro-batch allocates thousands of short-lived, acyclic objects that reference counting
    # frees at the end of the frame: collecting every 700 allocations only adds tail latency.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)
    write(protocol.encode_frame({"op": "ready", "handlers": handlers, "pid": os.getpid(), "sandbox": applied}))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    while True:
        message = channel.receive()
        if message is None or message.get("op") == "stop":
            break
        if message.get("op") == "run":
            reply = loop.run_until_complete(runner.run_frame(message))
            write(runner.encode_reply(reply))
            if runner.recycle:
                break
    loop.run_until_complete(runner.services.aclose())


if __name__ == "__main__":
    main()
