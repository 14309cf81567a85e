"""The ``actions-webhook`` destination config: validation, compilation and its secrets.

A config holds up to 50 *subscriptions*; each has an FQL ``trigger`` (evaluated on the incoming
event, before the insert function), a ``mapping`` (evaluated on the event the function returned)
and the ``request`` that carries the mapped object. See ``docs/destinations.md``.

:func:`validate_actions_config` returns the config with its defaults filled in (validating it
again gives the same config) or raises :class:`sluice.errors.InvalidInput` naming the field,
e.g. ``config.subscriptions[0].trigger``. :func:`compile_subscriptions` turns a validated config
into :class:`Subscription` values ready to run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sluice.actions.mapping import Mapper, MappingError, compile_mapping
from sluice.config_checks import check_headers, check_int, check_url
from sluice.errors import InvalidInput
from sluice.fql import Condition, FqlError, compile_fql

__all__ = [
    "ACTIONS_WEBHOOK_TYPE",
    "MAX_SUBSCRIPTIONS",
    "Subscription",
    "compile_subscriptions",
    "matching_subscriptions",
    "secret_header_values",
    "validate_actions_config",
]

#: The destination type whose config this module validates.
ACTIONS_WEBHOOK_TYPE = "actions-webhook"
MAX_SUBSCRIPTIONS = 50
MAX_NAME_LENGTH = 200
METHODS = ("PATCH", "POST", "PUT")
DEFAULT_TIMEOUT_MS = 10_000
DEFAULT_RETRY_MAX_AGE_S = 4 * 3600
DEFAULT_BATCH_SIZE = 100
_TIMEOUT_RANGE = (100, 120_000)
_RETRY_MAX_AGE_RANGE = (1, 7 * 24 * 3600)
_BATCH_RANGE = (1, 500)

_CONFIG_KEYS = ("subscriptions", "timeoutMs", "retryMaxAgeS")
_SUBSCRIPTION_KEYS = ("name", "enabled", "trigger", "mapping", "request")
_REQUEST_KEYS = ("url", "method", "headers", "batch", "batchSize")


@dataclass(frozen=True, slots=True)
class Subscription:
    """One compiled subscription. ``trigger(event)`` decides whether it fires (on the incoming
    event); ``mapper(event)`` builds the body object (from the event the function returned).
    ``batch``: ``False`` sends one mapped object per request, ``True`` a JSON array of up to
    ``batch_size`` of them. ``headers`` values are secret."""

    name: str
    enabled: bool
    trigger: Condition
    mapper: Mapper
    url: str
    method: str
    headers: Mapping[str, str]
    batch: bool
    batch_size: int


def _fail(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, field=f"config.{field}")


def _reject_unknown(value: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in value:
        if key not in known:
            prefix = f"{where}." if where else ""
            raise _fail(f"{prefix}{key}", f"unknown setting {key!r} (known: {', '.join(sorted(known))})")


def _int(value: Any, field: str, name: str, bounds: tuple[int, int]) -> int:
    return check_int(value, field=f"config.{field}", name=name, bounds=bounds)


def _bool(value: Any, field: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(field, f"{name} must be true or false")
    return value


def _url(value: Any, field: str) -> str:
    return check_url(value, field=f"config.{field}")


def _headers(value: Any, field: str) -> dict[str, str]:
    return check_headers(value, field=f"config.{field}")


def _request(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, "request must be an object with url, method, headers, batch, batchSize")
    _reject_unknown(value, _REQUEST_KEYS, where)
    method = value.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise _fail(f"{where}.method", f"method must be one of {', '.join(METHODS)}")
    return {
        "url": _url(value.get("url"), f"{where}.url"),
        "method": method.upper(),
        "headers": _headers(value.get("headers", {}), f"{where}.headers"),
        "batch": _bool(value.get("batch", False), f"{where}.batch", "batch"),
        "batchSize": _int(value.get("batchSize", DEFAULT_BATCH_SIZE), f"{where}.batchSize", "batchSize", _BATCH_RANGE),
    }


def _trigger(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(field, "trigger is required: an FQL condition, e.g. type = 'track'")
    try:
        compile_fql(value)
    except FqlError as exc:
        raise _fail(field, f"trigger is not valid FQL: {exc}") from None
    return value


def _mapping(value: Any, field: str) -> Any:
    if not isinstance(value, Mapping):
        raise _fail(field, 'mapping is required: an object, e.g. {"revenue": {"@path": "$.properties.revenue"}}')
    try:
        compile_mapping(value, location=field)
    except MappingError as exc:
        raise InvalidInput(f"invalid mapping: {exc.message}", field=f"config.{exc.location}") from None
    return value


def _subscription(value: Any, index: int) -> dict[str, Any]:
    where = f"subscriptions[{index}]"
    if not isinstance(value, Mapping):
        raise _fail(where, "a subscription must be an object with name, enabled, trigger, mapping, request")
    _reject_unknown(value, _SUBSCRIPTION_KEYS, where)
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(f"{where}.name", "name is required (a non-empty string)")
    if len(name) > MAX_NAME_LENGTH:
        raise _fail(f"{where}.name", f"name must be at most {MAX_NAME_LENGTH} characters")
    return {
        "name": name,
        "enabled": _bool(value.get("enabled", True), f"{where}.enabled", "enabled"),
        "trigger": _trigger(value.get("trigger"), f"{where}.trigger"),
        "mapping": _mapping(value.get("mapping"), f"{where}.mapping"),
        "request": _request(value.get("request"), f"{where}.request"),
    }


def validate_actions_config(config: Any) -> dict[str, Any]:
    """The ``actions-webhook`` config with defaults filled in; ``InvalidInput`` naming the field when bad."""
    if not isinstance(config, Mapping):
        raise InvalidInput("config must be an object", field="config")
    _reject_unknown(config, _CONFIG_KEYS, "")
    subscriptions = config.get("subscriptions")
    if not isinstance(subscriptions, list) or not subscriptions:
        raise _fail("subscriptions", "subscriptions is required: a list of at least one subscription")
    if len(subscriptions) > MAX_SUBSCRIPTIONS:
        raise _fail("subscriptions", f"at most {MAX_SUBSCRIPTIONS} subscriptions (got {len(subscriptions)})")
    validated: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(subscriptions):
        subscription = _subscription(item, index)
        if subscription["name"] in seen:
            raise _fail(f"subscriptions[{index}].name", f"subscription names must be unique: {subscription['name']!r}")
        seen.add(subscription["name"])
        validated.append(subscription)
    return {
        "subscriptions": validated,
        "timeoutMs": _int(config.get("timeoutMs", DEFAULT_TIMEOUT_MS), "timeoutMs", "timeoutMs", _TIMEOUT_RANGE),
        "retryMaxAgeS": _int(
            config.get("retryMaxAgeS", DEFAULT_RETRY_MAX_AGE_S), "retryMaxAgeS", "retryMaxAgeS", _RETRY_MAX_AGE_RANGE
        ),
    }


def compile_subscriptions(validated: Mapping[str, Any]) -> list[Subscription]:
    """The subscriptions of a config returned by :func:`validate_actions_config`, compiled, in order
    (disabled ones included, with ``enabled=False``)."""
    out: list[Subscription] = []
    for item in validated["subscriptions"]:
        request = item["request"]
        out.append(
            Subscription(
                name=item["name"],
                enabled=item["enabled"],
                trigger=compile_fql(item["trigger"]),
                mapper=compile_mapping(item["mapping"]),
                url=request["url"],
                method=request["method"],
                headers=MappingProxyType(dict(request["headers"])),
                batch=request["batch"],
                batch_size=request["batchSize"],
            )
        )
    return out


def matching_subscriptions(subscriptions: Sequence[Subscription], event: Mapping[str, Any]) -> list[Subscription]:
    """The enabled subscriptions whose trigger matches ``event`` (a trigger that raises does not match)."""
    out: list[Subscription] = []
    for subscription in subscriptions:
        if not subscription.enabled:
            continue
        try:
            matched = subscription.trigger(event)
        except Exception:
            matched = False
        if matched is True:
            out.append(subscription)
    return out


def secret_header_values(validated: Mapping[str, Any]) -> list[str]:
    """Every header value of every subscription (all are secret), and the credential part of
    ``Scheme credential`` values, to redact from traces; no duplicates, in order."""
    out: dict[str, None] = {}
    for item in validated.get("subscriptions", ()):
        headers = item.get("request", {}).get("headers", {}) if isinstance(item, Mapping) else {}
        for value in headers.values() if isinstance(headers, Mapping) else ():
            if not isinstance(value, str) or not value:
                continue
            out[value] = None
            scheme, _, credential = value.partition(" ")
            if credential.strip() and scheme.isalpha():
                out[credential.strip()] = None
    return list(out)
