"""Where a destination config keeps its secrets, and one walker to seal, open, mask or collect them.

Each destination type names the *paths* of its secret values: a tuple of keys, where ``"*"``
steps into every item of a list. The value at the end of a path is a secret (a string), or a
mapping whose every value is one (webhook ``headers``: the header names are not secret).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MASK", "SENSITIVE_PATHS", "Location", "map_secrets", "mask_config", "secrets_of", "value_at"]

MASK = "••••••"
Location = tuple[str | int, ...]

SENSITIVE_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "webhook": (("headers",),),
    "segment": (("writeKey",),),
    "actions-webhook": (("subscriptions", "*", "request", "headers"),),
}


def map_secrets(type: str, config: Mapping[str, Any], fn: Callable[[Any, Location], Any]) -> dict[str, Any]:
    """A copy of ``config`` with each secret value replaced by ``fn(value, location)``.

    Only the containers on a secret's path are copied; the input is never modified.
    """
    out = dict(config)
    for path in SENSITIVE_PATHS.get(type, ()):
        _walk(out, path, (), fn)
    return out


def _walk(
    container: dict[str, Any] | list[Any], path: tuple[str, ...], at: Location, fn: Callable[[Any, Location], Any]
) -> None:
    step, rest = path[0], path[1:]
    if step == "*":
        if not isinstance(container, list):
            return
        keys: list[str | int] = list(range(len(container)))
    else:
        if not isinstance(container, dict) or step not in container:
            return
        keys = [step]
    for key in keys:
        value = container[key]  # type: ignore[index]
        here = (*at, key)
        if rest:
            if isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, list):
                value = list(value)
            else:
                continue
            container[key] = value  # type: ignore[index]
            _walk(value, rest, here, fn)
        elif isinstance(value, Mapping):
            container[key] = {name: fn(item, (*here, name)) for name, item in value.items()}  # type: ignore[index]
        else:
            container[key] = fn(value, here)  # type: ignore[index]


def value_at(config: Any, location: Location) -> Any:
    """The value at ``location`` in ``config``, or None when there is none."""
    for key in location:
        if isinstance(key, int):
            if not isinstance(config, list) or not 0 <= key < len(config):
                return None
        elif not isinstance(config, Mapping) or key not in config:
            return None
        config = config[key]
    return config


def secrets_of(type: str, config: Mapping[str, Any]) -> list[str]:
    """The secret strings in a config, to redact from traces."""
    found: list[str] = []

    def collect(value: Any, _: Location) -> Any:
        if isinstance(value, str) and value:
            found.append(value)
        return value

    map_secrets(type, config, collect)
    return found


def mask_config(type: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` safe to show: sensitive values replaced by a mask."""
    return map_secrets(type, config, lambda value, _: value if value in (None, "") else MASK)
