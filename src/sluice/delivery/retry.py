"""The retry policy: a pure function from (attempts, age, rng) to a decision value.

Full-jitter exponential backoff (``uniform(0, min(cap, base * factor**attempts))``), bounded by
a maximum age measured from the first attempt; past it the event is ``expired`` (DESIGN §3.3).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Expire", "RetryAt", "RetryDecision", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again at ``when`` (same clock as ``now``), ``delay_s`` after now."""

    when: float
    delay_s: float


@dataclass(frozen=True, slots=True)
class Expire:
    """Give up: the event goes to the dead-letter store as ``expired``."""

    reason: str


RetryDecision = RetryAt | Expire


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 600.0
    max_age_s: float = 4 * 3600.0

    def __post_init__(self) -> None:
        if not self.base_s > 0:
            raise ValueError("base_s must be > 0")
        if not self.factor >= 1:
            raise ValueError("factor must be >= 1")
        if not self.cap_s >= self.base_s:
            raise ValueError("cap_s must be >= base_s")
        if not self.max_age_s >= 0:
            raise ValueError("max_age_s must be >= 0")

    def ceiling(self, attempts: int) -> float:
        """The upper bound of the jittered delay after ``attempts`` attempts."""
        if attempts < 0:
            raise ValueError("attempts must be >= 0")
        try:
            raw = self.base_s * self.factor**attempts
        except OverflowError:
            return self.cap_s
        return min(self.cap_s, raw)

    def decide(
        self,
        attempts: int,
        first_attempt_at: float,
        now: float,
        rng: random.Random,
        *,
        retry_after_s: float | None = None,
    ) -> RetryDecision:
        """Decide what to do after a retryable failure.

        ``attempts`` is how many attempts have been made so far. A destination's
        ``retry_after_s`` (``Retry-After``) raises the delay to at least that, up to ``cap_s``.
        The next attempt is never scheduled past ``first_attempt_at + max_age_s``: the last one
        happens at the deadline, and a failure at or after the deadline expires.
        """
        age = now - first_attempt_at
        if age >= self.max_age_s:
            return Expire(f"gave up after {attempts} attempts over {_human(age)} (max age {_human(self.max_age_s)})")
        delay = rng.uniform(0.0, self.ceiling(attempts))
        if retry_after_s is not None and retry_after_s > delay:
            delay = min(retry_after_s, self.cap_s)
        deadline = first_attempt_at + self.max_age_s
        when = min(now + delay, deadline)
        return RetryAt(when=when, delay_s=when - now)


def _human(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"
