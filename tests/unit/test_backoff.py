"""Backoff bounds (kalshibook.backoff)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshibook.backoff import Backoff


def test_unjittered_sequence_is_capped_exponential() -> None:
    b = Backoff(initial=0.5, maximum=4.0, factor=2.0, jitter=0.0)
    assert [b.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


@given(
    initial=st.floats(min_value=0.0, max_value=10.0),
    maximum=st.floats(min_value=0.0, max_value=100.0),
    factor=st.floats(min_value=1.0, max_value=5.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delays_within_bounds(
    initial: float, maximum: float, factor: float, jitter: float, seed: int
) -> None:
    b = Backoff(initial, maximum, factor, jitter, rng=random.Random(seed))
    for n in range(60):
        base = b.base(n)
        d = b.next()
        assert 0.0 <= d <= maximum
        assert base * (1 - jitter) - 1e-12 <= d <= base + 1e-12


def test_jitter_spreads_delays() -> None:
    b = Backoff(initial=10.0, maximum=10.0, jitter=0.5, rng=random.Random(1))
    delays = [b.next() for _ in range(200)]
    assert min(delays) >= 5.0
    assert max(delays) <= 10.0
    assert max(delays) - min(delays) > 3.0


def test_reset_starts_over() -> None:
    b = Backoff(initial=1.0, maximum=60.0, jitter=0.0)
    for _ in range(5):
        b.next()
    assert b.attempt == 5
    b.reset()
    assert b.next() == 1.0
    assert next(iter(b)) == 2.0


def test_huge_attempt_does_not_overflow() -> None:
    b = Backoff(initial=1.0, maximum=30.0, factor=10.0, jitter=0.0)
    assert b.base(10_000) == 30.0


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=-1)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)
    with pytest.raises(ValueError):
        Backoff(jitter=2)
