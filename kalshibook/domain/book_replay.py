"""Replaying a market's stored snapshots and deltas in feed order (pure: no I/O, no clock).

:class:`BookReplay` gives, after the events with ``ts <= t`` have been fed, the same book as
``kalshibook.storage.book_reads.book_at(t)``: the latest snapshot (by ``(ts, epoch, seq)``), then
the deltas of that snapshot's epoch with a higher ``seq`` (a delta may be stamped up to
``DELTA_SLACK`` before its snapshot: those are kept in a window and re-applied when the
snapshot arrives), with the same completeness rules: no snapshot yet, an invalid snapshot, a delta
that does not fit, or a recorded gap containing ``t`` or begun after the snapshot. Book math is
:class:`kalshibook.domain.book.OrderBook`'s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, NamedTuple

from kalshibook.domain.book import OrderBook
from kalshibook.errors import BookError

__all__ = ("DELTA_SLACK", "BookReplay", "Gap")

DELTA_SLACK: Final = timedelta(minutes=1)  # = kalshibook.storage.book_reads.DELTA_SLACK
WINDOW_MAX: Final = 200_000
"""Deltas kept for re-application (those within DELTA_SLACK of the newest); beyond it the oldest
are dropped and a snapshot arriving then is flagged ``slack_overflow``."""


class Gap(NamedTuple):
    from_ts: datetime
    to_ts: datetime
    reason: str


class _Delta(NamedTuple):
    ts: datetime
    epoch: int
    seq: int
    side: str
    price: int
    delta: int


class BookReplay:
    """One market's book, fed snapshots and deltas in ``(ts, epoch, seq)`` order."""

    def __init__(self, gaps: Sequence[Gap] = (), deltas_from: datetime | None = None) -> None:
        """``deltas_from``: where the stored deltas begin when earlier ones of this market were
        dropped (retention): a book replayed from a snapshot before it lacks them."""
        self.deltas_from = deltas_from
        self.book = OrderBook()
        self.snap_ts: datetime | None = None
        self.epoch: int | None = None
        self.seq: int | None = None
        self._problem: str | None = "no_snapshot"
        self._gaps = sorted(gaps)
        self._window: deque[_Delta] = deque()
        self._overflow = False

    def snapshot(
        self, ts: datetime, epoch: int, seq: int | None, yes_json: str, no_json: str
    ) -> None:
        self.snap_ts, self.epoch, self.seq = ts, epoch, seq
        self._problem = None
        try:
            self.book = OrderBook.from_rows(yes_json, no_json)
        except BookError:
            self.book = OrderBook()
            self._problem = "invalid_snapshot"
        if self._overflow:
            self._problem = self._problem or "slack_overflow"
        if seq is None:
            return  # a REST snapshot: only deltas stamped after it follow it
        lo = ts - DELTA_SLACK
        late = sorted(
            (d for d in self._window if d.epoch == epoch and d.seq > seq and d.ts >= lo),
            key=lambda d: d.seq,
        )
        for d in late:
            self._apply(d)

    def delta(self, ts: datetime, epoch: int, seq: int, side: str, price: int, delta: int) -> None:
        d = _Delta(ts, epoch, seq, side, price, delta)
        self._window.append(d)
        horizon = ts - DELTA_SLACK
        while self._window and self._window[0].ts < horizon:
            self._window.popleft()
        if len(self._window) > WINDOW_MAX:
            self._window.popleft()
            self._overflow = True
        if self.snap_ts is None or epoch != self.epoch:
            return
        if self.seq is None:
            if ts > self.snap_ts:
                self._apply(d)
        elif seq > self.seq and ts >= self.snap_ts - DELTA_SLACK:
            self._apply(d)

    def _apply(self, d: _Delta) -> None:
        try:
            self.book.apply_delta_units(d.side, d.price, d.delta)
        except BookError:
            self._problem = self._problem or "inconsistent_deltas"

    def gap_at(self, at: datetime) -> str | None:
        """Why the book at ``at`` is incomplete (a reason), or None when it is complete."""
        found: Gap | None = None
        for g in self._gaps:
            if g.from_ts > at:
                break
            if g.to_ts > at or self.snap_ts is None or g.from_ts > self.snap_ts:
                found = g
        if found is not None:
            return found.reason
        floor, snap = self.deltas_from, self.snap_ts
        if floor is not None and snap is not None and snap < floor and at > snap:
            return "deltas_dropped"  # as kalshibook.storage.book_reads.book_at says
        return self._problem
