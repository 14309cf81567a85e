"""Delivery outcomes (DESIGN §3.3) and the redacted request/response traces kept in samples.

Everything here is a value: adapters return :class:`DeliveryResult`, the pipeline records it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "MAX_TRACE_BODY_BYTES",
    "REDACTED",
    "DeliveryResult",
    "Outcome",
    "is_sensitive_header",
    "redact_text",
    "retryable",
    "trace_request",
    "trace_response",
]

REDACTED = "[REDACTED]"
MAX_TRACE_BODY_BYTES = 2048


class Outcome(StrEnum):
    """What finally (or for now) happened to one event on one destination."""

    DELIVERED = "delivered"
    FILTERED = "filtered"
    DROPPED = "dropped"
    UNSUPPORTED_EVENT_TYPE = "unsupported_event_type"
    MESSAGE_REJECTED = "message_rejected"
    RETRYING = "retrying"
    EXPIRED = "expired"
    BAD_REQUEST = "bad_request"
    INVALID_SETTINGS = "invalid_settings"
    TIMEOUT = "timeout"
    REJECTED_BY_DESTINATION = "rejected_by_destination"


_RETRYABLE_OUTCOMES = frozenset({Outcome.RETRYING, Outcome.TIMEOUT})


def retryable(outcome_or_status: Outcome | str | int) -> bool:
    """Whether an outcome, or a destination's HTTP status, calls for another attempt.

    Outcomes: ``retrying`` and ``timeout``. Statuses: 429 and 5xx (DESIGN §3.3).
    """
    if isinstance(outcome_or_status, str):
        return Outcome(outcome_or_status) in _RETRYABLE_OUTCOMES
    if isinstance(outcome_or_status, bool):
        raise TypeError("retryable() takes an Outcome or an HTTP status code, not a bool")
    return outcome_or_status == 429 or 500 <= outcome_or_status <= 599


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The result of one delivery attempt of one event (events of one request share it).

    ``request`` / ``response`` are redacted traces (see :func:`trace_request`), or ``None`` when
    there was no such exchange or tracing was off. ``retry_after_s`` is the destination's
    ``Retry-After`` (429/5xx) for the retry policy to honour.
    """

    outcome: Outcome
    reason: str
    status_code: int | None = None
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    duration_ms: float = 0.0
    retry_after_s: float | None = None

    @property
    def retryable(self) -> bool:
        return retryable(self.outcome)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": str(self.outcome),
            "reason": self.reason,
            "statusCode": self.status_code,
            "request": self.request,
            "response": self.response,
            "durationMs": self.duration_ms,
            "retryAfterS": self.retry_after_s,
        }


# --- redaction ------------------------------------------------------------------------------------

_SENSITIVE_HEADER_NAMES = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "apikey"}
)
_SENSITIVE_HEADER_PARTS = re.compile(r"auth|token|secret|key|password|passwd|signature|session|credential", re.I)


def is_sensitive_header(name: str) -> bool:
    """Authorization, cookies and anything named like a key, token, secret or password."""
    lowered = name.lower()
    return lowered in _SENSITIVE_HEADER_NAMES or bool(_SENSITIVE_HEADER_PARTS.search(lowered))


def _ordered_secrets(secrets: Iterable[str]) -> list[str]:
    # Longest first, so a secret containing another is replaced whole.
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each (non-empty) secret replaced by ``[REDACTED]``."""
    for secret in _ordered_secrets(secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_headers(
    headers: Iterable[tuple[str, str]], secrets: Sequence[str], also_redact: frozenset[str]
) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers:
        if is_sensitive_header(name) or name.lower() in also_redact:
            out[name] = REDACTED
        else:
            out[name] = redact_text(value, secrets)
    return out


def _body_trace(body: bytes, secrets: Sequence[str]) -> dict[str, Any]:
    # Redact before truncating, so a secret across the cut never leaks a prefix.
    text = redact_text(body.decode("utf-8", errors="replace"), secrets)
    data = text.encode("utf-8")
    truncated = len(data) > MAX_TRACE_BODY_BYTES
    if truncated:
        text = data[:MAX_TRACE_BODY_BYTES].decode("utf-8", errors="ignore")
    return {"body": text, "bodyBytes": len(body), "bodyTruncated": truncated}


def trace_request(
    method: str,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    *,
    secrets: Sequence[str] = (),
    redact_header_names: Iterable[str] = (),
) -> dict[str, Any]:
    """A sample-safe record of an outgoing request: secrets out, body cut to 2 KB."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    also = frozenset(n.lower() for n in redact_header_names)
    return {
        "method": method,
        "url": redact_text(url, secrets),
        "headers": _redact_headers(items, secrets, also),
        **_body_trace(body, secrets),
    }


def trace_response(
    status_code: int,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    *,
    secrets: Sequence[str] = (),
) -> dict[str, Any]:
    """A sample-safe record of a destination's answer."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {
        "status": status_code,
        "headers": _redact_headers(items, secrets, frozenset()),
        **_body_trace(body, secrets),
    }
