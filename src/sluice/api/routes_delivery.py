"""Delivery of a destination: outcome counts and samples, the live tail, dead letters and replay.

The catalog reads are synchronous (run in a thread); the recorder and the event log belong to
the pipeline's event loop, so the routes touching them are ``async``. In a process that runs no
pipeline (no recorder / event log) those routes answer 503 — after the permission and
existence checks, so an unknown destination is still a 404.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from sluice.api import schemas as s
from sluice.api.deps import ActorDep, CatalogDep
from sluice.catalog.access import Actor
from sluice.catalog.service import Catalog
from sluice.delivery.recorder import DeliveryRecorder, iso_at
from sluice.errors import Unavailable
from sluice.queue.base import DeadLetterRecord, EventLog

__all__ = ["router"]


RESPONSES: dict[int | str, dict[str, Any]] = {
    **s.ERROR_RESPONSES,
    503: {"model": s.ErrorEnvelope, "description": "this process runs no pipeline"},
}
router = APIRouter(responses=RESPONSES, tags=["delivery"])

DeliveryEnvelope = s.envelope("Delivery", "delivery", s.DeliveryOut)
DeadLettersEnvelope = s.envelope("DeadLetters", "deadLetters", list[s.DeadLetterOut])
ReplayEnvelope = s.envelope("Replay", "replay", s.ReplayOut)
QueueEnvelope = s.envelope("Queue", "queue", s.QueueOut)

Window = Literal["10m", "1h", "24h", "7d"]
MAX_INT = 2**63 - 1


def _recorder(request: Request) -> DeliveryRecorder:
    recorder: DeliveryRecorder | None = getattr(request.app.state, "recorder", None)
    if recorder is None:
        raise Unavailable("this server runs no pipeline: live outcomes are not available here")
    return recorder


def _event_log(request: Request) -> EventLog:
    log: EventLog | None = getattr(request.app.state, "event_log", None)
    if log is None:
        raise Unavailable("this server runs no pipeline: the event log is not available here")
    return log


async def _check(catalog: Catalog, actor: Actor, destination_id: str, *, manage: bool = False) -> None:
    await run_in_threadpool(catalog.delivery.require_destination, actor, destination_id, manage=manage)


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", errors="replace")


def _dead_letter(record: DeadLetterRecord) -> dict[str, Any]:
    return {
        "entryId": record.entry_id,
        "sourceId": record.source_id,
        "status": record.status,
        "reason": record.reason,
        "failedAt": iso_at(record.failed_at),
        "attempts": record.attempts,
        "firstAttemptAt": iso_at(record.first_attempt_at) if record.first_attempt_at is not None else None,
        "appendedAt": iso_at(record.appended_at),
        "event": _decode(record.payload),
    }


@router.get("/destinations/{destination_id}/delivery", response_model=DeliveryEnvelope)
def get_delivery(
    destination_id: str,
    actor: ActorDep,
    catalog: CatalogDep,
    window: Window = "1h",
    outcome: Annotated[str | None, Query(description="Only samples with this outcome")] = None,
) -> dict[str, Any]:
    """Outcome counts, p50/p95 end-to-end latency, a series and the newest samples of a window."""
    return {"data": {"delivery": catalog.delivery.view(actor, destination_id, window, outcome=outcome)}}


@router.get("/destinations/{destination_id}/outcomes", response_model=s.OutcomeLinesEnvelope)
async def get_outcomes(
    destination_id: str,
    request: Request,
    actor: ActorDep,
    catalog: CatalogDep,
    after: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """Per-event outcome lines newer than ``after`` (``sluice tail``); polling keeps them recorded."""
    await _check(catalog, actor, destination_id)
    recorder = _recorder(request)
    recorder.follow(destination_id)
    lines, cursor = recorder.lines(destination_id, after, limit)
    return {"data": {"lines": lines, "next": cursor}}


@router.get("/destinations/{destination_id}/dead-letters", response_model=DeadLettersEnvelope)
async def list_dead_letters(
    destination_id: str,
    request: Request,
    actor: ActorDep,
    catalog: CatalogDep,
    status: str | None = None,
    since: s.IsoDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Dead letters (e.g. ``expired``), oldest failure first."""
    await _check(catalog, actor, destination_id)
    log = _event_log(request)
    records = await log.dead_letters(destination_id, status=status, since=_epoch(since), limit=limit)
    return {"data": {"deadLetters": [_dead_letter(r) for r in records]}}


@router.post("/destinations/{destination_id}/replay", response_model=ReplayEnvelope)
async def replay(
    destination_id: str, request: Request, actor: ActorDep, catalog: CatalogDep, body: s.ReplayRequest | None = None
) -> dict[str, Any]:
    """Move matching dead letters back to the queue, due now, attempts reset."""
    await _check(catalog, actor, destination_id, manage=True)
    log = _event_log(request)
    status = body.status if body is not None else None
    since = _epoch(body.since) if body is not None else None
    replayed = await log.replay(destination_id, status=status, since=since)
    await run_in_threadpool(catalog.delivery.audit_replay, actor, destination_id, replayed, status, since)
    return {"data": {"replay": {"replayed": replayed}}}


@router.get("/destinations/{destination_id}/queue", response_model=QueueEnvelope)
async def get_queue(destination_id: str, request: Request, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    """What waits for the destination: new, scheduled (retries), leased, dead letters."""
    await _check(catalog, actor, destination_id)
    log = _event_log(request)
    stats = (await log.stats()).destinations.get(destination_id)
    if stats is None:
        queue = {"new": 0, "scheduled": 0, "leased": 0, "deadLetters": 0, "backlog": 0}
    else:
        queue = {
            "new": stats.new,
            "scheduled": stats.scheduled,
            "leased": stats.leased,
            "deadLetters": stats.dead_letters,
            "backlog": stats.backlog,
        }
    return {"data": {"queue": queue}}
