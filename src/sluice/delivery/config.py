"""Validation of destination configs, and which of their fields are secret.

``validate_config`` returns the config with defaults filled in, or raises
:class:`sluice.errors.InvalidInput` naming the field (``config.<name>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.actions.config import ACTIONS_WEBHOOK_TYPE, validate_actions_config
from sluice.config_checks import check_headers, check_int, check_url
from sluice.errors import InvalidInput

__all__ = [
    "ADAPTER_TYPES",
    "DEFAULT_RETRY_MAX_AGE_S",
    "DESTINATION_TYPES",
    "validate_config",
]

#: Destination types served by an adapter here. ``function`` destinations (resourceType
#: DESTINATION) are run by the functions runtime, not by ``sluice.delivery``.
ADAPTER_TYPES = frozenset({"webhook", "segment"})
#: Every destination type a destination may have.
DESTINATION_TYPES = ADAPTER_TYPES | {"function", ACTIONS_WEBHOOK_TYPE}
#: How long a failing event is retried before it expires (DESIGN §3.3), per destination
#: ``retryMaxAgeS`` (every type accepts it).
DEFAULT_RETRY_MAX_AGE_S = 4 * 3600
_RETRY_MAX_AGE_RANGE = (1, 7 * 24 * 3600)

WEBHOOK_METHODS = frozenset({"POST", "PUT", "PATCH"})
_BATCH_RANGE = (1, 500)
_TIMEOUT_RANGE = (100, 120_000)


def _fail(name: str, message: str) -> InvalidInput:
    return InvalidInput(message, field=f"config.{name}")


def _url(config: Mapping[str, Any], name: str = "url") -> str:
    return check_url(config.get(name), field=f"config.{name}", name=name)


def _int(config: Mapping[str, Any], name: str, default: int, bounds: tuple[int, int]) -> int:
    return check_int(config.get(name, default), field=f"config.{name}", name=name, bounds=bounds)


def _headers(config: Mapping[str, Any]) -> dict[str, str]:
    return check_headers(config.get("headers", {}), field="config.headers")


def _reject_unknown(config: Mapping[str, Any], known: set[str]) -> None:
    for key in config:
        if key not in known:
            raise _fail(str(key), f"unknown setting {key!r} (known: {', '.join(sorted(known))})")


def validate_config(type: str, config: Any) -> dict[str, Any]:
    """The destination's config with defaults filled in; raises ``InvalidInput`` when bad."""
    if type not in DESTINATION_TYPES:
        raise InvalidInput(
            f"unknown destination type {type!r} (known: {', '.join(sorted(DESTINATION_TYPES))})", field="type"
        )
    if not isinstance(config, Mapping):
        raise InvalidInput("config must be an object", field="config")
    if type == ACTIONS_WEBHOOK_TYPE:
        return validate_actions_config(config)
    retry = {"retryMaxAgeS": _int(config, "retryMaxAgeS", DEFAULT_RETRY_MAX_AGE_S, _RETRY_MAX_AGE_RANGE)}
    if type == "function":  # the connected DESTINATION function is the destination
        _reject_unknown(config, {"retryMaxAgeS"})
        return retry
    if type == "webhook":
        _reject_unknown(config, {"url", "method", "headers", "batchSize", "timeoutMs", "retryMaxAgeS"})
        method = config.get("method", "POST")
        if not isinstance(method, str) or method.upper() not in WEBHOOK_METHODS:
            raise _fail("method", f"method must be one of {', '.join(sorted(WEBHOOK_METHODS))}")
        return {
            "url": _url(config),
            "method": method.upper(),
            "headers": _headers(config),
            "batchSize": _int(config, "batchSize", 1, _BATCH_RANGE),
            "timeoutMs": _int(config, "timeoutMs", 10_000, _TIMEOUT_RANGE),
            **retry,
        }
    # segment
    _reject_unknown(config, {"url", "writeKey", "batchSize", "timeoutMs", "retryMaxAgeS"})
    write_key = config.get("writeKey")
    if not isinstance(write_key, str) or not write_key:
        raise _fail("writeKey", "writeKey is required (a non-empty string)")
    return {
        "url": _url(config).rstrip("/"),
        "writeKey": write_key,
        "batchSize": _int(config, "batchSize", 100, _BATCH_RANGE),
        "timeoutMs": _int(config, "timeoutMs", 10_000, _TIMEOUT_RANGE),
        **retry,
    }
