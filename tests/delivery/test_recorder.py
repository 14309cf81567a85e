"""The in-memory outcome recorder: counters, latency histograms, bounded samples, the tail ring."""

from __future__ import annotations

import math
import random

import pytest

from sluice.delivery import histogram
from sluice.delivery.recorder import DeliveryRecorder, OutcomeLine, Sample

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(at: float, outcome: str = "rejected_by_destination", code: str = "HTTP 400", dest: str = "d1") -> Sample:
    return Sample(
        destination_id=dest,
        at=at,
        outcome=outcome,
        reason_code=code,
        reason="the destination answered 400",
        source_id="src_1",
        message_id="m1",
        event={"type": "track", "event": "Signed Up"},
        error=None,
        logs=["hello"],
        requests=[],
        request={"method": "POST", "url": "http://x", "headers": {"Authorization": "[REDACTED]"}},
        response={"status": 400},
        attempts=1,
    )


def line(at: float, n: int = 0) -> OutcomeLine:
    return OutcomeLine(
        at=at,
        outcome="delivered",
        reason="HTTP 200",
        source_id="src_1",
        message_id=f"m{n}",
        type="track",
        event_name="Signed Up",
        attempts=1,
    )


def test_counts_are_kept_per_destination_minute_outcome_and_reason() -> None:
    clock = Clock(T0 + 5)
    rec = DeliveryRecorder(clock=clock)
    rec.count("d1", "delivered", "HTTP 200", 10)
    rec.count("d1", "delivered", "HTTP 200", 5)
    rec.count("d1", "rejected_by_destination", "HTTP 400")
    rec.count("d2", "delivered", "HTTP 200", 3)
    rec.count("d1", "delivered", "HTTP 200", 7, at=T0 + 61)  # the next minute
    rec.count("d1", "delivered", "HTTP 200", 0)  # nothing
    batch = rec.take()
    assert batch.counts == {
        ("d1", int(T0), "delivered", "HTTP 200"): 15,
        ("d1", int(T0), "rejected_by_destination", "HTTP 400"): 1,
        ("d2", int(T0), "delivered", "HTTP 200"): 3,
        ("d1", int(T0) + 60, "delivered", "HTTP 200"): 7,
    }
    assert rec.take().empty  # swapped out


def test_latency_histograms_per_minute_give_percentiles_within_one_bucket() -> None:
    rec = DeliveryRecorder(clock=Clock())
    rng = random.Random(7)
    values = [rng.lognormvariate(4, 1.2) for _ in range(5000)]
    rec.latency("d1", values[:2500])
    rec.latency("d1", values[2500:])
    rec.latency("d1", [])  # nothing: no histogram made
    rec.latency("d2", [])
    batch = rec.take()
    assert list(batch.latency) == [("d1", int(T0))]
    hist = batch.latency[("d1", int(T0))]
    assert sum(hist) == 5000
    ordered = sorted(values)
    for q in (0.5, 0.95):
        true = ordered[math.ceil(q * len(ordered)) - 1]
        reported = histogram.percentile(hist, q)
        assert reported is not None
        assert true <= reported <= true * histogram.RATIO + 1e-9


def test_histogram_edges_merge_and_compact() -> None:
    assert histogram.bucket_of(0) == 0
    assert histogram.bucket_of(-3) == 0
    assert histogram.bucket_of(float("nan")) == 0
    assert histogram.bucket_of(1.0) == 0
    assert histogram.bucket_of(1.1) == 1
    assert histogram.bucket_of(10 * 3_600_000) == histogram.OVERFLOW
    assert histogram.BOUNDS[-1] >= 3_600_000
    assert histogram.percentile([], 0.5) is None
    a = histogram.new()
    histogram.add(a, [5.0, 5.0, 100.0])
    b = histogram.compact(a)
    assert len(b) < histogram.NBUCKETS and sum(b) == 3
    merged = histogram.merge_into([], b)
    histogram.merge_into(merged, a)
    assert sum(merged) == 6
    assert histogram.percentile(merged, 0.5) == pytest.approx(histogram.BOUNDS[histogram.bucket_of(5.0)], abs=1e-3)
    overflow = histogram.new()
    histogram.add(overflow, [1e9])
    assert histogram.percentile(overflow, 0.95) == pytest.approx(histogram.BOUNDS[-1], abs=1e-3)


def test_samples_are_bounded_per_destination_outcome_reason_and_minute() -> None:
    clock = Clock(T0)
    rec = DeliveryRecorder(clock=clock, samples_per_minute=5)
    kept = [rec.sample(sample(T0 + i)) for i in range(8)]
    assert kept == [True] * 5 + [False] * 3
    assert not rec.wants_sample("d1", "rejected_by_destination", "HTTP 400", at=T0 + 30)
    # other reason, outcome or destination: their own quota
    assert rec.wants_sample("d1", "rejected_by_destination", "HTTP 404", at=T0 + 30)
    assert rec.sample(sample(T0 + 1, code="HTTP 404"))
    assert rec.sample(sample(T0 + 1, outcome="bad_request", code="TypeError"))
    assert rec.sample(sample(T0 + 1, dest="d2"))
    # the quota holds across take(): it is per minute, not per write
    assert len(rec.take().samples) == 8
    assert not rec.sample(sample(T0 + 50))
    # the next minute has a fresh quota
    clock.now = T0 + 60
    assert rec.wants_sample("d1", "rejected_by_destination", "HTTP 400")
    assert rec.sample(sample(T0 + 61))
    assert [s.at for s in rec.take().samples] == [T0 + 61]


def test_tail_lines_are_recorded_only_while_followed_with_growing_cursors() -> None:
    clock = Clock(T0)
    rec = DeliveryRecorder(clock=clock)
    assert not rec.following("d1")
    rec.record_line("d1", line(T0, 0))  # nobody follows: dropped
    assert rec.lines("d1", 0) == ([], 0)

    rec.follow("d1")
    assert rec.following("d1") and not rec.following("d2")
    for n in range(1, 4):
        rec.record_line("d1", line(T0, n))
    lines, cursor = rec.lines("d1", 0)
    assert [ln["seq"] for ln in lines] == [1, 2, 3] and cursor == 3
    assert lines[0] == {
        "seq": 1,
        "at": "2027-01-15T08:00:00Z",
        "outcome": "delivered",
        "reason": "HTTP 200",
        "sourceId": "src_1",
        "messageId": "m1",
        "type": "track",
        "eventName": "Signed Up",
        "attempts": 1,
    }
    assert rec.lines("d1", cursor) == ([], 3)
    rec.record_line("d1", line(T0, 4))
    more, cursor = rec.lines("d1", cursor)
    assert [ln["messageId"] for ln in more] == ["m4"] and cursor == 4
    # limit pages through
    for n in range(5, 10):
        rec.record_line("d1", line(T0, n))
    page, cursor = rec.lines("d1", 4, limit=2)
    assert [ln["seq"] for ln in page] == [5, 6] and cursor == 6
    # a cursor from a previous process (beyond the newest) is brought back
    assert rec.lines("d1", 10_000) == ([], 9)

    # 30 s after the last follow, lines stop being recorded
    clock.now = T0 + 31
    assert not rec.following("d1")
    rec.record_line("d1", line(T0, 99))
    assert rec.lines("d1", 9) == ([], 9)


def test_the_ring_keeps_the_last_1000_lines() -> None:
    rec = DeliveryRecorder(clock=Clock())
    rec.follow("d1")
    for n in range(1500):
        rec.record_line("d1", line(T0, n))
    lines, cursor = rec.lines("d1", 0, limit=1000)
    assert len(lines) == 1000 and lines[0]["seq"] == 501 and cursor == 1500
    assert lines[0]["messageId"] == "m500"
    tail, cursor = rec.lines("d1", 1490)
    assert [ln["seq"] for ln in tail] == list(range(1491, 1501)) and cursor == 1500


def test_lines_coerce_non_string_fields() -> None:
    rec = DeliveryRecorder(clock=Clock())
    rec.follow("d1")
    rec.record_line("d1", OutcomeLine(T0, "bad_request", "x", "s", 42, None, None, 1))  # type: ignore[arg-type]
    (only,), _ = rec.lines("d1", 0)
    assert only["messageId"] == "42" and only["type"] is None
