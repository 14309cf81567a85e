"""The Segment-spec event model: plain dicts plus small, pure helpers.

Events travel as JSON, so an event is a plain ``dict[str, Any]`` — no classes, no TypedDicts. The
helpers here read and build such dicts; none of them mutates its input (every "setter" returns a
new, shallow-copied dict) and none does I/O.

Decisions (where the Segment spec is silent):

* JSON ``null`` means "absent" for every optional field (``context``, ``integrations``,
  ``messageId``, timestamps …) — Segment's own ``delete`` payloads carry ``"context": null``.
* A timestamp is an ISO-8601 string :func:`datetime.fromisoformat` accepts (``Z`` included). Naive
  values are read as UTC. Go's ``time.Time.String()`` form
  (``2020-05-09 23:54:49.209808489 +0000 UTC m=+70366.29``), which Segment itself emits in
  ``delete`` events, is accepted too.
* Timestamps sluice computes are written as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC, milliseconds).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, Literal, TypeAlias, cast

__all__ = [
    "EVENT_TYPES",
    "TIMESTAMP_FIELDS",
    "Event",
    "EventType",
    "ensure_message_id",
    "event_type",
    "format_timestamp",
    "merge_batch_defaults",
    "message_id",
    "normalize_timestamps",
    "parse_timestamp",
]

Event: TypeAlias = dict[str, Any]
"""An event as it travels: a JSON object decoded to a dict."""

EventType: TypeAlias = Literal["track", "identify", "page", "screen", "group", "alias", "delete"]

EVENT_TYPES: Final[tuple[EventType, ...]] = (
    "track",
    "identify",
    "page",
    "screen",
    "group",
    "alias",
    "delete",
)

TIMESTAMP_FIELDS: Final[tuple[str, ...]] = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
"""The top-level fields that hold an ISO-8601 timestamp."""

_EVENT_TYPE_SET: Final[frozenset[str]] = frozenset(EVENT_TYPES)

# Go's time.Time.String(): "2006-01-02 15:04:05.999999999 -0700 MST m=+0.000000001".
_GO_TIME = re.compile(
    r"(?P<dt>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?) (?P<off>[+-]\d{4})"
    r"(?: [A-Za-z]{1,6})?(?: m=[+-]\d+(?:\.\d+)?)?"
)


# --- reading ---------------------------------------------------------------------------------


def event_type(event: object) -> EventType | None:
    """The event's ``type`` if it is one of :data:`EVENT_TYPES`, else ``None``."""
    if not isinstance(event, Mapping):
        return None
    value = event.get("type")
    if isinstance(value, str) and value in _EVENT_TYPE_SET:
        return cast(EventType, value)
    return None


def message_id(event: object) -> str | None:
    """The event's ``messageId`` if it is a non-empty string, else ``None``."""
    if not isinstance(event, Mapping):
        return None
    value = event.get("messageId")
    if isinstance(value, str) and value:
        return value
    return None


def parse_timestamp(value: object) -> datetime | None:
    """Parse an event timestamp into an aware UTC-or-offset :class:`datetime`; ``None`` if invalid.

    Accepts what :func:`datetime.fromisoformat` accepts (naive results are taken as UTC) and Go's
    ``time.Time.String()`` form. Never raises.
    """
    if not isinstance(value, str) or not value:
        return None
    parsed: datetime | None
    try:
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None:
        match = _GO_TIME.fullmatch(value)
        if match is None:
            return None
        try:
            parsed = datetime.fromisoformat(match["dt"] + match["off"])
        except (ValueError, OverflowError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@lru_cache(maxsize=256)  # ingest formats one receivedAt per request for every event of it
def format_timestamp(moment: datetime) -> str:
    """``moment`` in UTC as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


# --- building (all return a new dict) --------------------------------------------------------


def normalize_timestamps(event: Mapping[str, Any], *, received_at: datetime) -> Event:
    """Set ``receivedAt`` and compute ``timestamp`` per the Segment spec; returns a new dict.

    * ``receivedAt`` is always set to ``received_at`` (the server's clock), overriding any value sent.
    * ``timestamp`` sent by the client → kept as is.
    * else ``originalTimestamp`` and ``sentAt`` both valid → ``receivedAt - (sentAt - originalTimestamp)``
      (the device's clock-skew removed).
    * else ``originalTimestamp`` valid → ``originalTimestamp`` (the string as sent).
    * else → ``receivedAt``.
    """
    out: Event = dict(event)
    received = received_at if received_at.tzinfo is not None else received_at.replace(tzinfo=UTC)
    out["receivedAt"] = format_timestamp(received)
    if out.get("timestamp") is not None:
        return out
    original = parse_timestamp(out.get("originalTimestamp"))
    sent = parse_timestamp(out.get("sentAt"))
    if original is not None and sent is not None:
        try:
            out["timestamp"] = format_timestamp(received - (sent - original))
            return out
        except (OverflowError, ValueError):
            pass  # an absurd skew (years 1 vs 9999): fall back to receivedAt below
    elif original is not None:
        out["timestamp"] = out["originalTimestamp"]
        return out
    out["timestamp"] = out["receivedAt"]
    return out


def merge_batch_defaults(item: Mapping[str, Any], *, context: object = None, integrations: object = None) -> Event:
    """Merge a batch request's top-level ``context``/``integrations`` under one item's own.

    The item's keys win. ``context`` is merged one level deeper as well, so a batch-level
    ``context.library`` and an item-level ``context.library`` combine key by key. ``integrations``
    is merged at its top level only (an item's per-destination options object replaces the batch's).
    Non-object defaults are ignored; an item field that is present but not an object (garbage) is
    left untouched so validation can report it. Returns a new dict.
    """
    out: Event = dict(item)
    if isinstance(context, Mapping) and context:
        own = out.get("context")
        if own is None:
            out["context"] = _copy_two_levels(context)
        elif isinstance(own, Mapping):
            merged = _copy_two_levels(context)
            for key, value in own.items():
                below = merged.get(key)
                if isinstance(value, Mapping) and isinstance(below, dict):
                    below.update(value)
                else:
                    merged[key] = value
            out["context"] = merged
    if isinstance(integrations, Mapping) and integrations:
        own = out.get("integrations")
        if own is None:
            out["integrations"] = dict(integrations)
        elif isinstance(own, Mapping):
            out["integrations"] = {**integrations, **own}
    return out


def ensure_message_id(event: Mapping[str, Any], new_id: Callable[[], str]) -> Event:
    """A copy of ``event`` with a ``messageId``: kept if it is set, else ``new_id()``.

    ``null`` and ``""`` count as absent. A non-string ``messageId`` is kept (validation reports it).
    """
    out: Event = dict(event)
    current = out.get("messageId")
    if current is None or current == "":
        out["messageId"] = new_id()
    return out


def _copy_two_levels(obj: Mapping[str, Any]) -> Event:
    return {key: dict(value) if isinstance(value, Mapping) else value for key, value in obj.items()}
