"""The work between the message loop and the background tasks: bounded, coalescing queues.

:class:`WorkQueues` is the router's :class:`~kalshibook.collector.effects.Effects`. Every queue is
a coalescing set keyed by market or sid, or a list of merged time windows (at most
``MAX_WINDOWS``), so it is bounded by the size of the exchange, never by the message rate, and the
message loop never waits on it. Each background task sleeps on its own wake event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

__all__ = ("MAX_WINDOWS", "WorkQueues", "merge_windows")

MAX_WINDOWS: Final = 1024
"""Most backfill windows kept; beyond it the two closest windows are merged."""
_MERGE_SLACK: Final = timedelta(seconds=1)


class WorkQueues:
    """The router's :class:`~kalshibook.collector.effects.Effects`, queued (bounded, coalescing)."""

    def __init__(self) -> None:
        self.snapshots: dict[int, dict[str, None] | None] = {}
        """Snapshots to request per orderbook sid: those markets, or (None) all of the sid's."""
        self.resubscribe_sids: dict[int, tuple[str, str]] = {}
        self.adds: dict[str, None] = {}
        self.removes: dict[str, None] = {}
        self.windows: list[tuple[datetime, datetime]] = []
        self.confirms: dict[str, None] = {}
        self.enrich_markets: dict[str, None] = {}
        self.enrich_events: dict[str, None] = {}
        self.final_books: dict[str, None] = {}
        """Unfollowed markets whose book was inside a gap: fetch their final book over REST."""
        self.rediscover_due = False
        self.sub_wake = asyncio.Event()
        self.backfill_wake = asyncio.Event()
        self.confirm_wake = asyncio.Event()
        self.enrich_wake = asyncio.Event()
        self.discover_wake = asyncio.Event()
        self.windows_merged = 0

    # -- Effects ------------------------------------------------------------------------------

    def request_snapshot(self, sid: int, tickers: list[str] | None) -> None:
        wanted = self.snapshots.get(sid, {})
        if tickers is None or wanted is None:
            self.snapshots[sid] = None
        else:
            wanted.update(dict.fromkeys(tickers))
            self.snapshots[sid] = wanted
        self.sub_wake.set()

    def resubscribe(self, sid: int, channel: str, reason: str) -> None:
        self.resubscribe_sids[sid] = (channel, reason)
        self.snapshots.pop(sid, None)
        self.sub_wake.set()

    def backfill(self, start: datetime, end: datetime) -> None:
        if end < start:
            start, end = end, start
        self.windows.append((start, end))
        self.windows = merge_windows(self.windows)
        while len(self.windows) > MAX_WINDOWS:  # bound: merge the two closest windows
            w = self.windows
            i = min(range(len(w) - 1), key=lambda k: w[k + 1][0] - w[k][1])
            w[i : i + 2] = [(w[i][0], max(w[i][1], w[i + 1][1]))]
            self.windows_merged += 1
        self.backfill_wake.set()

    def confirm_settlement(self, ticker: str) -> None:
        self.confirms[ticker] = None
        self.confirm_wake.set()

    def subscribe_markets(self, tickers: list[str]) -> None:
        for t in tickers:
            self.removes.pop(t, None)
            self.adds[t] = None
        self.sub_wake.set()

    def unsubscribe_markets(self, tickers: list[str]) -> None:
        for t in tickers:
            self.adds.pop(t, None)
            self.removes[t] = None
        self.sub_wake.set()

    def enrich(self, market: str | None = None, event: str | None = None) -> None:
        if market:
            self.enrich_markets[market] = None
        if event:
            self.enrich_events[event] = None
        self.enrich_wake.set()

    def rediscover(self) -> None:
        self.rediscover_due = True
        self.discover_wake.set()

    def depth(self) -> dict[tuple[str, ...], float]:
        return {
            ("snapshots",): float(sum(1 if v is None else len(v) for v in self.snapshots.values())),
            ("resubscribe",): float(len(self.resubscribe_sids)),
            ("subscribe",): float(len(self.adds)),
            ("unsubscribe",): float(len(self.removes)),
            ("backfill",): float(len(self.windows)),
            ("settlements",): float(len(self.confirms)),
            ("enrich",): float(len(self.enrich_markets) + len(self.enrich_events)),
            ("final_books",): float(len(self.final_books)),
        }


def merge_windows(windows: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Sort and merge overlapping (or nearly touching) windows."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1] + _MERGE_SLACK:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out
