"""Actions-style destinations: subscriptions with FQL triggers and Segment mapping-kit mappings.

``sluice.actions.mapping`` evaluates mappings (``compile_mapping`` → ``Mapper``);
``sluice.actions.config`` validates and compiles an ``actions-webhook`` destination config.
Pure code, no I/O. Reference: ``docs/destinations.md``.
"""

from __future__ import annotations

from sluice.actions.config import (
    ACTIONS_WEBHOOK_TYPE,
    MAX_SUBSCRIPTIONS,
    Subscription,
    compile_subscriptions,
    matching_subscriptions,
    secret_header_values,
    validate_actions_config,
)
from sluice.actions.mapping import DIRECTIVES, Mapper, MappingError, compile_mapping, get_path

__all__ = [
    "ACTIONS_WEBHOOK_TYPE",
    "DIRECTIVES",
    "MAX_SUBSCRIPTIONS",
    "Mapper",
    "MappingError",
    "Subscription",
    "compile_mapping",
    "compile_subscriptions",
    "get_path",
    "matching_subscriptions",
    "secret_header_values",
    "validate_actions_config",
]
