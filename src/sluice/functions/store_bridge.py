"""Parent side of a function's ``store`` (DESIGN §3.5): the backend seam and the pipe bridge.

A worker never touches the catalog database: while a frame runs, its ``store.get/set/delete``
calls travel over the pipe as ``{"op": "store", "rid", "action", "key", "value", "ttlMs"}``
frames (see :mod:`sluice.functions.protocol`). The pool hands each one to a
:class:`StoreBridge`, which calls the pool's :class:`StoreBackend` — bound to one function
instance, so a worker can only ever reach its own instance's keys — and answers with
``{"op": "store_result", "rid", "value"}`` or ``{"op": "store_result", "rid", "error"}``.

Values travel and are stored as JSON text (the worker encodes and decodes them); ``None``
for ``value`` in a reply means the key is absent (a stored JSON ``null`` is the text ``"null"``).

Backends: :class:`MemoryStore` (what a pool uses when none is given: ``sluice fn test``,
:func:`sluice.testing.run_function`, API previews — nothing is persisted) and the catalog's
:class:`sluice.catalog.store.InstanceStore` (the delivery pipeline). Both apply the same limits,
checked here.

This module imports nothing from the catalog, the queue or the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Final, Protocol

import orjson

from sluice.errors import StoreLimitError
from sluice.functions import protocol

__all__ = [
    "MAX_KEYS",
    "MAX_KEY_CHARS",
    "MAX_VALUE_BYTES",
    "MemoryStore",
    "StoreBackend",
    "StoreBridge",
    "StoreProvider",
    "check_key",
    "check_value",
]

log = logging.getLogger("sluice.functions")

#: Longest key, in characters.
MAX_KEY_CHARS: Final = 256
#: Largest value, as UTF-8 encoded JSON.
MAX_VALUE_BYTES: Final = 64 * 1024
#: Most (unexpired) keys one function instance may hold.
MAX_KEYS: Final = 10_000


class StoreBackend(Protocol):
    """One function instance's key-value store. Values are JSON text; ``get`` gives ``None`` when
    the key is absent or expired. Raises :class:`StoreLimitError` when a limit is broken."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_ms: int | None) -> None: ...

    async def delete(self, key: str) -> None: ...


#: Gives the store of a function instance, by instance id (what the pipeline is configured with).
StoreProvider = Callable[[str], StoreBackend]


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise StoreLimitError(f"store keys are non-empty strings, got {type(key).__name__}")
    if len(key) > MAX_KEY_CHARS:
        raise StoreLimitError(f"store key is {len(key)} characters, over the {MAX_KEY_CHARS} character limit")
    return key


def check_value(value: object) -> str:
    if not isinstance(value, str):
        raise StoreLimitError(f"store values travel as JSON text, got {type(value).__name__}")
    size = len(value.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise StoreLimitError(f"store value is {size} bytes as JSON, over the {MAX_VALUE_BYTES} byte limit")
    return value


def too_many_keys(count: int, limit: int = MAX_KEYS) -> StoreLimitError:
    return StoreLimitError(f"the function instance already holds {count} store keys, the limit is {limit} keys")


def expiry(now: float, ttl_ms: int | None) -> float | None:
    """When a value set at ``now`` with ``ttl_ms`` expires (``None`` or negative: never)."""
    return None if ttl_ms is None or ttl_ms < 0 else now + ttl_ms / 1000.0


class MemoryStore:
    """An in-memory :class:`StoreBackend` for one run (tests, ``fn test``, previews).

    ``data`` (optional) is a plain dict of decoded values: pass one to seed the store and to
    look at it afterwards. ``clock`` gives seconds (monotonic by default) for TTLs.
    """

    def __init__(
        self,
        data: MutableMapping[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.data: MutableMapping[str, Any] = data if data is not None else {}
        self.clock = clock
        self.max_keys = max_keys
        self._expires: dict[str, float] = {}

    def _live(self, key: str) -> bool:
        if key not in self.data:
            return False
        when = self._expires.get(key)
        if when is not None and when <= self.clock():
            self.data.pop(key, None)
            self._expires.pop(key, None)
            return False
        return True

    async def get(self, key: str) -> str | None:
        check_key(key)
        return orjson.dumps(self.data[key]).decode("utf-8") if self._live(key) else None

    async def set(self, key: str, value: str, ttl_ms: int | None) -> None:
        check_key(key)
        check_value(value)
        if not self._live(key) and len(self.data) >= self.max_keys:
            for other in list(self.data):
                self._live(other)  # purge the expired ones first
            if len(self.data) >= self.max_keys:
                raise too_many_keys(len(self.data), self.max_keys)
        self.data[key] = orjson.loads(value)
        when = expiry(self.clock(), ttl_ms)
        if when is None:
            self._expires.pop(key, None)
        else:
            self._expires[key] = when

    async def delete(self, key: str) -> None:
        check_key(key)
        self.data.pop(key, None)
        self._expires.pop(key, None)


def _error(type_: str, message: str) -> dict[str, str]:
    return {"type": type_, "message": message}


class StoreBridge:
    """Answers a pool's workers' ``store`` frames from one backend, each in its own task."""

    def __init__(self, backend: StoreBackend) -> None:
        self.backend = backend
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, message: dict[str, Any], reply: Callable[[bytes], None]) -> None:
        """Start answering ``message``; ``reply`` writes the answer frame to that worker."""
        task = asyncio.get_running_loop().create_task(self._answer(message, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: dict[str, Any], reply: Callable[[bytes], None]) -> None:
        rid = message.get("rid")
        try:
            out: dict[str, Any] = {"op": "store_result", "rid": rid, "value": await self._apply(message)}
        except StoreLimitError as exc:
            out = {"op": "store_result", "rid": rid, "error": _error("StoreLimitError", str(exc))}
        except Exception as exc:
            log.warning("function store %s failed: %s: %s", message.get("action"), type(exc).__name__, exc)
            text = (
                f"the function store is unavailable ({type(exc).__name__}); catch StoreError, raise RetryError to retry"
            )
            out = {"op": "store_result", "rid": rid, "error": _error("StoreUnavailable", text)}
        with contextlib.suppress(Exception):  # the worker may be gone: its frame fails on its own
            reply(protocol.encode_frame(out))

    async def _apply(self, message: dict[str, Any]) -> str | None:
        action = message.get("action")
        key = check_key(message.get("key"))
        if action == "get":
            return await self.backend.get(key)
        if action == "set":
            ttl = message.get("ttlMs")
            if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool)):
                raise StoreLimitError(f"ttl_ms is a whole number of milliseconds or None, got {type(ttl).__name__}")
            await self.backend.set(key, check_value(message.get("value")), ttl)
            return None
        if action == "delete":
            await self.backend.delete(key)
            return None
        raise StoreLimitError(f"unknown store action {action!r}")

    async def aclose(self) -> None:
        """Wait for the answers under way (their workers are gone: nothing is written)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
