"""Gap handling of the router: sequence gaps, terminal errors, disconnects, restarts.

A market's gap opens when its book becomes untrustworthy (sequence gap on its sid, terminal error
10/25, disconnect, a delta that does not fit the book, daemon restart) with ``from_ts`` = the last
exchange time received on its subscription, and closes when its next snapshot is stamped: one
``book_gaps`` row ``[from_ts, to_ts]``. The first cause is the row's reason. Trade gaps become
backfill windows, ending at the next trade received; lost lifecycle frames a rediscovery.
Unsolicited control frames and unknown frames are counted and logged here too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from kalshibook.collector.router_core import LIFECYCLE, MarketState, RouterCore
from kalshibook.collector.subscriptions import ORDERBOOK
from kalshibook.kalshi.sequencing import GapDetected
from kalshibook.kalshi.ws import Disconnected
from kalshibook.kalshi.ws_frames import ErrorFrame, Ok, Subscribed, UnknownFrame, Unsubscribed

__all__ = ("GapRouting",)

log = logging.getLogger(__name__)


class GapRouting(RouterCore):
    """Gaps, errors, disconnects and control frames."""

    def open_restart_gaps(self, tickers: Iterable[str], from_ts: datetime) -> None:
        """Daemon restart: books of ``tickers`` are unknown since ``from_ts`` (the last data
        stored by the previous run) until their next snapshot."""
        for t in tickers:
            mk = self._mk.get(t)
            if mk is None:
                mk = self._mk[t] = MarketState(t)
            if mk.gap is None:
                mk.gap = (from_ts, "daemon_restart", None)

    def open_trade_outage(self, since: datetime) -> None:
        """Trades since ``since`` may be missing (daemon restart): backfill up to the next
        trade received."""
        if self._trade_outage is None or since < self._trade_outage:
            self._trade_outage = since

    def close_gaps(self, tickers: Iterable[str], now: datetime) -> None:
        """Write the open gaps of ``tickers`` up to the exchange clock (market gone, or
        shutdown: the next run's ``daemon_restart`` gap continues from there)."""
        to_ts = self.xclock or now
        for t in tickers:
            mk = self._mk.get(t)
            if mk is not None and mk.gap is not None:
                self._gap_row(t, mk.gap, to_ts, now)
                mk.gap = None

    def needs_final_book(self, ticker: str) -> bool:
        mk = self._mk.get(ticker)
        return mk is not None and mk.gap is not None and mk.mb is None

    def open_gap_tickers(self) -> list[str]:
        return [t for t, mk in self._mk.items() if mk.gap is not None]

    def _book_gap_on_sid(
        self, sid: int, reason: str, now: datetime, since: datetime | None = None
    ) -> list[str]:
        """Open gaps on every book of ``sid``, from ``since`` (default: the sid's last frame;
        ``now`` when no exchange time was received yet: its snapshots are still unstamped)."""
        s = self._sids.get(sid)
        if s is None:
            return []
        start = since if since is not None else s.last_ts
        tickers = sorted(s.tickers)
        for t in tickers:
            mk = self._mk.get(t)
            if mk is not None and mk.sid == sid:
                self._open_gap(mk, start, reason, sid, now)
        return tickers

    def _on_gap(self, g: GapDetected) -> None:
        now = g.received_at or self.xclock
        channel = self._channel_of(g.sid)
        self.metrics.seq_gaps.inc(1.0, channel or "unknown")
        log.warning(
            "seq gap sid=%d channel=%s expected=%d got=%d", g.sid, channel, g.expected, g.got
        )
        if channel == ORDERBOOK:
            assert now is not None
            self._book_gap_on_sid(g.sid, "seq_gap", now)
            # every market of the sid: the lost frame may be the first snapshot of one without
            # a book yet (just subscribed or added), whose deltas are dropped until it has one
            self.effects.request_snapshot(g.sid, None)
        elif channel == "trade":
            s = self._sids.get(g.sid)
            self._trade_gap(s.last_ts if s is not None else None)
        elif channel == LIFECYCLE:
            self.effects.rediscover()

    def _trade_gap(self, since: datetime | None) -> None:
        start = since or self._trade_last_ts or self.xclock
        if start is not None and (self._trade_outage is None or start < self._trade_outage):
            self._trade_outage = start

    def _on_error(self, f: ErrorFrame) -> None:
        sid = f.sid
        if not f.terminal or sid is None:
            self.control_errors += 1
            log.warning("kalshi ws error code=%d msg=%s sid=%s", f.code, f.msg, sid)
            return
        reason = f"error_{f.code}"
        channel = self._channel_of(sid)
        log.warning("subscription failed sid=%d channel=%s code=%d", sid, channel, f.code)
        now = f.received_at or self.xclock
        assert now is not None
        if channel == ORDERBOOK:
            self._book_gap_on_sid(sid, reason, now, self.xclock)
        elif channel == "trade":
            s = self._sids.get(sid)
            self._trade_gap(s.last_ts if s is not None else None)
        elif channel == LIFECYCLE:
            self.effects.rediscover()
        self._sids.pop(sid, None)
        self.metrics.resubscribes.inc(1.0, reason)
        self.effects.resubscribe(sid, channel or "", reason)

    def _on_disconnected(self, d: Disconnected) -> None:
        now = d.at
        if not self.stopping:
            # The silence watchdog closed the socket: the gap's reason says so.
            reason = "silence" if d.reason.startswith("silent") else "disconnect"
            for mk in self._mk.values():
                if mk.mb is None or mk.sid is None:
                    continue
                # One ordered stream: everything before the last frame received arrived.
                self._open_gap(mk, self.xclock, reason, mk.sid)
            self._trade_gap(self._trade_last_ts)
            self.effects.rediscover()
            for mk in self._mk.values():
                mk.sid = None
            self._sids.clear()
        self.flush_unstamped(now)
        log.info("session ended reason=%s", d.reason)

    # -- control ----------------------------------------------------------------------------

    def _on_control(self, f: Subscribed | Ok | Unsubscribed) -> None:
        log.debug("unsolicited control frame type=%s sid=%s id=%s", f.kind, f.sid, f.id)

    def _on_unknown(self, f: UnknownFrame) -> None:
        self.unknown_frames += 1
        log.debug("unknown frame type=%s", f.type)
