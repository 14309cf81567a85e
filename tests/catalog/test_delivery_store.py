"""The delivery store on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from sluice.catalog import tables
from sluice.catalog.access import SYSTEM, Actor
from sluice.catalog.service import Catalog
from sluice.config import Config
from sluice.delivery import histogram
from sluice.delivery.recorder import DeliveryRecorder, RecorderBatch, Sample
from sluice.errors import Forbidden, InvalidInput, NotFound

T0 = 1_800_000_000.0  # a minute (and hour) boundary: 2027-01-15T08:00:00Z
NOBODY = Actor("nobody", frozenset())


@pytest.fixture
def catalog(database_url: str, tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog.open(Config(data_dir=tmp_path / "data", database_url=database_url))
    try:
        yield cat
    finally:
        cat.close()


@pytest.fixture
def dest(catalog: Catalog) -> str:
    created = catalog.destinations.create(SYSTEM, {"name": "Hook", "type": "webhook", "config": {"url": "http://x/h"}})
    return str(created["id"])


def sample(dest: str, at: float, outcome: str = "rejected_by_destination", code: str = "HTTP 400", **kw: Any) -> Sample:
    fields: dict[str, Any] = {
        "destination_id": dest,
        "at": at,
        "outcome": outcome,
        "reason_code": code,
        "reason": "the destination answered 400: bad field",
        "source_id": "src_1",
        "message_id": "m-1",
        "event": {"type": "track", "event": "Signed Up", "properties": {"plan": "pro"}},
        "error": {"type": "ValidationError", "message": "email is required"},
        "logs": ["checking", "done"],
        "requests": [{"method": "GET", "url": "https://api/x", "headers": {"Authorization": "[REDACTED]"}}],
        "request": {"method": "POST", "url": "http://x/h", "headers": {}, "body": "{}"},
        "response": {"status": 400, "headers": {}, "body": "bad"},
        "attempts": 2,
    }
    fields.update(kw)
    return Sample(**fields)


def counts(batch: RecorderBatch, *rows: tuple[str, float, str, str, int]) -> RecorderBatch:
    for dest, at, outcome, code, n in rows:
        key = (dest, int(at // 60) * 60, outcome, code)
        batch.counts[key] = batch.counts.get(key, 0) + n
    return batch


def test_counts_merge_across_writes_and_classes_add_up(catalog: Catalog, dest: str) -> None:
    store = catalog.delivery
    store.write(counts(RecorderBatch(), (dest, T0, "delivered", "HTTP 200", 10), (dest, T0, "filtered", "trigger", 2)))
    store.write(
        counts(
            RecorderBatch(),
            (dest, T0 + 10, "delivered", "HTTP 200", 5),  # same minute: merged
            (dest, T0 + 20, "rejected_by_destination", "HTTP 400", 3),
            (dest, T0 + 30, "expired", "HTTP 503", 1),
            (dest, T0 + 30, "retrying", "HTTP 503", 4),
            (dest, T0 + 30, "timeout", "timeout", 1),
            (dest, T0 + 30, "dropped", "DropEvent", 1),
            ("dst_other", T0, "delivered", "HTTP 200", 99),  # not this destination's
        )
    )
    store.write(RecorderBatch())  # empty: nothing happens
    with catalog.engine.connect() as conn:
        c = tables.delivery_counts
        stored = conn.execute(
            select(c.c.count).where(c.c.destination_id == dest, c.c.outcome == "delivered")
        ).scalar_one()
    assert stored == 15

    view = store.view(SYSTEM, dest, "10m", now=T0 + 45)
    assert (view["delivered"], view["notDelivered"], view["filtered"], view["retrying"]) == (15, 4, 3, 5)
    assert view["outcomes"][0] == {"outcome": "delivered", "reasonCode": "HTTP 200", "count": 15}
    assert [o["count"] for o in view["outcomes"]] == sorted((o["count"] for o in view["outcomes"]), reverse=True)
    assert {(o["outcome"], o["reasonCode"]) for o in view["outcomes"]} >= {
        ("expired", "HTTP 503"),
        ("timeout", "timeout"),
    }
    assert view["destinationId"] == dest and view["window"] == "10m"
    assert view["from"] == "2027-01-15T07:51:00Z" and view["to"] == "2027-01-15T08:01:00Z"


def test_windows_include_and_exclude_by_time_and_series_has_every_bucket(catalog: Catalog, dest: str) -> None:
    store = catalog.delivery
    store.write(
        counts(
            RecorderBatch(),
            (dest, T0, "delivered", "HTTP 200", 1),  # now
            (dest, T0 - 9 * 60, "delivered", "HTTP 200", 2),  # 9 min ago: in 10m
            (dest, T0 - 11 * 60, "delivered", "HTTP 200", 4),  # 11 min ago: in 1h, not 10m
            (dest, T0 - 2 * 3600, "expired", "HTTP 500", 8),  # 2 h ago: in 24h
            (dest, T0 - 3 * 86400, "delivered", "HTTP 200", 16),  # 3 days ago: in 7d
            (dest, T0 - 8 * 86400, "delivered", "HTTP 200", 32),  # 8 days ago: in none
        )
    )
    now = T0 + 1
    totals = {w: store.view(SYSTEM, dest, w, now=now) for w in ("10m", "1h", "24h", "7d")}
    assert totals["10m"]["delivered"] == 3
    assert totals["1h"]["delivered"] == 7
    assert (totals["24h"]["delivered"], totals["24h"]["notDelivered"]) == (7, 8)
    assert (totals["7d"]["delivered"], totals["7d"]["notDelivered"]) == (23, 8)

    assert [len(totals[w]["series"]) for w in ("10m", "1h", "24h", "7d")] == [10, 60, 96, 168]
    series = totals["10m"]["series"]
    assert series[-1] == {"at": "2027-01-15T08:00:00Z", "delivered": 1, "notDelivered": 0, "p95Ms": None}
    assert series[0]["at"] == "2027-01-15T07:51:00Z" and series[0]["delivered"] == 2
    assert sum(p["delivered"] for p in series) == 3
    day = totals["24h"]["series"]
    assert day[-1]["at"] == "2027-01-15T08:00:00Z"  # 15-minute buckets
    assert day[-2]["at"] == "2027-01-15T07:45:00Z" and day[-2]["delivered"] == 4 + 2
    assert sum(p["notDelivered"] for p in day) == 8


def test_latency_percentiles_merge_across_writes_within_one_bucket(catalog: Catalog, dest: str) -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(5, 1.0) for _ in range(4000)]
    rec = DeliveryRecorder(clock=lambda: T0)
    rec.latency(dest, values[:1000])
    rec.latency(dest, values[1000:2000], at=T0 - 120)
    catalog.delivery.write(rec.take())
    rec.latency(dest, values[2000:], at=T0 + 5)  # merges into the stored minute T0
    catalog.delivery.write(rec.take())

    view = catalog.delivery.view(SYSTEM, dest, "1h", now=T0 + 10)
    ordered = sorted(values)
    for key, q in (("p50Ms", 0.5), ("p95Ms", 0.95)):
        true = ordered[math.ceil(q * len(ordered)) - 1]
        assert true <= view["latency"][key] <= true * histogram.RATIO + 1e-6
    last = view["series"][-1]
    now_values = sorted(values[:1000] + values[2000:])
    true_now = now_values[math.ceil(0.95 * len(now_values)) - 1]
    assert true_now <= last["p95Ms"] <= true_now * histogram.RATIO + 1e-6
    assert view["series"][-3]["p95Ms"] is not None and view["series"][-2]["p95Ms"] is None

    empty = catalog.delivery.view(SYSTEM, dest, "1h", now=T0 + 7200)
    assert empty["latency"] == {"p50Ms": None, "p95Ms": None}


def test_samples_round_trip_newest_first_filtered_and_limited(catalog: Catalog, dest: str) -> None:
    batch = RecorderBatch()
    batch.samples = [
        sample(dest, T0 - 30),
        sample(dest, T0 - 20, outcome="bad_request", code="TypeError", message_id=None, event=[1, "two"]),
        sample(dest, T0 - 10, message_id="x" * 500),  # longer than the column: cut, not failing
        sample(dest, T0 - 7200),  # outside 1h
        sample("dst_other", T0 - 5),
    ]
    catalog.delivery.write(batch)
    view = catalog.delivery.view(SYSTEM, dest, "1h", now=T0)
    got = view["samples"]
    assert [s["at"] for s in got] == ["2027-01-15T07:59:50Z", "2027-01-15T07:59:40Z", "2027-01-15T07:59:30Z"]
    first = got[2]
    assert first == {
        "id": first["id"],
        "destinationId": dest,
        "at": "2027-01-15T07:59:30Z",
        "outcome": "rejected_by_destination",
        "reasonCode": "HTTP 400",
        "reason": "the destination answered 400: bad field",
        "sourceId": "src_1",
        "messageId": "m-1",
        "attempts": 2,
        "event": {"type": "track", "event": "Signed Up", "properties": {"plan": "pro"}},
        "error": {"type": "ValidationError", "message": "email is required"},
        "logs": ["checking", "done"],
        "requests": [{"method": "GET", "url": "https://api/x", "headers": {"Authorization": "[REDACTED]"}}],
        "request": {"method": "POST", "url": "http://x/h", "headers": {}, "body": "{}"},
        "response": {"status": 400, "headers": {}, "body": "bad"},
    }
    assert got[1]["event"] == [1, "two"] and got[1]["messageId"] is None
    assert got[0]["messageId"] == "x" * 200
    only = catalog.delivery.view(SYSTEM, dest, "1h", now=T0, outcome="bad_request")["samples"]
    assert [s["outcome"] for s in only] == ["bad_request"]
    assert len(catalog.delivery.view(SYSTEM, dest, "1h", now=T0, sample_limit=1)["samples"]) == 1
    assert len(catalog.delivery.view(SYSTEM, dest, "24h", now=T0)["samples"]) == 4


def test_recorder_bound_plus_store_keep_samples_per_minute(catalog: Catalog, dest: str) -> None:
    rec = DeliveryRecorder(clock=lambda: T0, samples_per_minute=5)
    for i in range(20):
        rec.sample(sample(dest, T0 + i))
    catalog.delivery.write(rec.take())
    for i in range(20):
        rec.sample(sample(dest, T0 + 20 + i))  # same minute, a later write
    catalog.delivery.write(rec.take())
    assert len(catalog.delivery.view(SYSTEM, dest, "10m", now=T0 + 59)["samples"]) == 5


def test_prune_ages_out_and_caps_samples_per_destination(catalog: Catalog, dest: str) -> None:
    store = catalog.delivery
    old = T0 - 9 * 86400
    batch = counts(RecorderBatch(), (dest, old, "delivered", "HTTP 200", 1), (dest, T0, "delivered", "HTTP 200", 1))
    batch.latency[(dest, int(old))] = [1]
    batch.latency[(dest, int(T0))] = [1]
    batch.samples = [sample(dest, T0 - 7.5 * 86400), sample("dst_gone", T0 - 7.5 * 86400)]
    batch.samples += [sample(dest, T0 - 1000 + i * 0.5) for i in range(1005)]
    store.write(batch)

    removed = store.prune(now=T0 + 60)
    assert removed == 1 + 1 + 2 + 5
    with catalog.engine.connect() as conn:
        t = tables.delivery_samples
        assert conn.execute(select(func.count()).select_from(tables.delivery_counts)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(tables.delivery_latency)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(t)).scalar_one() == 1000
        oldest = conn.execute(select(func.min(t.c.at))).scalar_one()
    view = store.view(SYSTEM, dest, "1h", now=T0 + 60, sample_limit=2000)
    assert len(view["samples"]) == 1000
    assert view["samples"][-1]["at"] == "2027-01-15T07:43:22.500000Z"  # the 5 oldest (T0-1000 … -998) gone
    assert oldest is not None
    assert store.prune(now=T0 + 60) == 0


def test_view_refuses_bad_input_unknown_destinations_and_roleless_tokens(catalog: Catalog, dest: str) -> None:
    store = catalog.delivery
    with pytest.raises(InvalidInput) as bad:
        store.view(SYSTEM, dest, "2h")
    assert bad.value.field == "window"
    with pytest.raises(InvalidInput) as bad_outcome:
        store.view(SYSTEM, dest, "1h", outcome="lost")
    assert bad_outcome.value.field == "outcome"
    with pytest.raises(NotFound):
        store.view(SYSTEM, "dst_missing", "1h")
    with pytest.raises(Forbidden):
        store.view(NOBODY, dest, "1h")
    with pytest.raises(NotFound):
        store.require_destination(SYSTEM, "dst_missing")
    store.require_destination(SYSTEM, dest, manage=True)


def test_counts_for_a_deleted_destination_are_still_written(catalog: Catalog, dest: str) -> None:
    catalog.destinations.delete(SYSTEM, dest)
    rec = DeliveryRecorder(clock=lambda: T0)
    rec.count(dest, "delivered", "HTTP 200", 3)
    rec.latency(dest, [10.0])
    rec.sample(sample(dest, T0, reason_code="r" * 300))
    catalog.delivery.write(rec.take())  # no foreign key to trip on
    with catalog.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.delivery_counts)).scalar_one() == 1
        assert conn.execute(select(tables.delivery_samples.c.reason_code)).scalar_one() == "r" * 200
