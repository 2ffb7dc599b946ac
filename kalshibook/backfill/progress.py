"""The backfill's progress: a bar with counts and an ETA on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

__all__ = ("ProgressReport", "eta_text")

log = logging.getLogger("kalshibook.backfill")


def eta_text(done: int, total: int, elapsed: float) -> str:
    """``"1h02m"``-style remaining time at the pace so far (``"?"`` before the first market)."""
    if done <= 0 or total <= done:
        return "?" if total > done else "0s"
    left = elapsed / done * (total - done)
    h, rem = divmod(int(left), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressReport:
    def __init__(
        self, stream: TextIO | None = None, *, tty: bool | None = None, every: float = 5.0
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = every
        self.total = 0
        self.done = 0
        self.trade_count = 0
        self.t0 = time.monotonic()
        self._last = 0.0

    def start(self, total: int) -> None:
        self.total = total
        self.t0 = time.monotonic()

    def trades(self, n: int) -> None:
        self.trade_count += n

    def line(self, requests: int) -> str:
        elapsed = time.monotonic() - self.t0
        return (
            f"markets {self.done}/{self.total} trades {self.trade_count} requests {requests} "
            f"elapsed {int(elapsed)}s eta {eta_text(self.done, self.total, elapsed)}"
        )

    def market_done(self, requests: int) -> None:
        self.done += 1
        now = time.monotonic()
        if self.tty:
            if now - self._last >= 0.2 or self.done == self.total:
                self._last = now
                width = 30
                filled = width * self.done // max(1, self.total)
                bar = "#" * filled + "-" * (width - filled)
                self.stream.write(f"\r[{bar}] {self.line(requests)}")
                self.stream.flush()
        elif now - self._last >= self.every:
            self._last = now
            log.info("backfill %s", self.line(requests))

    def finish(self, requests: int) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
        log.info("backfill done: %s", self.line(requests))
