"""Checks of destination config values shared by every destination type's validation.

Each raises :class:`sluice.errors.InvalidInput` with ``field`` as given (e.g. ``config.url``) and
a message naming ``name``. Here, not in ``sluice.delivery``, so that ``sluice.actions`` (which
``sluice.delivery`` imports) can use them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sluice.errors import InvalidInput

__all__ = ["check_headers", "check_int", "check_url"]

HEADERS_MESSAGE = "headers must be an object of header name to string value"


def check_int(value: Any, *, field: str, name: str, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer", field=field)
    low, high = bounds
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", field=field)
    return value


def check_url(value: Any, *, field: str, name: str = "url") -> str:
    """An absolute http:// or https:// URL with a host, a valid port and no white space."""
    if value is None or value == "":
        raise InvalidInput(f"{name} is required", field=field)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", field=field)
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise InvalidInput(f"{name} is not a valid URL: {exc}", field=field) from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(f"{name} must be an http:// or https:// URL", field=field)
    if not parts.hostname:
        raise InvalidInput(f"{name} has no host", field=field)
    if any(c in value for c in " \r\n\t"):
        raise InvalidInput(f"{name} must not contain spaces or line breaks", field=field)
    return value


def check_headers(value: Any, *, field: str) -> dict[str, str]:
    """Header name → string value; names and values that would break an HTTP request are refused."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(HEADERS_MESSAGE, field=field)
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or not isinstance(item, str):
            raise InvalidInput(HEADERS_MESSAGE, field=field)
        if any(c in key for c in " :\r\n\t") or any(c in item for c in "\r\n"):
            raise InvalidInput(f"header {key!r} has characters not allowed in an HTTP header", field=field)
        out[key] = item
    return out
