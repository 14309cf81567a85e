"""Destination filters (Segment's): an FQL condition plus DROP / SAMPLE / DROP_PROPERTIES /
ALLOW_PROPERTIES actions, per source→destination pair. Pure: parsing and evaluation, no I/O.

>>> flt = parse_filter({"if": "all", "actions": [{"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}}]})
>>> apply_filters([flt], "src_1", {"type": "track", "properties": {"email": "a@b.c", "plan": "pro"}})
Kept(event={'type': 'track', 'properties': {'plan': 'pro'}}, changed=True)
"""

from __future__ import annotations

from sluice.filters.engine import Dropped, FilterOutcome, Kept, apply_filters, sample_bucket
from sluice.filters.model import (
    ACTION_TYPES,
    ALWAYS_KEPT,
    MAX_FQL_BYTES,
    MAX_TITLE,
    UNDROPPABLE,
    Action,
    AllowProperties,
    DestinationFilter,
    Drop,
    DropProperties,
    Predicate,
    Sample,
    compile_condition,
    parse_actions,
    parse_filter,
)

__all__ = [
    "ACTION_TYPES",
    "ALWAYS_KEPT",
    "MAX_FQL_BYTES",
    "MAX_TITLE",
    "UNDROPPABLE",
    "Action",
    "AllowProperties",
    "DestinationFilter",
    "Drop",
    "DropProperties",
    "Dropped",
    "FilterOutcome",
    "Kept",
    "Predicate",
    "Sample",
    "apply_filters",
    "compile_condition",
    "parse_actions",
    "parse_filter",
    "sample_bucket",
]
