"""Capped, jittered exponential backoff and the retry-or-give-up classifier (pure)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Literal

from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from kalshibook.errors import ConfigError, FatalFeedError, FeedError

__all__ = ("Backoff", "Verdict", "classify", "http_status_verdict")

Verdict = Literal["retry", "fatal"]


class Backoff:
    """Delays ``initial * factor**n`` capped at ``maximum``, each shrunk by up to ``jitter``.

    Delay ``n`` lies in ``[base * (1 - jitter), base]`` with ``base = min(maximum, initial *
    factor**n)``, so it never exceeds ``maximum``. :meth:`reset` after a success starts over.
    Iterating yields delays forever.
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


def http_status_verdict(status: int) -> Verdict:
    """429, 408 and 5xx are worth retrying; other statuses (401/403 above all) are not."""
    if status in (408, 429) or status >= 500:
        return "retry"
    return "fatal"


def classify(exc: BaseException) -> Verdict:
    """Whether a WebSocket connect/session error is worth a reconnect.

    Retry: OS/network errors, timeouts, dropped connections, malformed handshakes, 5xx/429/408
    handshake rejections, non-fatal feed errors. Fatal: 401/403 (bad credentials) and other 4xx
    rejections, bad URIs, configuration errors, :class:`FatalFeedError`, anything unexpected.
    """
    if isinstance(exc, FatalFeedError | ConfigError | InvalidURI):
        return "fatal"
    if isinstance(exc, InvalidStatus):
        return http_status_verdict(exc.response.status_code)
    if isinstance(
        exc,
        OSError | TimeoutError | asyncio.TimeoutError | EOFError | ConnectionClosed | FeedError,
    ):
        return "retry"
    if isinstance(exc, InvalidHandshake):
        return "retry"
    return "fatal"
