"""Capped, jittered exponential backoff (pure): the retry delays of the Kalshi clients, the
collector's loops and the database writer."""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ("Backoff",)


class Backoff:
    """Delays ``initial * factor**n`` capped at ``maximum``, each shrunk by up to ``jitter``.

    Delay ``n`` lies in ``[base * (1 - jitter), base]`` with ``base = min(maximum, initial *
    factor**n)``, so it never exceeds ``maximum``. :meth:`reset` after a success starts over.
    Iterating yields delays forever.

    Kept hand-written, not tenacity/backoff: callers need a bare delay source (``reset()``,
    ``base(n)`` for schedules, a seeded rng), not a retry loop that owns the call and its errors.
    """

    __slots__ = ("_rng", "attempt", "factor", "initial", "jitter", "maximum")

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if initial < 0 or maximum < 0:
            raise ValueError("backoff delays must be non-negative")
        if factor < 1:
            raise ValueError("backoff factor must be >= 1")
        if not 0 <= jitter <= 1:
            raise ValueError("backoff jitter must be within [0, 1]")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.attempt = 0
        self._rng = rng or random.Random()

    def base(self, attempt: int) -> float:
        """The un-jittered delay of attempt ``attempt`` (0-based)."""
        delay = min(self.initial, self.maximum)
        if delay == 0:
            return 0.0
        for _ in range(attempt):
            delay *= self.factor
            if delay >= self.maximum:
                return self.maximum
        return min(delay, self.maximum)

    def next(self) -> float:
        """The next delay in seconds."""
        base = self.base(self.attempt)
        self.attempt += 1
        if self.jitter == 0:
            return base
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempt = 0

    def __iter__(self) -> Iterator[float]:
        return self

    def __next__(self) -> float:
        return self.next()
