"""The backfill's progress: a bar with counts and an ETA on a terminal, log lines otherwise.

The line is time-based: :meth:`ProgressReport.tick` (a task the run owns, cancelled and awaited
at its end) shows it every ``every`` seconds (every second on a terminal) while anything is in
flight (the market listing, a market's requests and their retries), not only when a market is done.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
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
        self.listed = 0
        """Markets listed so far (before :meth:`start`)."""
        self.loading = False
        self.trade_count = 0
        """Trades committed (their market's progress saved)."""
        self.in_flight = 0
        """Trades fetched whose progress is not saved yet (a failed attempt's are discarded)."""
        self.retrying = 0
        """Markets waiting to be retried."""
        self.t0 = time.monotonic()
        self._t_load = self.t0
        self._last = 0.0

    def listing(self, n: int) -> None:
        self.listed += n

    def start(self, total: int) -> None:
        self.total = total
        self.loading = True
        self._t_load = time.monotonic()

    def trades(self, n: int) -> None:
        self.in_flight += n

    def commit(self, n: int) -> None:
        """``n`` of the trades in flight are stored and their progress saved."""
        self.in_flight -= n
        self.trade_count += n

    def discard(self, n: int) -> None:
        """``n`` of the trades in flight will be fetched again (their attempt failed)."""
        self.in_flight -= n

    def line(self, requests: int) -> str:
        now = time.monotonic()
        elapsed = now - self.t0
        if not self.loading:
            return (
                f"listing markets: {self.listed} listed requests {requests} elapsed {int(elapsed)}s"
            )
        eta = eta_text(self.done, self.total, now - self._t_load)
        retrying = f" retrying {self.retrying}" if self.retrying else ""
        return (
            f"markets {self.done}/{self.total} trades {self.trade_count + self.in_flight} "
            f"requests {requests}{retrying} elapsed {int(elapsed)}s eta {eta}"
        )

    def show(self, requests: int) -> None:
        """Write the line now (the bar on a terminal, a log line otherwise)."""
        self._last = time.monotonic()
        if self.tty:
            width = 30
            filled = width * self.done // max(1, self.total)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r\x1b[K[{bar}] {self.line(requests)}")
            self.stream.flush()
        else:
            log.info("backfill %s", self.line(requests))

    async def tick(self, requests: Callable[[], int]) -> None:
        """Show the line every ``every`` seconds (every second on a terminal) until cancelled."""
        period = min(1.0, self.every) if self.tty else self.every
        while True:
            await asyncio.sleep(period)
            self.show(requests())

    def market_done(self, requests: int) -> None:
        self.done += 1
        if self.tty and (time.monotonic() - self._last >= 0.2 or self.done == self.total):
            self.show(requests)

    def finish(self, requests: int) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
        log.info("backfill done: %s", self.line(requests))
