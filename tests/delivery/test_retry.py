"""The retry policy is pure: seeded rng in, decision values out."""

from __future__ import annotations

import random

import pytest

from sluice.delivery import Expire, RetryAt, RetryPolicy

T0 = 1_700_000_000.0


def delays(policy: RetryPolicy, attempts: int, draws: int = 2000, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    out = []
    for _ in range(draws):
        decision = policy.decide(attempts, T0, T0 + 1, rng)
        assert isinstance(decision, RetryAt)
        assert decision.when == pytest.approx(T0 + 1 + decision.delay_s)
        out.append(decision.delay_s)
    return out


@pytest.mark.parametrize("attempts", [0, 1, 3, 5])
def test_full_jitter_stays_within_zero_and_the_ceiling(attempts: int) -> None:
    policy = RetryPolicy()
    ceiling = min(600.0, 1.0 * 2.0**attempts)
    ds = delays(policy, attempts)
    assert all(0.0 <= d <= ceiling for d in ds)
    # full jitter spreads over the whole range, not near the top only
    assert min(ds) < ceiling * 0.05
    assert max(ds) > ceiling * 0.95
    assert sum(ds) / len(ds) == pytest.approx(ceiling / 2, rel=0.1)


def test_delays_grow_with_attempts_until_the_cap() -> None:
    policy = RetryPolicy(base_s=1.0, factor=2.0, cap_s=60.0)
    means = [sum(delays(policy, a)) / 2000 for a in range(8)]
    assert means[:6] == sorted(means[:6])
    assert means[5] > 10 * means[0]
    assert [policy.ceiling(a) for a in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert max(delays(policy, 50)) <= 60.0
    assert policy.ceiling(10_000) == 60.0  # no OverflowError on absurd attempt counts


def test_same_seed_same_decisions() -> None:
    policy = RetryPolicy()
    assert delays(policy, 4, draws=20, seed=1) == delays(policy, 4, draws=20, seed=1)


def test_expires_at_max_age_and_never_schedules_past_it() -> None:
    policy = RetryPolicy(base_s=1.0, factor=2.0, cap_s=600.0, max_age_s=3600.0)
    rng = random.Random(3)
    near_end = policy.decide(12, T0, T0 + 3599.0, rng)
    assert isinstance(near_end, RetryAt)
    assert near_end.when <= T0 + 3600.0

    at_end = policy.decide(13, T0, T0 + 3600.0, rng)
    assert isinstance(at_end, Expire)
    assert "13 attempts" in at_end.reason and "max age 1.0 h" in at_end.reason
    assert isinstance(policy.decide(14, T0, T0 + 99_999.0, rng), Expire)


def test_default_max_age_is_four_hours() -> None:
    policy = RetryPolicy()
    rng = random.Random(0)
    assert isinstance(policy.decide(3, T0, T0 + 4 * 3600 - 1, rng), RetryAt)
    assert isinstance(policy.decide(3, T0, T0 + 4 * 3600, rng), Expire)


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(cap_s=120.0)
    rng = random.Random(5)
    d = policy.decide(0, T0, T0, rng, retry_after_s=30.0)
    assert isinstance(d, RetryAt) and d.delay_s == 30.0
    d = policy.decide(0, T0, T0, rng, retry_after_s=10_000.0)
    assert isinstance(d, RetryAt) and d.delay_s == 120.0


@pytest.mark.parametrize(
    "kwargs", [{"base_s": 0}, {"factor": 0.5}, {"cap_s": 0.5}, {"max_age_s": -1}], ids=lambda k: next(iter(k))
)
def test_bad_policy_values_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_negative_attempts_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy().decide(-1, T0, T0, random.Random(0))
