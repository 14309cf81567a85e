"""One leased batch through a destination's stages, as values (DESIGN §2, §3.3).

:func:`process` takes the leased entries and a :class:`Generation` (the plan with its worker pool
and adapter) and returns a :class:`Settlement`: which entries to ack, retry at what time, or
dead-letter, and what to record. It never touches the queue; the runner applies the settlement.

Decisions:

* Outcomes that a fix of the function, its settings or the destination could change go to the
  dead-letter store, so they can be replayed: ``expired``, ``bad_request``, ``invalid_settings``,
  ``rejected_by_destination``. The others are final and acked: ``delivered``, ``filtered``,
  ``dropped``, ``unsupported_event_type``, ``message_rejected`` (the function's own verdicts).
* ``retrying`` and ``timeout`` go through the retry policy (full jitter, per-destination max age).
* The routing stage decodes an event only when its bytes contain ``"integrations"``: without
  that key the integrations object cannot block it (and filters before FQL need no event).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.delivery.actions_adapter import ActionsWebhookAdapter
from sluice.delivery.adapters import DestinationAdapter
from sluice.delivery.outcomes import DeliveryResult, Outcome
from sluice.delivery.recorder import DeliveryRecorder, OutcomeLine, Sample
from sluice.delivery.retry import Expire, RetryPolicy
from sluice.errors import FunctionLoadError, SluiceError
from sluice.functions.pool import WorkerPool
from sluice.pipeline.plan import DestinationPlan
from sluice.pipeline.router import Filtered, Route, decide
from sluice.queue.base import DeadLetter, Leased

__all__ = ["DEAD_LETTER_OUTCOMES", "Generation", "Settlement", "process"]

DEAD_LETTER_OUTCOMES = frozenset(
    {Outcome.EXPIRED, Outcome.BAD_REQUEST, Outcome.INVALID_SETTINGS, Outcome.REJECTED_BY_DESTINATION}
)
_RETRY_OUTCOMES = frozenset({Outcome.RETRYING, Outcome.TIMEOUT})
#: Which of several outcomes decides an entry's fate in the queue (higher wins).
_RANK = {Outcome.DELIVERED: 0, **dict.fromkeys(DEAD_LETTER_OUTCOMES, 2), **dict.fromkeys(_RETRY_OUTCOMES, 3)}
_FUNCTION_STATUS = {
    "filtered": Outcome.FILTERED,
    "dropped": Outcome.DROPPED,
    "unsupported_event_type": Outcome.UNSUPPORTED_EVENT_TYPE,
    "message_rejected": Outcome.MESSAGE_REJECTED,
    "retry": Outcome.RETRYING,
    "timeout": Outcome.TIMEOUT,
    "bad_request": Outcome.BAD_REQUEST,
    "invalid_settings": Outcome.INVALID_SETTINGS,
}


@dataclass(slots=True)
class Generation:
    """A destination's plan with the pool and adapter built for it. Replaced when the plan changes;
    the runner closes a replaced generation's pool once no batch uses it."""

    plan: DestinationPlan
    route: Route
    pool: WorkerPool | None = None
    adapter: DestinationAdapter | ActionsWebhookAdapter | None = None
    load_error: FunctionLoadError | None = None
    users: int = 0
    retired: bool = False

    @property
    def batch_capable(self) -> bool:
        fn = self.plan.function
        return (
            fn is not None
            and fn.enabled
            and self.pool is not None
            and "batch" in self.pool.handlers
            and fn.batch_max_count > 1
        )


@dataclass(slots=True)
class Settlement:
    acks: list[str] = field(default_factory=list)
    retries: dict[str, float] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Extra:
    """What a sample shows beside the input: the function's error, logs and fetch traces, and the
    exchange with the destination."""

    error: dict[str, str] | None = None
    logs: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    retry_after_s: float | None = None


_NO_EXTRA = _Extra()


class _Batch:
    def __init__(
        self,
        gen: Generation,
        recorder: DeliveryRecorder,
        policy: RetryPolicy,
        rng: random.Random,
        now: float,
    ) -> None:
        self.gen = gen
        self.dest = gen.plan.id
        self.recorder = recorder
        self.policy = policy
        self.rng = rng
        self.now = now
        self.out = Settlement()
        self.tail = recorder.following(self.dest)
        self._decoded: dict[str, Any] = {}
        #: events changed by destination filters (entry id → event), sent on instead of the stored one
        self.changed: dict[str, dict[str, Any]] = {}
        #: actions destinations: the subscriptions each event's triggers fired (before the function)
        self.fired: dict[str, tuple[int, ...]] = {}

    def input_bytes(self, item: Leased) -> bytes:
        """What the function (or the adapter) gets: the stored bytes, or the filtered event."""
        changed = self.changed.get(item.entry_id)
        return item.payload if changed is None else orjson.dumps(changed)

    def input_event(self, item: Leased) -> Any:
        changed = self.changed.get(item.entry_id)
        return self.event_of(item) if changed is None else changed

    def event_of(self, item: Leased) -> Any:
        if item.entry_id not in self._decoded:
            try:
                self._decoded[item.entry_id] = orjson.loads(item.payload)
            except orjson.JSONDecodeError:
                self._decoded[item.entry_id] = None
        return self._decoded[item.entry_id]

    def dispose(self, item: Leased, outcome: Outcome, code: str, reason: str, extra: _Extra = _NO_EXTRA) -> None:
        if outcome in _RETRY_OUTCOMES:
            decision = self.policy.decide(
                item.attempts + 1,
                item.first_attempt_at if item.first_attempt_at is not None else self.now,
                self.now,
                self.rng,
                retry_after_s=extra.retry_after_s,
            )
            if isinstance(decision, Expire):
                self._note(item, outcome, code, reason, extra)  # the last attempt, then …
                outcome, reason = Outcome.EXPIRED, f"{reason}; {decision.reason}"
                self.out.dead.append(DeadLetter(item.entry_id, str(outcome), reason, self.now))
            else:
                self.out.retries[item.entry_id] = decision.when
        elif outcome in DEAD_LETTER_OUTCOMES:
            self.out.dead.append(DeadLetter(item.entry_id, str(outcome), reason, self.now))
        else:
            self.out.acks.append(item.entry_id)
            if outcome is Outcome.DELIVERED:
                self.out.latencies_ms.append(max(0.0, (self.now - item.appended_at) * 1000))
        self._note(item, outcome, code, reason, extra)

    def dispose_each(self, item: Leased, parts: Sequence[tuple[Outcome, str, str, _Extra]]) -> None:
        """Several outcomes for one entry (an actions destination's subscriptions): each is
        counted; the entry is retried if any part is to be retried, else dead-lettered if any
        part is, else acked."""
        worst = max(parts, key=lambda part: _RANK.get(part[0], 1))
        self.dispose(item, *worst)
        for part in parts:
            if part is not worst:
                self._note(item, *part)

    def _note(self, item: Leased, outcome: Outcome, code: str, reason: str, extra: _Extra) -> None:
        self.out.counts[(str(outcome), code)] += 1
        if outcome is not Outcome.DELIVERED and self.recorder.wants_sample(self.dest, str(outcome), code, self.now):
            event = self.event_of(item)
            self.recorder.sample(
                Sample(
                    destination_id=self.dest,
                    at=self.now,
                    outcome=str(outcome),
                    reason_code=code,
                    reason=reason,
                    source_id=item.source_id,
                    message_id=event.get("messageId") if isinstance(event, dict) else None,
                    event=event,
                    error=extra.error,
                    logs=list(extra.logs),
                    requests=list(extra.requests),
                    request=extra.request,
                    response=extra.response,
                    attempts=item.attempts + 1,
                )
            )
        if self.tail:
            event = self.event_of(item)
            ok = isinstance(event, dict)
            self.recorder.record_line(
                self.dest,
                OutcomeLine(
                    at=self.now,
                    outcome=str(outcome),
                    reason=reason,
                    source_id=item.source_id,
                    message_id=event.get("messageId") if ok else None,
                    type=event.get("type") if ok else None,
                    event_name=event.get("event") if ok else None,
                    attempts=item.attempts + 1,
                ),
            )


def _routing_view(payload: bytes) -> dict[str, Any] | None:
    """What the router reads of an event: ``{}`` when it has no integrations object."""
    if b'"integrations"' not in payload:
        return {}
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


def _error_of(result: dict[str, Any]) -> dict[str, str] | None:
    error = result.get("error")
    return error if isinstance(error, dict) else None


def _function_verdict(status: str, error: dict[str, str] | None) -> tuple[Outcome, str, str]:
    outcome = _FUNCTION_STATUS.get(status, Outcome.BAD_REQUEST)
    if outcome is Outcome.FILTERED:
        return outcome, "insert_function", "the insert function returned no event"
    if error is None:
        return outcome, status, status.replace("_", " ")
    code = error.get("type") or status
    return outcome, code, f"{code}: {error.get('message', '')}"


async def process(
    gen: Generation,
    leased: Sequence[Leased],
    *,
    recorder: DeliveryRecorder,
    policy: RetryPolicy,
    rng: random.Random,
    clock: Callable[[], float],
    batch_mode: bool = False,
) -> Settlement:
    """Route, run the function, send to the adapter; every entry ends in the settlement once."""
    batch = _Batch(gen, recorder, policy, rng, clock())
    plan = gen.plan
    actions = gen.adapter if isinstance(gen.adapter, ActionsWebhookAdapter) else None
    plain = None if isinstance(gen.adapter, ActionsWebhookAdapter) else gen.adapter
    decode_all = actions is not None or bool(gen.route.filters)
    to_function: list[Leased] = []
    to_adapter: list[tuple[Leased, bytes | dict[str, Any]]] = []
    for item in leased:
        view = batch.event_of(item) if decode_all else _routing_view(item.payload)
        if not isinstance(view, dict):
            batch.dispose(item, Outcome.BAD_REQUEST, "invalid_event", "the stored event is not a JSON object")
            continue
        decision = decide(gen.route, item.source_id, view, rng=rng)
        if isinstance(decision, Filtered):
            batch.dispose(item, Outcome.FILTERED, decision.by, decision.reason)
            continue
        if decision.event is not None:
            batch.changed[item.entry_id] = decision.event
        if actions is not None:  # triggers see the event before the function, as in Segment
            fired = actions.triggered(decision.event if decision.event is not None else view)
            if not fired:
                batch.dispose(item, Outcome.FILTERED, "trigger", "no subscription's trigger matched the event")
                continue
            batch.fired[item.entry_id] = fired
        if decision.use_function:
            to_function.append(item)
        elif plan.is_function_destination:
            batch.dispose(item, Outcome.FILTERED, "disabled", f"destination function of {plan.name!r} is not enabled")
        else:
            to_adapter.append((item, batch.input_bytes(item)))
    if to_function:
        to_adapter.extend(await _run_function(batch, to_function, batch_mode))
    if to_adapter:
        if actions is not None:
            await _send_actions(batch, actions, to_adapter)
        else:
            await _send(batch, plain, to_adapter)
    return batch.out


async def _run_function(
    batch: _Batch, items: list[Leased], batch_mode: bool
) -> list[tuple[Leased, bytes | dict[str, Any]]]:
    gen = batch.gen
    if gen.load_error is not None:
        error = {"type": type(gen.load_error).__name__, "message": str(gen.load_error)}
        for item in items:
            batch.dispose(
                item, Outcome.BAD_REQUEST, error["type"], f"{error['type']}: {error['message']}", _Extra(error)
            )
        return []
    pool = gen.pool
    forward: list[tuple[Leased, bytes | dict[str, Any]]] = []
    try:
        if pool is None:
            raise SluiceError("the function's worker pool is not running")
        if batch_mode:
            events = [batch.input_event(item) for item in items]
            reply = await pool.run_batch(events)
            shared = _Extra(_error_of(reply), list(reply.get("logs", [])), list(reply.get("requests", [])))
            pairs: list[tuple[Leased, dict[str, Any], _Extra]] = [
                (item, slot, _Extra(_error_of(slot) or shared.error, shared.logs, shared.requests))
                for item, slot in zip(items, reply["results"], strict=True)
            ]
        else:
            results = await pool.run_encoded_events([batch.input_bytes(item) for item in items])
            pairs = [
                (item, result, _Extra(_error_of(result), result["logs"], result["requests"]))
                for item, result in zip(items, results, strict=True)
            ]
    except SluiceError as exc:  # the runtime itself failed (worker could not start, pool closed)
        reason = f"function runtime unavailable: {exc}"
        for item in items:
            batch.dispose(item, Outcome.RETRYING, "runtime_unavailable", reason)
        return []
    is_destination = gen.plan.is_function_destination
    for item, result, extra in pairs:
        status = result["status"]
        if status == "ok" or (is_destination and status == "filtered"):
            if is_destination:  # the function is the destination: returning means accepted
                batch.dispose(item, Outcome.DELIVERED, "function", "the destination function returned")
            elif result.get("event") is None:
                batch.dispose(item, Outcome.FILTERED, "insert_function", "the insert function returned no event")
            else:
                forward.append((item, result["event"]))
            continue
        outcome, code, reason = _function_verdict(status, extra.error)
        batch.dispose(item, outcome, code, reason, extra)
    return forward


async def _send(
    batch: _Batch, adapter: DestinationAdapter | None, items: list[tuple[Leased, bytes | dict[str, Any]]]
) -> None:
    if adapter is None:
        for item, _ in items:
            batch.dispose(
                item, Outcome.BAD_REQUEST, "no_adapter", f"destination type {batch.gen.plan.type!r} cannot send"
            )
        return
    try:
        results: Sequence[DeliveryResult] = await adapter.send([event for _, event in items])
    except Exception as exc:  # an adapter bug must not lose the batch: retry it
        _retry_all(batch, [item for item, _ in items], exc)
        return
    for (item, _), result in zip(items, results, strict=True):
        if result.outcome is Outcome.DELIVERED:
            batch.dispose(item, Outcome.DELIVERED, "", result.reason)
            continue
        code = _result_code(result)
        extra = _Extra(request=result.request, response=result.response, retry_after_s=result.retry_after_s)
        batch.dispose(item, result.outcome, code, result.reason, extra)


async def _send_actions(
    batch: _Batch, adapter: ActionsWebhookAdapter, items: list[tuple[Leased, bytes | dict[str, Any]]]
) -> None:
    """Map and send each event for the subscriptions its triggers fired; one outcome per subscription."""
    events: list[tuple[Leased, dict[str, Any]]] = []
    for item, event in items:
        decoded = orjson.loads(event) if isinstance(event, bytes) else event
        if isinstance(decoded, dict):
            events.append((item, decoded))
        else:
            batch.dispose(
                item, Outcome.BAD_REQUEST, "invalid_event", "the function returned an event that is not an object"
            )
    try:
        results = await adapter.send_mapped([(event, batch.fired[item.entry_id]) for item, event in events])
    except Exception as exc:  # an adapter bug must not lose the batch: retry it
        _retry_all(batch, [item for item, _ in events], exc)
        return
    for (item, _), per_subscription in zip(events, results, strict=True):
        parts = []
        for name, result in per_subscription:
            code = name if result.outcome is Outcome.DELIVERED else f"{name}: {_result_code(result)}"
            extra = _Extra(request=result.request, response=result.response, retry_after_s=result.retry_after_s)
            parts.append((result.outcome, code, f"subscription {name!r}: {result.reason}", extra))
        batch.dispose_each(item, parts)


def _retry_all(batch: _Batch, items: list[Leased], exc: Exception) -> None:
    reason = f"adapter failed: {type(exc).__name__}: {exc}"
    for item in items:
        batch.dispose(item, Outcome.RETRYING, "adapter_error", reason)


def _result_code(result: DeliveryResult) -> str:
    if result.status_code is not None:
        return f"HTTP {result.status_code}"
    return "network_error" if result.outcome is Outcome.RETRYING else str(result.outcome)
