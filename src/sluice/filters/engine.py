"""Applying destination filters to one event (DESIGN §2: after the integrations object, before
the insert function). Pure: no I/O, and the input event is never mutated.

Segment's order: of the enabled filters that apply to the event's source and whose condition
matches the *original* event, every ``SAMPLE`` action runs first, then ``DROP``, then
``DROP_PROPERTIES``, then ``ALLOW_PROPERTIES``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sluice.filters.model import AllowProperties, DestinationFilter, DropProperties, Sample

__all__ = ["Dropped", "FilterOutcome", "Kept", "apply_filters", "sample_bucket"]


@dataclass(frozen=True, slots=True)
class Dropped:
    """The event stops here (the pipeline records ``filtered`` by ``destination_filter``)."""

    filter_id: str | None
    title: str
    reason: str


@dataclass(frozen=True, slots=True)
class Kept:
    """The event goes on; ``changed`` tells whether properties were removed (``event`` is then a new dict)."""

    event: dict[str, Any]
    changed: bool


FilterOutcome = Dropped | Kept

_RNG: Final = random.Random()
_SCALE: Final = float(2**64)


def _dropped(flt: DestinationFilter, verb: str, what: str) -> Dropped:
    return Dropped(flt.id, flt.title, f"{verb} by filter {flt.label!r} ({what})")


def _value_at(event: Any, segments: tuple[str, ...]) -> Any:
    node = event
    for key in segments:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def sample_bucket(value: Any) -> float:
    """A stable number in [0, 1) for a value: the same in every process and release.

    Strings hash as themselves and other values as their compact JSON, so ``123`` and ``"123"``
    (Segment's libraries send ids both ways) fall in the same bucket.
    """
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def _keeps(sample: Sample, event: dict[str, Any], rng: random.Random) -> bool:
    if sample.percent >= 1.0:
        return True
    if sample.percent <= 0.0:
        return False
    if sample.path is not None:
        value = _value_at(event, sample.segments)
        if value is not None:
            return sample_bucket(value) < sample.percent
        # no value at the path: sample at random, so events without it keep the same share
    return rng.random() < sample.percent


def _edit(node: Any, segments: tuple[str, ...], index: int, keys: frozenset[str], allow: bool) -> Any:
    """``node`` with the keys dropped from (or only ``keys`` allowed in) the object(s) at
    ``segments[index:]``; ``node`` itself when nothing changed. A list met on the way (or at the
    end) applies to each of its objects. Only what changes is copied.
    """
    if isinstance(node, list):
        copy: list[Any] | None = None
        for position, item in enumerate(node):
            new = _edit(item, segments, index, keys, allow)
            if new is not item:
                if copy is None:
                    copy = list(node)
                copy[position] = new
        return node if copy is None else copy
    if not isinstance(node, dict):
        return node
    if index == len(segments):
        if allow:
            return node if keys.issuperset(node) else {k: v for k, v in node.items() if k in keys}
        return node if keys.isdisjoint(node) else {k: v for k, v in node.items() if k not in keys}
    key = segments[index]
    if key not in node:
        return node
    child = node[key]
    new = _edit(child, segments, index + 1, keys, allow)
    if new is child:
        return node
    out = dict(node)
    out[key] = new
    return out


def _properties(event: dict[str, Any], action: DropProperties | AllowProperties) -> dict[str, Any]:
    allow = isinstance(action, AllowProperties)
    for segments, keys in action.compiled:
        event = _edit(event, segments, 0, keys, allow)
    return event


def apply_filters(
    filters: Sequence[DestinationFilter],
    source_id: str,
    event: dict[str, Any],
    *,
    rng: random.Random | None = None,
) -> FilterOutcome:
    """What the filters of one destination do to one event of ``source_id``.

    ``rng`` draws SAMPLE actions without a path (default: a module-wide ``random.Random``).
    A condition that raises propagates (FQL conditions do not raise on any JSON event).
    """
    matched: list[DestinationFilter] | None = None
    for flt in filters:
        if not flt.enabled or (flt.source_id is not None and flt.source_id != source_id):
            continue
        if flt.condition(event):
            if matched is None:
                matched = [flt]
            else:
                matched.append(flt)
    if matched is None:
        return Kept(event, False)
    draw = rng if rng is not None else _RNG
    for flt in matched:  # 1. SAMPLE
        for sample in flt.samples:
            if not _keeps(sample, event, draw):
                return _dropped(flt, "sampled out", sample.describe())
    for flt in matched:  # 2. DROP
        if flt.drops:
            return _dropped(flt, "dropped", "DROP")
    out = event
    for flt in matched:  # 3. DROP_PROPERTIES
        for drop in flt.drop_properties:
            out = _properties(out, drop)
    for flt in matched:  # 4. ALLOW_PROPERTIES
        for allow in flt.allow_properties:
            out = _properties(out, allow)
    return Kept(out, out is not event)
