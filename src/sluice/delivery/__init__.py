"""Delivery to destinations: pure decisions and adapters that return outcome values.

Nothing here touches a queue; the pipeline records outcomes, acks, schedules retries and
dead-letters according to the values returned.
"""

from __future__ import annotations

from sluice.delivery.adapters import (
    DestinationAdapter,
    SegmentForwarderAdapter,
    WebhookAdapter,
    make_adapter,
    map_status,
    parse_retry_after,
)
from sluice.delivery.config import ADAPTER_TYPES, validate_config
from sluice.delivery.outcomes import DeliveryResult, Outcome, retryable
from sluice.delivery.retry import Expire, RetryAt, RetryDecision, RetryPolicy
from sluice.delivery.secrets import SENSITIVE_PATHS, mask_config, secrets_of

__all__ = [
    "ADAPTER_TYPES",
    "SENSITIVE_PATHS",
    "DeliveryResult",
    "DestinationAdapter",
    "Expire",
    "Outcome",
    "RetryAt",
    "RetryDecision",
    "RetryPolicy",
    "SegmentForwarderAdapter",
    "WebhookAdapter",
    "make_adapter",
    "map_status",
    "mask_config",
    "parse_retry_after",
    "retryable",
    "secrets_of",
    "validate_config",
]
