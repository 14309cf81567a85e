"""What the pipeline records about outcomes, in memory, until the store writes it (DESIGN §3.3).

- **Counters** per destination × minute × outcome × reason code, and **latency histograms**
  (end-to-end, delivered events) per destination × minute: :meth:`DeliveryRecorder.take` swaps
  them out for :class:`sluice.catalog.delivery_store.DeliveryStore.write`.
- A bounded **sample** of non-delivered events: at most ``samples_per_minute`` per destination ×
  outcome × reason code × minute (ask :meth:`~DeliveryRecorder.wants_sample` before building one).
- The **tail ring**: while someone follows a destination (``sluice tail``), the last 1,000
  per-event lines, each with a growing sequence number to poll from.

No I/O, no locks: every call happens on the pipeline's event-loop thread. Times are epoch seconds
from the injected clock; minutes are ``int(at // 60) * 60`` (epoch seconds of the minute start).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Final

from sluice.delivery import histogram

__all__ = [
    "FOLLOW_S",
    "RING_SIZE",
    "DeliveryRecorder",
    "OutcomeLine",
    "RecorderBatch",
    "Sample",
    "iso_at",
    "minute_of",
]

FOLLOW_S: Final = 30.0
RING_SIZE: Final = 1000
DEFAULT_SAMPLES_PER_MINUTE: Final = 5

CountKey = tuple[str, int, str, str]  # destination_id, minute, outcome, reason_code
MinuteKey = tuple[str, int]  # destination_id, minute


def minute_of(at: float) -> int:
    """Epoch seconds of the start of the minute holding ``at``."""
    return int(at // 60) * 60


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def iso_at(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Sample:
    """One non-delivered event, as the console shows it: you sent / request / response / logs."""

    destination_id: str
    at: float  # epoch seconds
    outcome: str  # an Outcome value, e.g. "rejected_by_destination"
    reason_code: str  # low-cardinality code used in counters ("HTTP 400", "ValidationError", "integrations")
    reason: str  # the full human message
    source_id: str
    message_id: str | None
    event: Any  # the input event as decoded JSON
    error: dict[str, str] | None  # {"type", "message"} from the function
    logs: list[str]  # the function's logs for that invocation
    requests: list[dict[str, Any]]  # the function's traced fetch requests (already redacted)
    request: dict[str, Any] | None  # the request to the destination (already redacted)
    response: dict[str, Any] | None
    attempts: int


@dataclass(frozen=True, slots=True)
class OutcomeLine:
    """One event's outcome, for ``sluice tail``."""

    at: float
    outcome: str
    reason: str
    source_id: str
    message_id: str | None
    type: str | None  # the event's type (None when the stored event is not an object)
    event_name: str | None  # a track's event name
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": iso_at(self.at),
            "outcome": self.outcome,
            "reason": self.reason,
            "sourceId": self.source_id,
            # taken from events as they came: not always strings
            "messageId": _text(self.message_id),
            "type": _text(self.type),
            "eventName": _text(self.event_name),
            "attempts": int(self.attempts),
        }


@dataclass(slots=True)
class RecorderBatch:
    """Everything recorded since the last :meth:`DeliveryRecorder.take`."""

    counts: dict[CountKey, int] = field(default_factory=dict)
    latency: dict[MinuteKey, list[int]] = field(default_factory=dict)  # histogram bucket counts
    samples: list[Sample] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.counts or self.latency or self.samples)


@dataclass(slots=True)
class _Ring:
    lines: deque[OutcomeLine] = field(default_factory=lambda: deque(maxlen=RING_SIZE))
    seq: int = 0  # the seq of the newest line (lines[-1]); lines carry seq - len + 1 … seq


class DeliveryRecorder:
    """Per-process, in-memory outcome recorder (see the module docstring)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        samples_per_minute: int = DEFAULT_SAMPLES_PER_MINUTE,
        follow_s: float = FOLLOW_S,
        ring_size: int = RING_SIZE,
        on_follow: Callable[[str], None] | None = None,
        on_line: Callable[[str, OutcomeLine], None] | None = None,
    ) -> None:
        """``on_follow`` / ``on_line`` connect the recorders of two processes (``sluice serve``:
        the API process's ``follow`` is told to the delivery process, whose lines are sent back
        instead of kept)."""
        self._on_follow = on_follow
        self._on_line = on_line
        #: Events per (destination, outcome) since this recorder was made (for /metrics).
        self.totals: Counter[tuple[str, str]] = Counter()
        self._clock = clock
        self.samples_per_minute = samples_per_minute
        self.follow_s = follow_s
        self.ring_size = ring_size
        self._batch = RecorderBatch()
        # samples kept per (destination, outcome, reason_code, minute): survives take() so that
        # the bound is per minute, not per write
        self._kept: dict[tuple[str, str, str, int], int] = {}
        self._kept_minute = 0
        self._following: dict[str, float] = {}  # destination -> followed until
        self._rings: dict[str, _Ring] = {}

    # --- counters and latency ---------------------------------------------------------------------

    def count(self, destination_id: str, outcome: str, reason_code: str, n: int = 1, at: float | None = None) -> None:
        """Add ``n`` events with this outcome and reason code."""
        if n <= 0:
            return
        key = (destination_id, minute_of(self._clock() if at is None else at), str(outcome), reason_code)
        counts = self._batch.counts
        counts[key] = counts.get(key, 0) + n
        self.totals[(destination_id, str(outcome))] += n

    def latency(self, destination_id: str, latencies_ms: Iterable[float], at: float | None = None) -> None:
        """End-to-end latencies (ms) of delivered events."""
        key = (destination_id, minute_of(self._clock() if at is None else at))
        hist = self._batch.latency.get(key)
        if hist is None:
            hist = histogram.new()
            if histogram.add(hist, latencies_ms):
                self._batch.latency[key] = hist
        else:
            histogram.add(hist, latencies_ms)

    # --- samples ------------------------------------------------------------------------------------

    def _sample_key(self, destination_id: str, outcome: str, reason_code: str, at: float) -> tuple[str, str, str, int]:
        minute = minute_of(at)
        if minute > self._kept_minute:  # a new minute: forget the older ones' tallies
            self._kept = {k: v for k, v in self._kept.items() if k[3] >= minute}
            self._kept_minute = minute
        return (destination_id, str(outcome), reason_code, minute)

    def wants_sample(self, destination_id: str, outcome: str, reason_code: str, at: float | None = None) -> bool:
        """Whether :meth:`sample` would keep a sample now: build one only then."""
        key = self._sample_key(destination_id, outcome, reason_code, self._clock() if at is None else at)
        return self._kept.get(key, 0) < self.samples_per_minute

    def sample(self, sample: Sample) -> bool:
        """Keep ``sample`` unless its minute's quota is used up; returns whether it was kept."""
        key = self._sample_key(sample.destination_id, sample.outcome, sample.reason_code, sample.at)
        kept = self._kept.get(key, 0)
        if kept >= self.samples_per_minute:
            return False
        self._kept[key] = kept + 1
        self._batch.samples.append(sample)
        return True

    def take(self) -> RecorderBatch:
        """Everything pending, swapped out (the recorder starts afresh)."""
        batch, self._batch = self._batch, RecorderBatch()
        return batch

    # --- tail ring ----------------------------------------------------------------------------------

    def follow(self, destination_id: str) -> None:
        """Someone tails ``destination_id``: record its per-event lines for the next ``follow_s``."""
        self._following[destination_id] = self._clock() + self.follow_s
        if self._on_follow is not None:
            self._on_follow(destination_id)

    def following(self, destination_id: str) -> bool:
        """Whether anyone tails ``destination_id`` now (cheap: call it before building lines)."""
        until = self._following.get(destination_id)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._following[destination_id]
        return False

    def record_line(self, destination_id: str, line: OutcomeLine) -> None:
        """Append a line to the destination's ring (ignored when nobody follows it)."""
        if not self.following(destination_id):
            return
        if self._on_line is not None:
            self._on_line(destination_id, line)
            return
        ring = self._rings.get(destination_id)
        if ring is None:
            ring = self._rings[destination_id] = _Ring(deque(maxlen=self.ring_size))
        ring.lines.append(line)
        ring.seq += 1

    def lines(self, destination_id: str, after: int, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Up to ``limit`` lines with ``seq > after`` (oldest first) and the cursor to poll next.

        A cursor from the future (this process restarted) is brought back to the newest line.
        """
        ring = self._rings.get(destination_id)
        if ring is None:
            return [], 0
        first = ring.seq - len(ring.lines) + 1
        start = max(after + 1, first)
        if start > ring.seq:
            return [], min(after, ring.seq)
        out: list[dict[str, Any]] = []
        for i, line in enumerate(islice(ring.lines, start - first, start - first + max(limit, 0))):
            out.append({"seq": start + i, **line.to_dict()})
        return out, (start + len(out) - 1 if out else min(after, ring.seq))
