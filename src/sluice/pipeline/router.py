"""Routing decisions before the insert function (DESIGN §2), as values.

For one event on one destination, :func:`decide` applies, in order:

1. source connected and destination enabled → else ``Filtered(by="not_connected" | "disabled")``;
2. the Segment ``integrations`` object (keys case-sensitive) → else ``Filtered(by="integrations")``;
3. the enabled destination filters of that source→destination pair, in order
   → else ``Filtered(by="destination_filter")``;
4. ``Proceed(use_function=...)``: run the insert function when an instance exists and is enabled.

Everything here is pure: no I/O, no clock, no queue. A ``Filtered`` decision is recorded as
:attr:`Outcome.FILTERED` with ``by`` as its reason code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.delivery.outcomes import Outcome

__all__ = ["Decision", "FilterRule", "Filtered", "FilteredBy", "Proceed", "Route", "decide", "integrations_allow"]

FilteredBy = Literal["not_connected", "disabled", "integrations", "destination_filter"]

#: Actions of Segment's destination filters. Only DROP is supported until the FQL issue lands.
KNOWN_ACTIONS = frozenset({"DROP", "SAMPLE", "ALLOW_PROPERTIES", "DROP_PROPERTIES"})
SUPPORTED_ACTIONS = frozenset({"DROP"})
#: Conditions understood before FQL arrives.
SUPPORTED_CONDITIONS = frozenset({"all"})


@dataclass(frozen=True, slots=True)
class FilterRule:
    """One destination filter: a condition (``if_``) and its actions, optionally for one source only.

    Until the FQL language arrives only ``if_="all"`` with the ``DROP`` action is supported;
    anything else raises :class:`ValueError` here, so a filter is never silently ignored.
    """

    if_: str = "all"
    actions: tuple[str, ...] = ("DROP",)
    enabled: bool = True
    source_id: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.if_ not in SUPPORTED_CONDITIONS:
            raise ValueError(
                f"unsupported destination filter condition {self.if_!r}: only 'all' is supported until FQL"
            )
        object.__setattr__(self, "actions", tuple(self.actions))
        if not self.actions:
            raise ValueError(f"destination filter {self.if_!r} has no actions")
        for action in self.actions:
            if action not in KNOWN_ACTIONS:
                raise ValueError(
                    f"unknown destination filter action {action!r} (known: {', '.join(sorted(KNOWN_ACTIONS))})"
                )
            if action not in SUPPORTED_ACTIONS:
                raise ValueError(f"destination filter action {action!r} is not supported yet (only DROP)")

    def applies_to(self, source_id: str) -> bool:
        return self.enabled and (self.source_id is None or self.source_id == source_id)

    def describe(self, position: int) -> str:
        label = f"{self.name!r} " if self.name else ""
        scope = f" for source {self.source_id}" if self.source_id is not None else ""
        return f"destination filter {label}#{position} (if {self.if_} → {', '.join(self.actions)}){scope}"


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
    filters: tuple[FilterRule, ...] = ()

    def __post_init__(self) -> None:
        # Accept any iterable from callers building routes from rows; store immutable values.
        object.__setattr__(self, "source_ids", frozenset(self.source_ids))
        object.__setattr__(self, "filters", tuple(self.filters))
        for rule in self.filters:
            if not isinstance(rule, FilterRule):
                raise TypeError(f"Route.filters holds {type(rule).__name__}, expected FilterRule")


@dataclass(frozen=True, slots=True)
class Proceed:
    """The event goes on: through the insert function when ``use_function``, else straight to the adapter."""

    use_function: bool


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


def decide(route: Route, source_id: str, event: Mapping[str, Any]) -> Decision:
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
    for position, rule in enumerate(route.filters, start=1):
        if rule.applies_to(source_id) and rule.if_ == "all" and "DROP" in rule.actions:
            return Filtered("destination_filter", f"dropped by {rule.describe(position)}")
    return Proceed(use_function=route.instance_enabled is True)
