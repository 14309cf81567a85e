"""Delivery routes: metrics and samples, the live tail, dead letters, replay and the queue."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from sluice.api.app import create_app
from sluice.catalog.access import SYSTEM
from sluice.catalog.service import Catalog
from sluice.config import Config
from sluice.delivery.recorder import DeliveryRecorder, OutcomeLine, RecorderBatch, Sample
from sluice.queue.base import DeadLetter, EventLog
from sluice.queue.memory import MemoryEventLog
from sluice.queue.nats import NatsEventLog
from tests.api.conftest import Api
from tests.nats_util import require_nats, unique_prefix

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Pipeline:
    def __init__(self, backend: str = "memory") -> None:
        self.clock = Clock()
        self.recorder = DeliveryRecorder(clock=self.clock)
        self.log: EventLog
        if backend == "nats":  # the scale-out log: dead letters and replay live in JetStream streams
            self.log = NatsEventLog(require_nats(), prefix=unique_prefix(), clock=self.clock)
        else:
            self.log = MemoryEventLog(clock=self.clock)


@pytest.fixture(params=["memory", "nats"])
async def pipeline(request: pytest.FixtureRequest) -> AsyncIterator[Pipeline]:
    state = Pipeline(request.param)
    yield state
    if isinstance(state.log, NatsEventLog):
        await state.log.delete_everything()
    await state.log.close()


@pytest.fixture
async def papi(database_url: str, tmp_path: Path, pipeline: Pipeline) -> AsyncIterator[Api]:
    """The API of a process that runs the pipeline: a recorder and an event log, clocks at T0."""
    data_dir = tmp_path / "data"
    catalog = Catalog.open(
        Config(data_dir=data_dir, database_url=database_url),
        clock=lambda: datetime.fromtimestamp(pipeline.clock(), UTC),
    )
    token = catalog.admin.bootstrap_owner(data_dir, None)
    assert token is not None
    app = create_app(catalog, recorder=pipeline.recorder, event_log=pipeline.log)
    owner = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sluice/api",
        headers={"Authorization": f"Bearer {token}"},
    )
    state = Api(owner, catalog, token, app)
    try:
        yield state
    finally:
        for client in [owner, *state.clients]:
            await client.aclose()
        catalog.close()


def _sample(dest: str, at: float) -> Sample:
    return Sample(
        destination_id=dest,
        at=at,
        outcome="rejected_by_destination",
        reason_code="HTTP 400",
        reason="the destination answered 400",
        source_id="src_1",
        message_id="m-1",
        event={"type": "track", "event": "Signed Up"},
        error=None,
        logs=["log line"],
        requests=[],
        request={"method": "POST", "url": "http://x", "headers": {"Authorization": "[REDACTED]"}},
        response={"status": 400},
        attempts=1,
    )


def _line(n: int) -> OutcomeLine:
    return OutcomeLine(T0, "delivered", "HTTP 200", "src_1", f"m{n}", "track", "Signed Up", 1)


def _error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1
    return dict(errors[0])


async def test_delivery_shows_counts_latency_series_and_samples(papi: Api, pipeline: Pipeline) -> None:
    dest = (await papi.destination())["id"]
    batch = RecorderBatch()
    batch.counts = {
        (dest, int(T0), "delivered", "HTTP 200"): 40,
        (dest, int(T0) - 60, "rejected_by_destination", "HTTP 400"): 2,
        (dest, int(T0) - 7200, "delivered", "HTTP 200"): 1000,  # outside 1h
    }
    pipeline.recorder.latency(dest, [100.0] * 40)
    batch.latency = pipeline.recorder.take().latency
    batch.samples = [_sample(dest, T0 - 50)]
    papi.catalog.delivery.write(batch)

    response = await papi.client.get(f"/destinations/{dest}/delivery", params={"window": "1h"})
    assert response.status_code == 200, response.text
    view = response.json()["data"]["delivery"]
    assert (view["delivered"], view["notDelivered"], view["filtered"], view["retrying"]) == (40, 2, 0, 0)
    assert view["from"] == "2027-01-15T07:01:00Z" and view["to"] == "2027-01-15T08:01:00Z"
    assert view["outcomes"] == [
        {"outcome": "delivered", "reasonCode": "HTTP 200", "count": 40},
        {"outcome": "rejected_by_destination", "reasonCode": "HTTP 400", "count": 2},
    ]
    assert 100 <= view["latency"]["p50Ms"] <= 125 and 100 <= view["latency"]["p95Ms"] <= 125
    assert len(view["series"]) == 60 and view["series"][-1]["delivered"] == 40
    assert view["series"][-2] == {"at": "2027-01-15T07:59:00Z", "delivered": 0, "notDelivered": 2, "p95Ms": None}
    (got,) = view["samples"]
    assert got["reasonCode"] == "HTTP 400" and got["request"]["headers"]["Authorization"] == "[REDACTED]"
    assert got["event"] == {"type": "track", "event": "Signed Up"} and got["logs"] == ["log line"]

    day = (await papi.client.get(f"/destinations/{dest}/delivery", params={"window": "24h"})).json()["data"]
    assert day["delivery"]["delivered"] == 1040
    filtered = await papi.client.get(f"/destinations/{dest}/delivery", params={"outcome": "bad_request"})
    assert filtered.json()["data"]["delivery"]["samples"] == []


async def test_delivery_refuses_bad_windows_and_unknown_destinations(papi: Api) -> None:
    dest = (await papi.destination())["id"]
    assert _error(await papi.client.get(f"/destinations/{dest}/delivery?window=2h"), 422)["field"] == "window"
    assert _error(await papi.client.get(f"/destinations/{dest}/delivery?outcome=lost"), 422)["field"] == "outcome"
    assert _error(await papi.client.get("/destinations/dst_nope/delivery"), 404)["type"] == "not_found"
    _error(await papi.as_token(None).get(f"/destinations/{dest}/delivery"), 401)
    read_only = await papi.with_roles("FUNCTIONS_READ_ONLY")
    assert (await read_only.get(f"/destinations/{dest}/delivery")).status_code == 200


async def test_tail_records_lines_only_once_followed_and_cursors_grow(papi: Api, pipeline: Pipeline) -> None:
    dest = (await papi.destination())["id"]
    rec = pipeline.recorder
    assert not rec.following(dest)
    rec.record_line(dest, _line(0))  # nobody tails yet: not kept

    first = await papi.client.get(f"/destinations/{dest}/outcomes")
    assert first.status_code == 200, first.text
    assert first.json()["data"] == {"lines": [], "next": 0}
    assert rec.following(dest)

    for n in (1, 2, 3):
        rec.record_line(dest, _line(n))
    page = (await papi.client.get(f"/destinations/{dest}/outcomes", params={"after": 0, "limit": 2})).json()["data"]
    assert [ln["messageId"] for ln in page["lines"]] == ["m1", "m2"] and page["next"] == 2
    assert page["lines"][0]["at"] == "2027-01-15T08:00:00Z" and page["lines"][0]["eventName"] == "Signed Up"
    rest = (await papi.client.get(f"/destinations/{dest}/outcomes", params={"after": page["next"]})).json()["data"]
    assert [ln["seq"] for ln in rest["lines"]] == [3] and rest["next"] == 3

    # polling keeps the follow alive; without it, recording stops after 30 s
    pipeline.clock.now = T0 + 31
    assert not rec.following(dest)
    _error(await papi.client.get("/destinations/dst_nope/outcomes"), 404)
    _error(await papi.client.get(f"/destinations/{dest}/outcomes?after=-1"), 422)


async def test_without_a_pipeline_the_live_routes_answer_503_after_the_checks(api: Api) -> None:
    dest = (await api.destination())["id"]
    for path in ("outcomes", "dead-letters", "queue"):
        assert _error(await api.client.get(f"/destinations/{dest}/{path}"), 503)["type"] == "unavailable"
        _error(await api.client.get(f"/destinations/dst_nope/{path}"), 404)
    _error(await api.client.post(f"/destinations/{dest}/replay", json={}), 503)
    _error(await api.client.post("/destinations/dst_nope/replay", json={}), 404)
    # the stored metrics need no pipeline
    assert (await api.client.get(f"/destinations/{dest}/delivery")).status_code == 200


async def _dead_letter_one(pipeline: Pipeline, dest: str, event: dict[str, object]) -> str:
    log = pipeline.log
    await log.subscribe(dest, ["src_1"])
    await log.append("src_1", [json.dumps(event).encode()])
    (leased,) = await log.lease(dest, 10, 30.0)
    await log.dead_letter(dest, [DeadLetter(leased.entry_id, "expired", "HTTP 503 for 4 h", T0)])
    return leased.entry_id


async def test_replay_moves_dead_letters_back_and_is_audited(papi: Api, pipeline: Pipeline) -> None:
    dest = (await papi.destination())["id"]
    entry = await _dead_letter_one(pipeline, dest, {"type": "track", "event": "Paid", "messageId": "m-9"})

    listed = await papi.client.get(f"/destinations/{dest}/dead-letters", params={"status": "expired"})
    assert listed.status_code == 200, listed.text
    (dl,) = listed.json()["data"]["deadLetters"]
    assert dl["entryId"] == entry and dl["status"] == "expired" and dl["reason"] == "HTTP 503 for 4 h"
    assert dl["failedAt"] == "2027-01-15T08:00:00Z" and dl["attempts"] == 1 and dl["sourceId"] == "src_1"
    assert dl["event"] == {"type": "track", "event": "Paid", "messageId": "m-9"}
    none = await papi.client.get(f"/destinations/{dest}/dead-letters", params={"status": "rejected_by_destination"})
    assert none.json()["data"]["deadLetters"] == []
    later = await papi.client.get(f"/destinations/{dest}/dead-letters", params={"since": "2027-01-15T08:00:01Z"})
    assert later.json()["data"]["deadLetters"] == []

    queue = (await papi.client.get(f"/destinations/{dest}/queue")).json()["data"]["queue"]
    assert queue == {"new": 0, "scheduled": 0, "leased": 0, "deadLetters": 1, "backlog": 0}

    read_only = await papi.with_roles("FUNCTIONS_READ_ONLY")
    assert "Source Admin" in _error(await read_only.post(f"/destinations/{dest}/replay", json={}), 403)["message"]
    assert (await read_only.get(f"/destinations/{dest}/dead-letters")).status_code == 200
    # since after the failure: nothing to replay
    future = await papi.client.post(f"/destinations/{dest}/replay", json={"since": "2027-01-15T09:00:00Z"})
    assert future.json()["data"] == {"replay": {"replayed": 0}}

    source_admin = await papi.with_roles("SOURCE_ADMIN")
    body = {"status": "expired", "since": "2027-01-15T07:00:00Z"}
    replayed = await source_admin.post(f"/destinations/{dest}/replay", json=body)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["data"] == {"replay": {"replayed": 1}}

    (again,) = await pipeline.log.lease(dest, 10, 30.0)
    assert again.entry_id == entry and again.attempts == 0
    queue = (await papi.client.get(f"/destinations/{dest}/queue")).json()["data"]["queue"]
    assert queue == {"new": 0, "scheduled": 0, "leased": 1, "deadLetters": 0, "backlog": 1}

    audit = (await papi.client.get("/audit-events", params={"resourceId": dest})).json()["data"]["auditEvents"]
    replays = [a for a in audit if a["action"] == "destination.replay"]
    assert [a["after"] for a in replays] == [  # newest first
        {"replayed": 1, "status": "expired", "since": "2027-01-15T07:00:00Z"},
        {"replayed": 0, "status": None, "since": "2027-01-15T09:00:00Z"},
    ]
    assert replays[0]["actor"] == "SOURCE_ADMIN"


async def test_dead_letter_and_replay_input_is_checked(papi: Api, pipeline: Pipeline) -> None:
    dest = (await papi.destination())["id"]
    assert _error(await papi.client.get(f"/destinations/{dest}/dead-letters?since=yesterday"), 422)["field"] == "since"
    bad_since = await papi.client.post(f"/destinations/{dest}/replay", json={"since": "not a time"})
    assert _error(bad_since, 422)["field"] == "since"
    assert _error(await papi.client.post(f"/destinations/{dest}/replay", json={"bogus": 1}), 422)["field"] == "bogus"
    _error(await papi.client.get(f"/destinations/{dest}/dead-letters?limit=0"), 422)
    _error(await papi.client.post("/destinations/dst_nope/replay", json={}), 404)
    # a body may be omitted: replay everything
    assert (await papi.client.post(f"/destinations/{dest}/replay")).json()["data"] == {"replay": {"replayed": 0}}
    # a payload that is not JSON is shown as text
    await pipeline.log.subscribe(dest, ["src_2"])
    await pipeline.log.append("src_2", [b"\xffnot json"])
    (leased,) = await pipeline.log.lease(dest, 1, 30.0)
    await pipeline.log.dead_letter(dest, [DeadLetter(leased.entry_id, "bad_request", "not JSON", T0)])
    (dl,) = (await papi.client.get(f"/destinations/{dest}/dead-letters")).json()["data"]["deadLetters"]
    assert dl["event"] == "\ufffdnot json"


def test_fuzzed_input_on_a_real_destination_never_fails(tmp_path: Path) -> None:
    """Schemathesis on the delivery routes with the pipeline present and a destination that exists
    (the suite-wide fuzz only meets unknown ids there): never a 5xx, responses match the document."""
    data_dir = tmp_path / "data"
    catalog = Catalog.open(Config(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'sluice.db'}"))
    try:
        token = catalog.admin.bootstrap_owner(data_dir, None)
        dest = catalog.destinations.create(SYSTEM, {"name": "Hook", "type": "webhook", "config": {"url": "http://x"}})
        pipe = Pipeline()
        pipe.clock.now = datetime.now(UTC).timestamp()
        app = create_app(catalog, recorder=pipe.recorder, event_log=pipe.log)
        schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
        ours = [
            op
            for op in (result.ok() for result in schema.get_all_operations())
            if op.path.startswith("/destinations/{destination_id}/")
            and op.path.rsplit("/", 1)[1] in ("delivery", "outcomes", "dead-letters", "replay", "queue")
        ]
        assert len(ours) == 5
        statuses: dict[str, set[int]] = {}
        for operation, mode in itertools.product(ours, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
            )
            def check(case: Any) -> None:
                case.path_parameters = {"destination_id": dest["id"]}
                response = case.call_and_validate(
                    headers={"Authorization": f"Bearer {token}"}, excluded_checks=[checks.positive_data_acceptance]
                )
                statuses.setdefault(case.operation.path, set()).add(response.status_code)

            try:
                check()
            except Unsatisfiable:
                if mode is not GenerationMode.NEGATIVE:
                    raise
        assert all(200 in codes for codes in statuses.values()) and len(statuses) == 5, statuses
    finally:
        catalog.close()


async def test_an_unreachable_event_log_answers_503_naming_it(database_url: str, tmp_path: Path) -> None:
    """A scale-out API process whose NATS is down: a clear, retryable error, not a 500."""
    data_dir = tmp_path / "data"
    catalog = Catalog.open(Config(data_dir=data_dir, database_url=database_url))
    token = catalog.admin.bootstrap_owner(data_dir, None)
    event_log = NatsEventLog("nats://127.0.0.1:9", prefix=unique_prefix())
    app = create_app(catalog, recorder=DeliveryRecorder(), event_log=event_log)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sluice/api",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        api = Api(client, catalog, str(token), app)
        dest = (await api.destination())["id"]
        for path in ("queue", "dead-letters"):
            response = await client.get(f"/destinations/{dest}/{path}")
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            [error] = response.json()["errors"]
            assert error["type"] == "queue_unavailable"
            assert "cannot reach NATS at 127.0.0.1:9" in error["message"]
    await event_log.close()
    catalog.close()
