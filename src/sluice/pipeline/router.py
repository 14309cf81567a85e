"""Routing decisions before the insert function (DESIGN §2), as values.

For one event on one destination, :func:`decide` applies, in order:

1. source connected and destination enabled → else ``Filtered(by="not_connected" | "disabled")``;
2. the Segment ``integrations`` object (keys case-sensitive) → else ``Filtered(by="integrations")``;
3. the destination filters (:mod:`sluice.filters`: FQL conditions; Sample → Drop → Drop
   Properties → Allow Properties) → ``Filtered(by="destination_filter")``, or the event with
   properties removed;
4. ``Proceed(use_function=..., event=...)``: run the insert function when an instance exists and
   is enabled; ``event`` is the filtered event when the filters changed it, else ``None``.

No I/O, no clock, no queue (SAMPLE without a path draws from the given ``rng``). A ``Filtered``
decision is recorded as :attr:`Outcome.FILTERED` with ``by`` as its reason code.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.delivery.outcomes import Outcome
from sluice.filters import DestinationFilter, Dropped, apply_filters

__all__ = ["Decision", "Filtered", "FilteredBy", "Proceed", "Route", "decide", "integrations_allow"]

FilteredBy = Literal["not_connected", "disabled", "integrations", "destination_filter"]


@dataclass(frozen=True, slots=True)
class Route:
    """One destination as the pipeline sees it.

    ``instance_enabled`` is ``None`` when the destination has no insert function instance,
    otherwise the instance's enabled flag.
    """

    destination_id: str
    destination_name: str
    enabled: bool
    source_ids: frozenset[str] = field(default_factory=frozenset)
    instance_enabled: bool | None = None
    filters: tuple[DestinationFilter, ...] = ()

    def __post_init__(self) -> None:
        # Accept any iterable from callers building routes from rows; store immutable values.
        object.__setattr__(self, "source_ids", frozenset(self.source_ids))
        object.__setattr__(self, "filters", tuple(self.filters))
        for rule in self.filters:
            if not isinstance(rule, DestinationFilter):
                raise TypeError(f"Route.filters holds {type(rule).__name__}, expected DestinationFilter")


@dataclass(frozen=True, slots=True)
class Proceed:
    """The event goes on: through the insert function when ``use_function``, else straight to the
    adapter; ``event`` is the event the filters changed (properties removed), or ``None``."""

    use_function: bool
    event: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Filtered:
    """The event stops here; recorded as ``filtered`` with ``by`` as the reason code."""

    by: FilteredBy
    reason: str

    @property
    def outcome(self) -> Outcome:
        return Outcome.FILTERED


Decision = Proceed | Filtered


def integrations_allow(integrations: object, destination_name: str) -> tuple[bool, str]:
    """Segment's ``integrations`` object semantics: ``(allowed, why)``.

    - absent or not an object → allowed;
    - ``integrations[destination_name]`` (exact, case-sensitive) decides when present: only the
      boolean ``False`` blocks; ``True``, an options object or any other value (e.g. the string
      ``"false"``, ``null``, ``0``) allows — only a real ``false`` turns a destination off;
    - otherwise ``integrations["All"]`` (exact, ``"all"`` is not it) decides the same way;
    - otherwise allowed (``All`` defaults to true).
    """
    if not isinstance(integrations, Mapping):
        return True, "no integrations object"
    if destination_name in integrations:
        value = integrations[destination_name]
        if value is False:
            return False, f"integrations[{destination_name!r}] is false"
        return True, f"integrations[{destination_name!r}] enables it"
    if "All" in integrations and integrations["All"] is False:
        return False, f"integrations['All'] is false and {destination_name!r} is not listed"
    return True, "integrations['All'] is not false"


def decide(route: Route, source_id: str, event: Mapping[str, Any], *, rng: random.Random | None = None) -> Decision:
    """What happens to ``event`` from ``source_id`` on ``route`` before the insert function."""
    if source_id not in route.source_ids:
        return Filtered(
            "not_connected", f"source {source_id} is not connected to destination {route.destination_name!r}"
        )
    if not route.enabled:
        return Filtered("disabled", f"destination {route.destination_name!r} is disabled")
    allowed, why = integrations_allow(event.get("integrations"), route.destination_name)
    if not allowed:
        return Filtered("integrations", why)
    changed = None
    if route.filters:
        outcome = apply_filters(route.filters, source_id, event if isinstance(event, dict) else dict(event), rng=rng)
        if isinstance(outcome, Dropped):
            return Filtered("destination_filter", outcome.reason)
        changed = outcome.event if outcome.changed else None
    return Proceed(use_function=route.instance_enabled is True, event=changed)
