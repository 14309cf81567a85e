"""What a sluice function imports: ``from sluice.fn import DropEvent, RetryError, fetch, cache, store, log``.

The five error classes are Segment's. Raise one to give the event its outcome (DESIGN §3.3);
in an ``on_batch`` result list an *instance* (not raised) at a position gives just that event
the outcome. The same names are pre-bound as globals in every function, so code ported from
Segment runs unchanged.

``fetch``, ``cache``, ``store`` and ``log`` are bound to the worker process's services when
sluice runs the function; they only work inside a function run by sluice (``sluice fn test``,
:func:`sluice.testing.run_function`, a deployed instance). ``store`` is Python-only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol


class FunctionError(Exception):
    """Base of the errors a function raises to choose an event's outcome."""

    status: ClassVar[str] = "bad_request"

    def __init__(self, message: str = "", *details: object) -> None:
        super().__init__(message, *details)
        self.message = message

    def __str__(self) -> str:
        return self.message


class EventNotSupported(FunctionError):
    """The function does not handle this event (outcome ``unsupported_event_type``)."""

    status = "unsupported_event_type"


class InvalidEventPayload(FunctionError):
    """The event is malformed for this destination (outcome ``message_rejected``)."""

    status = "message_rejected"


class ValidationError(FunctionError):
    """The event failed the function's validation (outcome ``message_rejected``)."""

    status = "message_rejected"


class RetryError(FunctionError):
    """A temporary failure: the event is retried with backoff (outcome ``retry``)."""

    status = "retry"


class DropEvent(FunctionError):
    """Do not forward the event (outcome ``dropped``, never retried)."""

    status = "dropped"


class FetchError(Exception):
    """``fetch`` got no response (connection refused, DNS failure, timeout …).

    Not an outcome by itself: uncaught it is a ``bad_request``; catch it and raise
    :class:`RetryError` to have the event retried.
    """


class StoreError(Exception):
    """A ``store`` call failed: a limit was broken (key over 256 characters, value over 64 KB as
    JSON, more than 10,000 keys) or the store is unavailable. The message says which.

    Not an outcome by itself: uncaught it is a ``bad_request``; catch it and raise
    :class:`RetryError` to have the event retried.
    """


ERROR_CLASSES: tuple[type[FunctionError], ...] = (
    EventNotSupported,
    InvalidEventPayload,
    ValidationError,
    RetryError,
    DropEvent,
)


class Services(Protocol):
    """What the worker installs behind the proxies below."""

    async def fetch(self, url: str, init: dict[str, Any] | None = None, **options: Any) -> Any: ...

    async def cache_load(self, key: str, ttl_ms: int | None, loader: Callable[[], Any]) -> Any: ...

    def cache_delete(self, key: str) -> None: ...

    async def store_get(self, key: str, default: Any) -> Any: ...

    async def store_set(self, key: str, value: Any, ttl_ms: int | None) -> None: ...

    async def store_delete(self, key: str) -> None: ...

    def log(self, level: str, message: str) -> None: ...


class _Unbound:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(
            "sluice.fn services only work inside a function run by sluice "
            "(sluice fn test, sluice.testing.run_function, or a deployed instance)"
        )


_services: Any = _Unbound()


def _install(services: Services) -> None:
    """Called once by the worker process before it loads user code."""
    global _services
    _services = services


async def fetch(url: str, init: dict[str, Any] | None = None, **options: Any) -> Any:
    """HTTP request, traced. ``fetch(url, method=..., headers=..., json=... | body=..., timeout=...)``.

    A Segment-style ``fetch(url, {"method": "POST", "body": ...})`` options dict works too.
    Returns a response with ``status``, ``ok``, ``headers``, ``await .json()`` and ``await .text()``.
    """
    return await _services.fetch(url, init, **options)


class _Cache:
    """Process-local cache (Segment's ``cache``): may be empty at any time."""

    async def load(self, key: str, ttl: int | None = None, fn: Callable[[], Awaitable[Any] | Any] | None = None) -> Any:
        if fn is None:
            raise TypeError("cache.load(key, ttl_ms, fn) needs a loader function")
        return await _services.cache_load(key, ttl, fn)

    def delete(self, key: str) -> None:
        _services.cache_delete(key)


class _Store:
    """Persistent key-value store of the function instance (DESIGN §3.5), shared by all its
    workers and kept across restarts and deploys. Every method is a coroutine: ``await`` it.

    Values are anything JSON-serializable; ``ttl_ms`` (milliseconds, ``None`` or negative = no
    expiry) makes a value expire. A ``get`` then ``set`` is not atomic: two events handled at
    once may both read the old value (the last write wins).
    """

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when it is absent or expired."""
        return await _services.store_get(key, default)

    async def set(self, key: str, value: Any, ttl_ms: int | None = None) -> None:
        await _services.store_set(key, value, ttl_ms)

    async def delete(self, key: str) -> None:
        await _services.store_delete(key)


class _Log:
    """``log.info("…")`` and friends: captured per invocation like ``print``."""

    def debug(self, *parts: object) -> None:
        _services.log("DEBUG", " ".join(str(p) for p in parts))

    def info(self, *parts: object) -> None:
        _services.log("INFO", " ".join(str(p) for p in parts))

    def warning(self, *parts: object) -> None:
        _services.log("WARNING", " ".join(str(p) for p in parts))

    warn = warning

    def error(self, *parts: object) -> None:
        _services.log("ERROR", " ".join(str(p) for p in parts))


cache = _Cache()
store = _Store()
log = _Log()

__all__ = [
    "DropEvent",
    "EventNotSupported",
    "FetchError",
    "FunctionError",
    "InvalidEventPayload",
    "RetryError",
    "StoreError",
    "ValidationError",
    "cache",
    "fetch",
    "log",
    "store",
]
