"""What the pipeline needs to know about one destination, read from the catalog as plain values.

The catalog builds these (:mod:`sluice.catalog.topology`); the supervisor compares successive
snapshots to find what changed (a deploy, an enabled flag, new settings, a config edit) and the
runner delivers with them. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.delivery.config import DEFAULT_RETRY_MAX_AGE_S
from sluice.filters import DestinationFilter
from sluice.functions.settings import SettingSpec
from sluice.pipeline.router import Route

__all__ = ["DestinationPlan", "FunctionPlan"]


@dataclass(frozen=True, slots=True, eq=True)
class FunctionPlan:
    """The insert function instance of a destination (or, for a ``function`` destination, the
    DESTINATION function that *is* the destination), running its deployed version."""

    instance_id: str
    function_id: str
    version_id: str
    enabled: bool
    language: str
    code: str
    resource_type: str
    batch_max_count: int
    schema: tuple[SettingSpec, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return "function.js" if self.language == "javascript" else "function.py"

    def pool_key(self) -> tuple[str, str, str, bytes]:
        """Two plans with the same key can share one worker pool (same code, same settings)."""
        return (
            self.instance_id,
            self.version_id,
            self.language,
            orjson.dumps(self.settings, option=orjson.OPT_SORT_KEYS),
        )


@dataclass(frozen=True, slots=True, eq=True)
class DestinationPlan:
    id: str
    name: str
    type: str
    enabled: bool
    source_ids: frozenset[str]
    config: Mapping[str, Any]
    function: FunctionPlan | None = None
    filters: tuple[DestinationFilter, ...] = ()

    @property
    def retry_max_age_s(self) -> float:
        return float(self.config.get("retryMaxAgeS", DEFAULT_RETRY_MAX_AGE_S))

    @property
    def is_function_destination(self) -> bool:
        return self.type == "function"

    @property
    def route(self) -> Route:
        return Route(
            destination_id=self.id,
            destination_name=self.name,
            enabled=self.enabled,
            source_ids=self.source_ids,
            instance_enabled=None if self.function is None else self.function.enabled,
            filters=self.filters,
        )

    def adapter_key(self) -> tuple[str, bytes]:
        return (self.type, orjson.dumps(self.config, option=orjson.OPT_SORT_KEYS))
