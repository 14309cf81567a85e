"""Worker-side services behind ``sluice.fn``: captured logs, traced ``fetch``, ``cache`` and ``store``.

Runs only inside a worker process. Per-invocation state (logs, traced requests) lives in an
:class:`Invocation` reached through a context variable, so handlers of one micro-batch that
overlap on the event loop each keep their own logs.
"""

from __future__ import annotations

import asyncio
import contextvars
import fnmatch
import inspect
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from sluice.fn import FetchError, StoreError
from sluice.functions.settings import REDACTED, redact

LOG_LIMIT_BYTES = 4096
BODY_LIMIT_BYTES = 2048
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token"}
)


class Invocation:
    """Logs and requests of one handler call."""

    __slots__ = ("log_bytes", "logs", "requests", "truncated")

    def __init__(self) -> None:
        self.logs: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.log_bytes = 0
        self.truncated = False

    def add_log(self, line: str) -> None:
        if self.truncated:
            return
        size = len(line.encode("utf-8", "replace")) + 1
        if self.log_bytes + size > LOG_LIMIT_BYTES:
            room = LOG_LIMIT_BYTES - self.log_bytes
            if room > 0:
                self.logs.append(line.encode("utf-8", "replace")[:room].decode("utf-8", "ignore"))
            self.logs.append("… (logs truncated at 4 KB)")
            self.truncated = True
            return
        self.log_bytes += size
        self.logs.append(line)


current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("sluice_invocation", default=None)


class CapturedStream(io.TextIOBase):
    """Replaces ``sys.stdout``/``sys.stderr``: each complete line goes to the current invocation."""

    def __init__(self, fallback: Invocation) -> None:
        self._fallback = fallback
        self._partial: dict[int, str] = {}

    @property
    def pending(self) -> bool:
        """Is any invocation's last line still unterminated?"""
        return bool(self._partial)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        inv = current.get() or self._fallback
        key = id(inv)
        buf = self._partial.get(key, "") + text
        *lines, rest = buf.split("\n")
        for line in lines:
            inv.add_log(line)
        if rest:
            self._partial[key] = rest
        else:
            self._partial.pop(key, None)
        return len(text)

    def flush_invocation(self, inv: Invocation) -> None:
        rest = self._partial.pop(id(inv), None)
        if rest:
            inv.add_log(rest)


class CaptureHandler(logging.Handler):
    def __init__(self, fallback: Invocation) -> None:
        super().__init__(logging.DEBUG)
        self._fallback = fallback
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            (current.get() or self._fallback).add_log(self.format(record))
        except Exception:  # pragma: no cover - logging must never break a handler
            self.handleError(record)


class Response:
    """What ``await fetch(...)`` returns (node-fetch-like)."""

    def __init__(self, status: int, headers: dict[str, str], content: bytes, url: str) -> None:
        self.status = status
        self.status_code = status
        self.ok = 200 <= status < 300
        self.headers = headers
        self.url = url
        self.content = content

    async def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    async def json(self) -> Any:
        return orjson.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"


def _truncate(body: bytes | str | None) -> str | None:
    if body is None:
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if len(text) > BODY_LIMIT_BYTES:
        return text[:BODY_LIMIT_BYTES] + f"… ({len(text)} characters, truncated)"
    return text


class RuntimeServices:
    """Implements :class:`sluice.fn.Services` inside a worker."""

    def __init__(
        self,
        *,
        secrets: Sequence[str] = (),
        mocks: Sequence[dict[str, Any]] = (),
        default_timeout_s: float = 5.0,
        cache_max_entries: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secrets = list(secrets)
        self.mocks = list(mocks)
        self.default_timeout_s = default_timeout_s
        self.clock = clock
        self._client: Any = None
        self._cache: OrderedDict[str, tuple[float | None, Any]] = OrderedDict()
        self._cache_max = cache_max_entries
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self.load_logs = Invocation()
        #: Sends a ``store`` request to the parent and gives its ``store_result`` (set by the worker).
        self.store_transport: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None

    # --- logs ----------------------------------------------------------------------------
    def log(self, level: str, message: str) -> None:
        (current.get() or self.load_logs).add_log(f"{level}: {message}")

    # --- cache ---------------------------------------------------------------------------
    async def cache_load(self, key: str, ttl_ms: int | None, loader: Callable[[], Any]) -> Any:
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None and (hit[0] is None or hit[0] > now):
            self._cache.move_to_end(key)
            return hit[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = loader()
            if inspect.isawaitable(value):
                value = await value
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._loading.pop(key, None)
        future.set_result(value)
        expires = None if ttl_ms is None or ttl_ms < 0 else self.clock() + ttl_ms / 1000.0
        self._cache[key] = (expires, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return value

    def cache_delete(self, key: str) -> None:
        self._cache.pop(key, None)

    # --- store ---------------------------------------------------------------------------
    async def _store(self, request: dict[str, Any]) -> str | None:
        if not isinstance(request["key"], str):
            raise TypeError(f"store keys are strings, got {type(request['key']).__name__}")
        if self.store_transport is None:
            raise StoreError("store is not available here (it works while a handler runs)")
        reply = await self.store_transport(request)
        error = reply.get("error")
        if error:
            raise StoreError(str(error.get("message") or "the store call failed"))
        value = reply.get("value")
        return value if isinstance(value, str) else None

    async def store_get(self, key: str, default: Any) -> Any:
        text = await self._store({"action": "get", "key": key})
        return default if text is None else orjson.loads(text)

    async def store_set(self, key: str, value: Any, ttl_ms: int | None) -> None:
        if ttl_ms is not None and (not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool)):
            raise TypeError(f"ttl_ms is a whole number of milliseconds or None, got {type(ttl_ms).__name__}")
        try:
            text = orjson.dumps(value).decode("utf-8")
        except TypeError as exc:  # orjson: "Type is not JSON serializable: set"
            raise TypeError(f"store values must be JSON-serializable: {exc}") from None
        await self._store({"action": "set", "key": key, "value": text, "ttlMs": ttl_ms})

    async def store_delete(self, key: str) -> None:
        await self._store({"action": "delete", "key": key})

    # --- fetch ---------------------------------------------------------------------------
    def _redact_headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {
            k: (REDACTED if k.lower() in SENSITIVE_HEADERS else redact(v, self.secrets)) for k, v in headers.items()
        }

    def _trace(self, record: dict[str, Any]) -> None:
        inv = current.get()
        if inv is None:
            return
        for key in ("url", "requestBody", "responseBody", "error"):
            if isinstance(record.get(key), str):
                record[key] = redact(record[key], self.secrets)
        for key in ("requestHeaders", "responseHeaders"):
            record[key] = self._redact_headers(record.get(key) or {})
        inv.requests.append(record)

    def _mock_for(self, method: str, url: str) -> dict[str, Any] | None:
        for mock in self.mocks:
            want = str(mock.get("method") or "*").upper()
            if want not in ("*", method):
                continue
            pattern = str(mock.get("url", "*"))
            if url == pattern or fnmatch.fnmatchcase(url, pattern):
                return mock
        return None

    async def fetch(self, url: str, init: dict[str, Any] | None = None, **options: Any) -> Response:
        opts = {**(init or {}), **options}
        unknown = set(opts) - {"method", "headers", "body", "json", "timeout"}
        if unknown:
            raise TypeError(f"fetch() got unexpected option(s): {', '.join(sorted(unknown))}")
        method = str(opts.get("method") or "GET").upper()
        headers = {str(k): str(v) for k, v in (opts.get("headers") or {}).items()}
        body: bytes | None = None
        if opts.get("json") is not None:
            body = orjson.dumps(opts["json"])
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        elif opts.get("body") is not None:
            raw = opts["body"]
            if isinstance(raw, dict | list):  # a Python user's natural mistake: send it as JSON, not repr()
                body = orjson.dumps(raw)
                if not any(k.lower() == "content-type" for k in headers):
                    headers["Content-Type"] = "application/json"
            else:
                body = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
        timeout = float(opts.get("timeout") or self.default_timeout_s)
        record: dict[str, Any] = {
            "method": method,
            "url": url,
            "requestHeaders": headers,
            "requestBody": _truncate(body),
            "status": None,
            "responseHeaders": {},
            "responseBody": None,
            "durationMs": 0.0,
        }
        started = time.perf_counter()
        try:
            mock = self._mock_for(method, url)
            if mock is not None:
                response = self._mock_response(mock, url)
            else:
                response = await self._send(method, url, headers, body, timeout)
        except FetchError as exc:
            record["error"] = str(exc)
            record["durationMs"] = round((time.perf_counter() - started) * 1000, 3)
            self._trace(record)
            raise
        record["durationMs"] = round((time.perf_counter() - started) * 1000, 3)
        record["status"] = response.status
        record["responseHeaders"] = dict(response.headers)
        record["responseBody"] = _truncate(response.content)
        self._trace(record)
        return response

    def _mock_response(self, mock: dict[str, Any], url: str) -> Response:
        if mock.get("error"):
            raise FetchError(str(mock["error"]))
        headers = {str(k): str(v) for k, v in (mock.get("headers") or {}).items()}
        if "json" in mock:
            content = orjson.dumps(mock["json"])
            headers.setdefault("content-type", "application/json")
        else:
            raw = mock.get("body", "")
            content = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
        return Response(int(mock.get("status", 200)), headers, content, url)

    async def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
    ) -> Response:
        import httpx  # imported on first use: keeps idle workers small

        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=True,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                trust_env=False,
            )
        try:
            resp = await self._client.request(method, url, headers=headers, content=body, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise FetchError(f"request to {url} timed out after {timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"request to {url} failed: {type(exc).__name__}: {exc}") from exc
        return Response(resp.status_code, dict(resp.headers), resp.content, str(resp.url))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
