"""The Tracking API (DESIGN §4.1): ``POST /v1/track|identify|page|screen|group|alias|batch|import``.

A Starlette app built by :func:`create_ingest_app` from injected dependencies; the server mounts
it at ``/`` beside ``/api``. Per request: write key → source (401 if unknown or disabled) →
backlog gate (429) → bounded, gunzipped body (400 over the limits) → JSON → per event: batch
defaults merged, ``messageId`` assigned, ``receivedAt``/``timestamp`` set, validated, checked for
duplicates → **one** ``log.append`` → 200 only once it returned.

Decisions:

* Like Segment's HTTP API, a request whose events are all invalid or duplicates still answers
  200 ``{"success": true}``: the events are not appended and are counted in :class:`IngestStats`
  (failed per source × reason code, duplicates per source).
* An event whose final encoding (with the fields ingest adds and the merged batch ``context``)
  exceeds the per-event limit makes the whole request a 400 naming the limit and the event index.
* A batch's top-level ``sentAt`` (analytics-python sends it there) applies to items without one.
* ``writeKey`` is a credential: it is removed from stored events. The Basic-auth key wins over
  a body ``writeKey``.
* Write keys are cached for ``write_key_ttl_s`` (default 5 s; unknown keys too), so disabling a
  source or removing a key takes effect within that time. A miss calls ``resolve_write_key`` in
  a worker thread.
* The backlog (``log.backlog()``, a DB query) is read at most every ``backlog_ttl_s`` (100 ms);
  over ``max_backlog`` → 429 with ``Retry-After`` and nothing appended. If reading it fails the
  last value is kept.
* ``resolve_write_key`` raising (the catalog DB is down) → 503 with ``Retry-After: 1``.
* ``log.append`` raising → 503 ``{"success": false, "error": …}`` with ``Retry-After``; nothing is
  acknowledged nor remembered for dedupe, so the client's retry is accepted.
* Only client-supplied ``messageId`` values are checked for and remembered as duplicates (an id
  ingest generated is new by construction); a repeat inside one request is a duplicate too.
* An event orjson cannot re-encode (nesting deeper than 254) fails with ``not_encodable``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sluice.events import MAX_EVENT_BYTES, ensure_message_id, merge_batch_defaults, normalize_timestamps, validate_event
from sluice.ingest.dedupe import Deduplicator
from sluice.ingest.request import IngestError, decode_json, read_body, write_key_from_basic_auth
from sluice.ingest.stats import IngestStats
from sluice.queue.base import EventLog

__all__ = ["DEFAULT_MAX_BACKLOG", "ENDPOINTS", "IngestLimits", "WriteKeyResolver", "create_ingest_app"]

log_ = logging.getLogger(__name__)

SINGLE_TYPES: Final[tuple[str, ...]] = ("track", "identify", "page", "screen", "group", "alias")
BATCH_KINDS: Final[tuple[str, ...]] = ("batch", "import")
ENDPOINTS: Final[tuple[str, ...]] = tuple(f"/v1/{k}" for k in SINGLE_TYPES + BATCH_KINDS)
DEFAULT_MAX_BACKLOG: Final = 1_000_000
NOT_ENCODABLE: Final = "not_encodable"

_OK: Final = b'{"success":true}'

WriteKeyResolver = Callable[[str], "tuple[str, bool] | None"]
"""``SourcesService.resolve_write_key``: key → (source id, enabled), or None. Synchronous."""


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """Segment's limits: 32 KB per event, 500 KB per request (decompressed), 2,500 events per batch."""

    max_event_bytes: int = MAX_EVENT_BYTES
    max_request_bytes: int = 500 * 1024
    max_batch_events: int = 2500


class _WriteKeys:
    """A small TTL cache in front of the (synchronous, DB-backed) write-key lookup."""

    def __init__(self, resolve: WriteKeyResolver, clock: Callable[[], float], ttl_s: float, max_entries: int) -> None:
        self._resolve = resolve
        self._clock = clock
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, tuple[str, bool] | None]] = {}

    async def source_for(self, key: str) -> str:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and 0 <= now - hit[0] < self._ttl_s:
            found = hit[1]
        else:
            try:
                found = await anyio.to_thread.run_sync(self._resolve, key)
            except Exception as exc:
                log_.exception("ingest: resolving a write key failed")
                raise IngestError(
                    503, f"the write key could not be checked ({type(exc).__name__}); retry later", retry_after_s=1
                ) from exc
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            self._cache[key] = (now, found)
        if found is None:
            raise IngestError(401, "invalid write key")
        if not found[1]:
            raise IngestError(401, "the source of this write key is disabled")
        return found[0]


class _BacklogGate:
    def __init__(self, log: EventLog, max_backlog: int | None, clock: Callable[[], float], ttl_s: float) -> None:
        self._log = log
        self._max = max_backlog
        self._clock = clock
        self._ttl_s = ttl_s
        self._read_at = float("-inf")
        self._value = 0

    async def check(self, retry_after_s: int) -> None:
        if self._max is None:
            return
        now = self._clock()
        if not 0 <= now - self._read_at < self._ttl_s:
            self._read_at = now
            try:
                self._value = await self._log.backlog()
            except Exception:
                log_.exception("ingest: reading the event-log backlog failed; keeping the last value")
        if self._value > self._max:
            raise IngestError(
                429, f"too many events waiting for delivery; retry in {retry_after_s} s", retry_after_s=retry_after_s
            )


class _Ingest:
    def __init__(
        self,
        *,
        write_keys: _WriteKeys,
        log: EventLog,
        dedupe: Deduplicator,
        gate: _BacklogGate,
        stats: IngestStats,
        limits: IngestLimits,
        clock: Callable[[], float],
        new_message_id: Callable[[], str],
        retry_after_s: int,
        on_appended: Callable[[str, int], None] | None = None,
    ) -> None:
        self.on_appended = on_appended
        self.write_keys = write_keys
        self.log = log
        self.dedupe = dedupe
        self.gate = gate
        self.stats = stats
        self.limits = limits
        self.clock = clock
        self.new_message_id = new_message_id
        self.retry_after_s = retry_after_s

    def endpoint(self, kind: str) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            try:
                await self.ingest(request, kind)
            except IngestError as exc:
                self.stats.add_refused(exc.status)
                headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
                body = orjson.dumps({"success": False, "error": exc.message})
                return Response(body, status_code=exc.status, media_type="application/json", headers=headers)
            return Response(_OK, media_type="application/json")

        handle.__name__ = f"ingest_{kind}"
        return handle

    async def ingest(self, request: Request, kind: str) -> None:
        header_key = write_key_from_basic_auth(request.headers.get("authorization"))
        source_id: str | None = None
        if header_key is not None:
            source_id = await self.write_keys.source_for(header_key)
            await self.gate.check(self.retry_after_s)
        raw = await read_body(
            request.stream(),
            content_encoding=request.headers.get("content-encoding"),
            content_length=request.headers.get("content-length"),
            limit=self.limits.max_request_bytes,
        )
        body = decode_json(raw)
        del raw
        if not isinstance(body, dict):
            raise IngestError(400, "the request body must be a JSON object")
        body_key = body.pop("writeKey", None)
        if source_id is None:
            if not isinstance(body_key, str) or not body_key:
                raise IngestError(401, "no write key: send it as the Basic auth user or as writeKey in the body")
            source_id = await self.write_keys.source_for(body_key)
            await self.gate.check(self.retry_after_s)
        await self.process(source_id, kind, body)

    async def process(self, source_id: str, kind: str, body: dict[str, Any]) -> None:
        limits = self.limits
        is_batch = kind in BATCH_KINDS
        if is_batch:
            items = body.get("batch")
            if not isinstance(items, list):
                raise IngestError(400, 'the request body must have a "batch" array')
            if len(items) > limits.max_batch_events:
                raise IngestError(
                    400, f"batch has {len(items)} events, more than the limit of {limits.max_batch_events}"
                )
            context, integrations, sent_at = body.get("context"), body.get("integrations"), body.get("sentAt")
        else:
            body["type"] = kind
            items = [body]
            context = integrations = sent_at = None
        merge = bool(isinstance(context, dict) and context) or bool(isinstance(integrations, dict) and integrations)

        now = self.clock()
        received_at = datetime.fromtimestamp(now, UTC)
        failed: Counter[str] = Counter()
        encoded: list[bytes] = []
        client_ids: list[str] = []  # parallel to encoded; "" for ids ingest generated
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                failed[validate_event(item)[0].code] += 1
                continue
            if merge:
                item = merge_batch_defaults(item, context=context, integrations=integrations)
            if is_batch:
                item.pop("writeKey", None)
                if sent_at is not None and item.get("sentAt") is None:
                    item["sentAt"] = sent_at
            sent_id = item.get("messageId")
            event = normalize_timestamps(ensure_message_id(item, self.new_message_id), received_at=received_at)
            try:
                data = orjson.dumps(event)
            except orjson.JSONEncodeError:
                failed[NOT_ENCODABLE] += 1
                continue
            if len(data) > limits.max_event_bytes:
                where = f"event {index} of the batch" if is_batch else "the event"
                raise IngestError(
                    400, f"{where} is {len(data)} bytes, more than the limit of {limits.max_event_bytes // 1024} KB"
                )
            violations = validate_event(event, max_bytes=limits.max_event_bytes, encoded_size=len(data))
            if violations:
                failed[violations[0].code] += 1
                continue
            encoded.append(data)
            client_ids.append(sent_id if isinstance(sent_id, str) else "")

        duplicates = 0
        sent_ids = [mid for mid in client_ids if mid]
        if sent_ids:
            try:
                known = await self.dedupe.duplicates(source_id, sent_ids, now)
            except Exception as exc:  # nothing stored yet: the client retries the whole request
                log_.exception("ingest: duplicate check for source %s failed", source_id)
                raise IngestError(
                    503,
                    f"the duplicate check failed ({type(exc).__name__}); nothing was accepted, retry later",
                    retry_after_s=self.retry_after_s,
                ) from exc
            kept: list[bytes] = []
            seen: set[str] = set()
            for data, mid in zip(encoded, client_ids, strict=True):
                if mid:
                    if mid in known or mid in seen:
                        duplicates += 1
                        continue
                    seen.add(mid)
                kept.append(data)
            encoded = kept
            sent_ids = list(seen)

        if encoded:
            try:
                await self.log.append(source_id, encoded)
            except Exception as exc:
                log_.exception("ingest: appending %d events for source %s failed", len(encoded), source_id)
                raise IngestError(
                    503,
                    f"the events could not be stored ({type(exc).__name__}); nothing was accepted, retry later",
                    retry_after_s=self.retry_after_s,
                ) from exc
            if self.on_appended is not None:
                self.on_appended(source_id, len(encoded))
            if sent_ids:
                try:
                    await self.dedupe.remember(source_id, sent_ids, now)
                except Exception:  # the events are stored: accept them; a client retry may duplicate (at-least-once)
                    log_.exception("ingest: remembering %d messageIds for source %s failed", len(sent_ids), source_id)
        self.stats.add_accepted(source_id, len(encoded))
        self.stats.add_failed(source_id, failed)
        self.stats.add_duplicates(source_id, duplicates)


def _uuid4() -> str:
    return str(uuid.uuid4())


def create_ingest_app(
    *,
    resolve_write_key: WriteKeyResolver,
    log: EventLog,
    dedupe: Deduplicator,
    clock: Callable[[], float] = time.time,
    max_backlog: int | None = DEFAULT_MAX_BACKLOG,
    stats: IngestStats | None = None,
    limits: IngestLimits | None = None,
    new_message_id: Callable[[], str] = _uuid4,
    write_key_ttl_s: float = 5.0,
    write_key_cache_size: int = 10_000,
    backlog_ttl_s: float = 0.1,
    retry_after_s: int = 1,
    on_appended: Callable[[str, int], None] | None = None,
) -> Starlette:
    """The Tracking API as a Starlette app. ``clock`` is epoch seconds (``receivedAt``, dedupe, caches).

    ``on_appended(source_id, n)`` is called after each committed append (the pipeline's wake-up).
    ``max_backlog=None`` disables the 429 gate. ``stats`` (created when omitted) is also reachable
    as ``app.state.ingest_stats``.
    """
    stats = IngestStats() if stats is None else stats
    ingest = _Ingest(
        write_keys=_WriteKeys(resolve_write_key, clock, write_key_ttl_s, write_key_cache_size),
        log=log,
        dedupe=dedupe,
        gate=_BacklogGate(log, max_backlog, clock, backlog_ttl_s),
        stats=stats,
        limits=IngestLimits() if limits is None else limits,
        clock=clock,
        new_message_id=new_message_id,
        retry_after_s=retry_after_s,
        on_appended=on_appended,
    )
    routes = [Route(f"/v1/{kind}", ingest.endpoint(kind), methods=["POST"]) for kind in SINGLE_TYPES + BATCH_KINDS]
    app = Starlette(routes=routes)
    app.state.ingest_stats = stats
    return app
