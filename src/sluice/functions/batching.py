"""Pairing an ``on_batch`` result with its inputs (DESIGN §3.4). Pure code.

- a list of the **same length** is paired by position; ``None`` at a position = filtered;
  an error-class *instance* at a position gives that event its own outcome;
- a **shorter** list is paired by ``messageId``; inputs not returned are filtered; a returned
  event with an unknown or missing ``messageId`` makes the whole batch ``bad_request``;
- anything else (not a list, a longer list) makes the whole batch ``bad_request``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sluice.fn import FunctionError

#: One paired slot: (status, event or None, error dict or None).
Slot = tuple[str, Any, dict[str, str] | None]


class BatchShapeError(Exception):
    """The returned value cannot be paired at all: the whole batch is ``bad_request``."""


def _error(type_: str, message: str) -> dict[str, str]:
    return {"type": type_, "message": message}


def _slot_for(value: object) -> Slot:
    if value is None:
        return ("filtered", None, None)
    if isinstance(value, dict):
        return ("ok", value, None)
    if isinstance(value, FunctionError):
        return (value.status, None, _error(type(value).__name__, value.message))
    return (
        "bad_request",
        None,
        _error("TypeError", f"on_batch returned {type(value).__name__} at this position; expected an event or None"),
    )


def pair_batch(inputs: Sequence[Any], returned: object) -> list[Slot]:
    """Return one slot per input, or raise :class:`BatchShapeError`."""
    if isinstance(returned, tuple):
        returned = list(returned)
    if not isinstance(returned, list):
        raise BatchShapeError(f"on_batch must return a list of events, got {type(returned).__name__}")
    if len(returned) == len(inputs):
        return [_slot_for(value) for value in returned]
    if len(returned) > len(inputs):
        raise BatchShapeError(
            f"on_batch returned {len(returned)} events for {len(inputs)} inputs; "
            "an insert function returns at most one event per input"
        )
    index: dict[str, int] = {}
    for position, event in enumerate(inputs):
        mid = event.get("messageId") if isinstance(event, dict) else None
        if isinstance(mid, str) and mid not in index:
            index[mid] = position
    slots: list[Slot] = [("filtered", None, None) for _ in inputs]
    taken: set[int] = set()
    for value in returned:
        if value is None:
            continue
        if not isinstance(value, dict):
            raise BatchShapeError(
                f"on_batch returned a shorter list containing {type(value).__name__}; a shorter list is "
                "paired by messageId, so it may only hold events"
            )
        mid = value.get("messageId")
        if not isinstance(mid, str) or not mid:
            raise BatchShapeError("on_batch returned a shorter list with an event that has no messageId")
        found = index.get(mid)
        if found is None:
            raise BatchShapeError(f"on_batch returned an event with unknown messageId {mid!r}")
        position = found
        if position in taken:
            raise BatchShapeError(f"on_batch returned messageId {mid!r} twice")
        taken.add(position)
        slots[position] = ("ok", value, None)
    return slots
