"""Per-type validation of Segment-spec events, reporting Segment's reason codes.

:func:`validate_event` is *total*: it never raises, whatever it is given, and returns every problem
it finds (an empty list means the event is valid). The checks are shallow — they look at the
top-level fields and ``context.traits`` only — so their cost does not grow with the payload.

Rules (``null`` always counts as absent; see :mod:`sluice.events.model`):

* every event: ``type`` is a known type; ``userId``/``anonymousId``, when set, are a string or a
  number, and at least one of them is set (non-empty) unless the type is ``delete``;
  ``messageId`` is a string of at most 100 characters; the timestamps parse; ``context``,
  ``context.traits`` and ``integrations`` are objects; the encoded event is at most ``max_bytes``.
* ``track``: ``event`` is set and a non-empty string; ``properties`` is an object.
* ``identify``: ``traits`` is an object.
* ``page``/``screen``: ``name`` and ``category`` are strings; ``properties`` is an object.
* ``group``: ``groupId`` is set (a non-empty string or a number); ``traits`` is an object.
* ``alias``: ``previousId`` is set (a non-empty string or a number).

Type-specific rules run only when ``type`` is known; the "at least one id" rule likewise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from sluice.errors import SluiceError
from sluice.events.model import EVENT_TYPES, TIMESTAMP_FIELDS, Event, parse_timestamp

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_MESSAGE_ID_LENGTH",
    "REASON_CODES",
    "EventValidationError",
    "Violation",
    "validate_event",
    "validate_or_raise",
]

MAX_EVENT_BYTES: Final = 32 * 1024
"""Segment's limit on one event, in bytes of its JSON encoding."""

MAX_MESSAGE_ID_LENGTH: Final = 100

REASON_CODES: Final[tuple[str, ...]] = (
    "not_an_object",
    "type_not_string",
    "type_invalid",
    "no_user_anon_id",
    "user_id_not_string",
    "anonymous_id_not_string",
    "event_not_defined",
    "event_not_string",
    "properties_not_object",
    "traits_not_object",
    "context_not_object",
    "integrations_not_object",
    "name_not_string",
    "category_not_string",
    "group_id_not_defined",
    "group_id_not_string",
    "previous_id_not_defined",
    "previous_id_not_string",
    "message_id_not_string",
    "message_id_too_long",
    "timestamp_invalid",
    "event_too_large",
)
"""Every code :func:`validate_event` can report."""

_EVENT_TYPE_SET: Final[frozenset[str]] = frozenset(EVENT_TYPES)
_WITH_PROPERTIES: Final[frozenset[str]] = frozenset({"track", "page", "screen"})
_WITH_TRAITS: Final[frozenset[str]] = frozenset({"identify", "group"})


@dataclass(frozen=True, slots=True)
class Violation:
    """One reason an event is invalid.

    ``code`` is one of :data:`REASON_CODES`; ``field`` is the dotted path of the offending field
    (``""`` when the problem is the event as a whole); ``message`` is for humans.
    """

    code: str
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "message": self.message}


class EventValidationError(SluiceError):
    """An event failed validation; ``violations`` says why (never empty)."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        summary = "; ".join(
            f"{v.code} ({v.field}): {v.message}" if v.field else f"{v.code}: {v.message}" for v in self.violations
        )
        super().__init__(f"invalid event: {summary}")


def validate_or_raise(event: object, *, max_bytes: int = MAX_EVENT_BYTES, encoded_size: int | None = None) -> Event:
    """Return ``event`` itself if it is valid; raise :class:`EventValidationError` otherwise."""
    violations = validate_event(event, max_bytes=max_bytes, encoded_size=encoded_size)
    if violations or not isinstance(event, dict):
        raise EventValidationError(violations)
    return event


def validate_event(
    event: object, *, max_bytes: int = MAX_EVENT_BYTES, encoded_size: int | None = None
) -> list[Violation]:
    """Every violation of the Segment spec in ``event``; ``[]`` when it is valid. Never raises.

    ``encoded_size`` is the size in bytes of the event's JSON encoding when the caller already
    knows it (ingest does), which spares encoding the event again to measure it.
    """
    if not isinstance(event, dict):
        return [Violation("not_an_object", "", f"event must be a JSON object, not {_json_kind(event)}")]
    out: list[Violation] = []

    etype = event.get("type")
    known: str | None = None
    if not isinstance(etype, str):
        out.append(Violation("type_not_string", "type", "type must be a string"))
    elif etype not in _EVENT_TYPE_SET:
        out.append(Violation("type_invalid", "type", f"type must be one of {', '.join(EVENT_TYPES)}"))
    else:
        known = etype

    _check_identity(event, out, required=known is not None and known != "delete")
    _check_message_id(event.get("messageId"), out)
    for name in TIMESTAMP_FIELDS:
        value = event.get(name)
        if value is not None and parse_timestamp(value) is None:
            out.append(Violation("timestamp_invalid", name, f"{name} must be an ISO-8601 date-time string"))

    context = event.get("context")
    if context is not None:
        if not isinstance(context, dict):
            out.append(Violation("context_not_object", "context", "context must be an object"))
        elif not _is_object_or_null(context.get("traits")):
            out.append(Violation("traits_not_object", "context.traits", "context.traits must be an object"))
    if not _is_object_or_null(event.get("integrations")):
        out.append(Violation("integrations_not_object", "integrations", "integrations must be an object"))

    if known is not None:
        _check_type_fields(known, event, out)

    size = encoded_size if encoded_size is not None else _encoded_size(event)
    if size is not None and size > max_bytes:
        out.append(Violation("event_too_large", "", f"event is {size} bytes, more than the limit of {max_bytes}"))
    return out


# --- the checks ------------------------------------------------------------------------------


def _check_identity(event: dict[Any, Any], out: list[Violation], *, required: bool) -> None:
    user_state = _id_state(event.get("userId"))
    anon_state = _id_state(event.get("anonymousId"))
    if user_state == "bad":
        out.append(Violation("user_id_not_string", "userId", "userId must be a string or a number"))
    if anon_state == "bad":
        out.append(Violation("anonymous_id_not_string", "anonymousId", "anonymousId must be a string or a number"))
    if required and user_state == "absent" and anon_state == "absent":
        out.append(Violation("no_user_anon_id", "userId", "either userId or anonymousId is required"))


def _check_message_id(value: object, out: list[Violation]) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        out.append(Violation("message_id_not_string", "messageId", "messageId must be a string"))
    elif len(value) > MAX_MESSAGE_ID_LENGTH:
        out.append(
            Violation(
                "message_id_too_long",
                "messageId",
                f"messageId is {len(value)} characters, more than the limit of {MAX_MESSAGE_ID_LENGTH}",
            )
        )


def _check_type_fields(etype: str, event: dict[Any, Any], out: list[Violation]) -> None:
    if etype == "track":
        name = event.get("event")
        if name is None:
            out.append(Violation("event_not_defined", "event", "track events require an event name"))
        elif not isinstance(name, str) or not name:
            out.append(Violation("event_not_string", "event", "event must be a non-empty string"))
    elif etype in ("page", "screen"):
        for field, code in (("name", "name_not_string"), ("category", "category_not_string")):
            value = event.get(field)
            if value is not None and not isinstance(value, str):
                out.append(Violation(code, field, f"{field} must be a string"))
    elif etype == "group":
        _check_required_id(event.get("groupId"), "groupId", "group_id", out)
    elif etype == "alias":
        _check_required_id(event.get("previousId"), "previousId", "previous_id", out)

    if etype in _WITH_PROPERTIES and not _is_object_or_null(event.get("properties")):
        out.append(Violation("properties_not_object", "properties", "properties must be an object"))
    if etype in _WITH_TRAITS and not _is_object_or_null(event.get("traits")):
        out.append(Violation("traits_not_object", "traits", "traits must be an object"))


def _check_required_id(value: object, field: str, code_prefix: str, out: list[Violation]) -> None:
    state = _id_state(value)
    if state == "absent":
        out.append(Violation(f"{code_prefix}_not_defined", field, f"{field} is required"))
    elif state == "bad":
        out.append(Violation(f"{code_prefix}_not_string", field, f"{field} must be a string or a number"))


# --- helpers ---------------------------------------------------------------------------------


def _id_state(value: object) -> str:
    """``"absent"`` (missing, null, ``""``), ``"ok"`` (a string or a number) or ``"bad"``."""
    if value is None or value == "":
        return "absent"
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return "ok"
    return "bad"


def _is_object_or_null(value: object) -> bool:
    return value is None or isinstance(value, dict)


def _encoded_size(event: dict[Any, Any]) -> int | None:
    """Bytes of the compact JSON encoding of ``event``; ``None`` if it cannot be encoded at all."""
    try:
        return len(orjson.dumps(event))
    except orjson.JSONEncodeError:
        pass  # e.g. an integer beyond 64 bits or nesting beyond orjson's depth limit: measure slowly
    try:
        text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        return len(text.encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError, RecursionError, OverflowError):
        return None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__
