"""Latency histograms with fixed, log-spaced buckets: they merge by adding counts.

Bucket ``k`` (``0 ≤ k < len(BOUNDS)``) holds latencies in ``(BOUNDS[k-1], BOUNDS[k]]`` ms, with
``BOUNDS[k] = 1.25**k`` (bucket 0 holds everything up to 1 ms); the last bound is about 65 min
and one more bucket, ``OVERFLOW``, holds anything longer. A histogram is a list of counts by
bucket index; a stored one may be shorter (trailing zeros trimmed, see :func:`compact`).

Percentiles are read as the **upper bound of the bucket** holding the nearest-rank value, so a
reported p95 is never below the true one and at most 25 % above it (one bucket). For the
overflow bucket the last bound is reported (the true value is "more than that").
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ["BOUNDS", "NBUCKETS", "OVERFLOW", "RATIO", "add", "bucket_of", "compact", "merge_into", "new", "percentile"]

RATIO: Final = 1.25
_MAX_MS: Final = 3_600_000.0  # one hour


def _bounds() -> tuple[float, ...]:
    out: list[float] = []
    k = 0
    while not out or out[-1] < _MAX_MS:
        out.append(RATIO**k)
        k += 1
    return tuple(out)


BOUNDS: Final[tuple[float, ...]] = _bounds()
OVERFLOW: Final = len(BOUNDS)
NBUCKETS: Final = OVERFLOW + 1

Histogram = list[int]


def new() -> Histogram:
    return [0] * NBUCKETS


def bucket_of(ms: float) -> int:
    """The bucket index of a latency in milliseconds (negative and NaN count as 0 ms)."""
    if not ms > 0:  # NaN too
        return 0
    return bisect_left(BOUNDS, ms)  # == OVERFLOW beyond the last bound


def add(hist: Histogram, latencies_ms: Iterable[float]) -> int:
    """Count each latency into ``hist`` (a full-length histogram); returns how many were added."""
    n = 0
    bounds = BOUNDS
    for ms in latencies_ms:
        hist[bisect_left(bounds, ms) if ms > 0 else 0] += 1
        n += 1
    return n


def merge_into(target: Histogram, other: Sequence[int]) -> Histogram:
    """Add ``other``'s counts into ``target`` (either may be trimmed); returns ``target``."""
    if len(target) < len(other):
        target.extend([0] * (len(other) - len(target)))
    for i, count in enumerate(other):
        if count:
            target[i] += int(count)
    return target


def compact(hist: Sequence[int]) -> list[int]:
    """The histogram without its trailing zero buckets (what is stored)."""
    end = len(hist)
    while end and not hist[end - 1]:
        end -= 1
    return [int(c) for c in hist[:end]]


def percentile(hist: Sequence[int], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the nearest-rank ``q`` quantile; None if empty."""
    total = sum(hist)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return round(BOUNDS[min(i, OVERFLOW - 1)], 3)
    return round(BOUNDS[-1], 3)  # pragma: no cover - rank <= total
