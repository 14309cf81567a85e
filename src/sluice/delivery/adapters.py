"""Destination adapters: send events over HTTP and return one :class:`DeliveryResult` per event.

Adapters never touch a queue: the pipeline acks, retries (with :mod:`sluice.delivery.retry`) or
dead-letters according to the results. Events are ``bytes`` (already-encoded JSON objects, sent
as they are) or ``dict`` (encoded with orjson).

Not here: the ``function`` destination type (resourceType DESTINATION) — the function itself is
the destination, so it is run by the functions runtime and its outcome comes from §3.3's
error mapping, not from an HTTP status.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson

from sluice.delivery.config import ADAPTER_TYPES, validate_config
from sluice.delivery.outcomes import (
    DeliveryResult,
    Outcome,
    is_sensitive_header,
    redact_text,
    retryable,
    trace_request,
    trace_response,
)
from sluice.errors import InvalidInput

if TYPE_CHECKING:
    from sluice.delivery.actions_adapter import ActionsWebhookAdapter

__all__ = [
    "ADAPTER_TYPES",
    "DestinationAdapter",
    "SegmentForwarderAdapter",
    "WebhookAdapter",
    "make_adapter",
    "map_status",
    "parse_retry_after",
    "validate_config",
]

Event = bytes | dict[str, Any]
#: The Tracking API's limit on one batch request (Segment: 500 KB).
SEGMENT_MAX_BATCH_BYTES = 500_000
_NOT_SECRET_HEADERS = frozenset({"content-type", "accept", "user-agent", "content-encoding"})


class DestinationAdapter(Protocol):
    async def send(self, events: Sequence[Event]) -> list[DeliveryResult]:
        """One result per event, in order; the events of one request share its result."""
        ...


def map_status(status: int) -> Outcome:
    """A destination's HTTP status as an outcome (DESIGN §3.3)."""
    if 200 <= status <= 299:
        return Outcome.DELIVERED
    if retryable(status):
        return Outcome.RETRYING
    # other 4xx, and anything else unexpected (3xx when redirects are not followed, 1xx)
    return Outcome.REJECTED_BY_DESTINATION


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date; ``None`` if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _encode(event: Event) -> bytes:
    return event if isinstance(event, bytes) else orjson.dumps(event)


def _chunks(encoded: list[bytes], max_count: int, max_bytes: int | None = None) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    size = 0
    for item in encoded:
        if chunk and (len(chunk) >= max_count or (max_bytes is not None and size + len(item) + 1 > max_bytes)):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        yield chunk


def _header_secrets(headers: Mapping[str, str]) -> list[str]:
    """Values of sensitive-named headers (and their credential part after a scheme)."""
    out: list[str] = []
    for name, value in headers.items():
        if is_sensitive_header(name) and value:
            out.append(value)
            scheme, _, credential = value.partition(" ")
            if credential and scheme.isalpha():
                out.append(credential.strip())
    return out


class _HttpAdapter:
    """Shared request/response handling: status mapping, timeouts, network errors, traces."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        timeout_ms: int,
        secrets: Sequence[str],
        redact_header_names: frozenset[str] = frozenset(),
        trace_delivered: bool = False,
    ) -> None:
        self._client = client
        self._timeout_s = timeout_ms / 1000
        self._secrets = [s for s in secrets if s]
        self._redact_header_names = redact_header_names
        self._trace_delivered = trace_delivered

    def _trace_req(self, request: httpx.Request, body: bytes) -> dict[str, Any]:
        return trace_request(
            request.method,
            str(request.url),
            request.headers.multi_items(),
            body,
            secrets=self._secrets,
            redact_header_names=self._redact_header_names,
        )

    async def _post(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> DeliveryResult:
        request = self._client.build_request(
            method, url, headers=headers, content=body, timeout=httpx.Timeout(self._timeout_s)
        )
        started = time.perf_counter()
        try:
            # httpx's timeouts are per phase; this bounds the whole exchange (a slow drip too).
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.send(request)
        except (TimeoutError, httpx.TimeoutException) as exc:
            what = type(exc).__name__ if isinstance(exc, httpx.TimeoutException) else "no complete answer"
            return DeliveryResult(
                Outcome.TIMEOUT,
                f"timed out after {self._timeout_s * 1000:.0f} ms ({what})",
                None,
                self._trace_req(request, body),
                None,
                _ms(started),
            )
        except httpx.HTTPError as exc:
            message = redact_text(str(exc) or "no detail", self._secrets)
            return DeliveryResult(
                Outcome.RETRYING,
                f"network error: {type(exc).__name__}: {message}",
                None,
                self._trace_req(request, body),
                None,
                _ms(started),
            )
        duration = _ms(started)
        status = response.status_code
        outcome = map_status(status)
        if outcome is Outcome.DELIVERED and not self._trace_delivered:
            return DeliveryResult(outcome, f"HTTP {status}", status, None, None, duration)
        retry_after = parse_retry_after(response.headers.get("retry-after")) if outcome is Outcome.RETRYING else None
        return DeliveryResult(
            outcome,
            f"HTTP {status}",
            status,
            self._trace_req(request, body),
            trace_response(status, response.headers.multi_items(), response.content, secrets=self._secrets),
            duration,
            retry_after,
        )

    async def _send_all(
        self, bodies: list[tuple[bytes, int]], send_one: Callable[[bytes], Awaitable[DeliveryResult]]
    ) -> list[DeliveryResult]:
        """Send each (body, event count) request concurrently; fan results out per event."""
        if len(bodies) == 1:
            results = [await send_one(bodies[0][0])]
        else:
            results = list(await asyncio.gather(*(send_one(body) for body, _ in bodies)))
        out: list[DeliveryResult] = []
        for result, (_, count) in zip(results, bodies, strict=True):
            out.extend([result] * count)
        return out


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class WebhookAdapter(_HttpAdapter):
    """Posts events to a URL: one JSON object per request (``batchSize`` 1) or JSON arrays of up
    to ``batchSize`` events. Config header values are masked in traces; ``secrets`` (e.g. the
    destination's other sensitive settings) are scrubbed from URL, headers and bodies."""

    type = "webhook"

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        client: httpx.AsyncClient,
        secrets: Sequence[str] = (),
        trace_delivered: bool = False,
    ) -> None:
        self.config = validate_config("webhook", config)
        headers: dict[str, str] = dict(self.config["headers"])
        if not any(name.lower() == "content-type" for name in headers):
            headers = {"Content-Type": "application/json", **headers}
        self._headers = headers
        super().__init__(
            client=client,
            timeout_ms=self.config["timeoutMs"],
            secrets=[*secrets, *_header_secrets(headers)],
            redact_header_names=frozenset(
                n.lower() for n in self.config["headers"] if n.lower() not in _NOT_SECRET_HEADERS
            ),
            trace_delivered=trace_delivered,
        )

    async def send(self, events: Sequence[Event]) -> list[DeliveryResult]:
        if not events:
            return []
        encoded = [_encode(e) for e in events]
        size = self.config["batchSize"]
        if size == 1:
            bodies = [(body, 1) for body in encoded]
        else:
            bodies = [(b"[" + b",".join(chunk) + b"]", len(chunk)) for chunk in _chunks(encoded, size)]
        return await self._send_all(bodies, self._send_body)

    async def _send_body(self, body: bytes) -> DeliveryResult:
        return await self._post(self.config["method"], self.config["url"], self._headers, body)


class SegmentForwarderAdapter(_HttpAdapter):
    """Forwards events to any Segment-compatible Tracking API (``{url}/v1/batch``, Basic auth
    ``writeKey:``): another sluice, Segment, a RudderStack data plane. Batches hold at most
    ``batchSize`` events (default 100) and about 500 KB."""

    type = "segment"

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        client: httpx.AsyncClient,
        secrets: Sequence[str] = (),
        trace_delivered: bool = False,
    ) -> None:
        self.config = validate_config("segment", config)
        write_key: str = self.config["writeKey"]
        token = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        self._headers = {"Content-Type": "application/json", "Authorization": f"Basic {token}"}
        self._endpoint = f"{self.config['url']}/v1/batch"
        super().__init__(
            client=client,
            timeout_ms=self.config["timeoutMs"],
            secrets=[*secrets, write_key, token],
            trace_delivered=trace_delivered,
        )

    async def send(self, events: Sequence[Event]) -> list[DeliveryResult]:
        if not events:
            return []
        encoded = [_encode(e) for e in events]
        overhead = 64  # {"batch":[ … ],"sentAt":"…"}
        bodies = [
            (self._batch_body(chunk), len(chunk))
            for chunk in _chunks(encoded, self.config["batchSize"], SEGMENT_MAX_BATCH_BYTES - overhead)
        ]
        return await self._send_all(bodies, self._send_body)

    @staticmethod
    def _batch_body(chunk: list[bytes]) -> bytes:
        sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return b'{"batch":[' + b",".join(chunk) + b'],"sentAt":"' + sent_at.encode() + b'"}'

    async def _send_body(self, body: bytes) -> DeliveryResult:
        return await self._post("POST", self._endpoint, self._headers, body)


def make_adapter(
    type: str,
    config: Mapping[str, Any],
    *,
    client: httpx.AsyncClient,
    secrets: Sequence[str] = (),
    trace_delivered: bool = False,
) -> DestinationAdapter | ActionsWebhookAdapter:
    """The adapter for a destination type; ``InvalidInput`` for a bad config or unknown type."""
    if type == "webhook":
        return WebhookAdapter(config, client=client, secrets=secrets, trace_delivered=trace_delivered)
    if type == "segment":
        return SegmentForwarderAdapter(config, client=client, secrets=secrets, trace_delivered=trace_delivered)
    if type == "actions-webhook":
        from sluice.delivery.actions_adapter import ActionsWebhookAdapter  # it builds on _HttpAdapter here

        return ActionsWebhookAdapter(config, client=client, secrets=secrets, trace_delivered=trace_delivered)
    raise InvalidInput(f"destination type {type!r} has no delivery adapter", field="type")
