"""Frames -> books, rows and follow-up work (pure: no I/O, no asyncio, no clock of its own).

:class:`Router` consumes, in wire order, what a
:class:`~kalshibook.kalshi.ws_session.WsSession` yields (decoded frames,
:class:`~kalshibook.kalshi.sequencing.GapDetected`,
:class:`~kalshibook.kalshi.ws_session.Disconnected`) and

* keeps one exact integer :class:`~kalshibook.domain.book.BookSet` of every subscribed market,
* appends the rows to store per table (taken by :meth:`Router.take`; the caller hands them to
  the writer): every snapshot frame, every applied delta, a ``quotes`` row on every top-of-book
  change, checkpoint snapshots every ``checkpoint_deltas`` deltas of a market, trades, ticker
  stats, lifecycle rows, market status and settlement upserts, and ``book_gaps`` rows,
* asks its :class:`~kalshibook.collector.effects.Effects` for follow-up work it cannot do itself
  (``get_snapshot``, resubscriptions, trade backfill windows, settlement confirmation,
  subscription changes, enrichment), which the service runs in background tasks.

Times. Every row time is exchange time. Snapshot frames carry none: a snapshot reflects the book
when the exchange produced it, which is after every frame received before it and before every
frame received after it, so its rows (the snapshot, the quote it causes and the closing of the
market's gap) are stamped with the time of the next timestamped frame on the connection. Lifecycle
frames carry no time either and are stamped with the exchange clock (the latest exchange time
seen).

Gaps (:mod:`.router_gaps`). A market's gap opens when its book becomes untrustworthy (sequence gap
on its sid, terminal error 10/25, disconnect, a delta that does not fit the book, daemon restart)
with ``from_ts`` = the last exchange time received on its subscription, and closes when its next
snapshot is stamped: one ``book_gaps`` row ``[from_ts, to_ts]``. The first cause is the row's
reason.

Layout. One class, one object: :class:`Router` is :class:`~.router_core.RouterCore` (state, clock,
shared row helpers) with the handlers of :mod:`.router_books` (order books), :mod:`.router_gaps`
(gaps, errors, disconnects, control frames) and :mod:`.router_lifecycle` (lifecycle frames) mixed
in; the per-frame trade and ticker handlers are here. The split is by source file only: the
dispatch table holds bound methods, and a handler reads the state as attributes of ``self`` as
before, so the per-frame path has no extra call or look-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final
from uuid import UUID

import msgspec

from kalshibook.collector.router_books import BookRouting
from kalshibook.collector.router_core import new_row
from kalshibook.collector.router_gaps import GapRouting
from kalshibook.collector.router_lifecycle import LifecycleRouting
from kalshibook.kalshi.sequencing import GapDetected
from kalshibook.kalshi.ws import Disconnected
from kalshibook.kalshi.ws_frames import (
    ErrorFrame,
    EventFeeUpdate,
    EventLifecycle,
    MarketLifecycle,
    Ok,
    OrderbookDelta,
    OrderbookSnapshot,
    Subscribed,
    Ticker,
    Trade,
    UnknownFrame,
    Unsubscribed,
)
from kalshibook.storage.tables import MarketStatsRow, TradeRow

__all__ = ("Router",)

_uuid: Final = msgspec.convert
"""``_uuid(text, UUID)``: msgspec's C parser (a third of ``UUID(text)``'s cost); raises
``msgspec.ValidationError`` on bad text, as ``UUID()`` raises ``ValueError``."""


class Router(BookRouting, GapRouting, LifecycleRouting):
    """Frames in, rows and effects out. Single-threaded; never awaits."""

    def _handlers(self) -> dict[type, Callable[[Any], None]]:
        return {
            OrderbookDelta: self._on_delta,
            Trade: self._on_trade,
            Ticker: self._on_ticker,
            OrderbookSnapshot: self._on_snapshot,
            MarketLifecycle: self._on_lifecycle,
            EventLifecycle: self._on_event_lifecycle,
            EventFeeUpdate: self._on_fee,
            GapDetected: self._on_gap,
            Disconnected: self._on_disconnected,
            ErrorFrame: self._on_error,
            Subscribed: self._on_control,
            Ok: self._on_control,
            Unsubscribed: self._on_control,
            UnknownFrame: self._on_unknown,
        }

    # -- entry points -----------------------------------------------------------------------

    def handle(self, item: Any) -> None:
        """Route one item of a WS session."""
        handler = self._dispatch.get(item.__class__)
        if handler is None:
            self.unknown_frames += 1
            return
        handler(item)

    def handle_all(self, items: Iterable[Any], on_error: Callable[[Any], None]) -> None:
        """:meth:`handle` each item in order; an exception raised for one item is reported to
        ``on_error`` (called inside the ``except`` block) and the next item is routed."""
        dispatch = self._dispatch.get
        for item in items:
            handler = dispatch(item.__class__)
            if handler is None:
                self.unknown_frames += 1
                continue
            try:
                handler(item)
            except Exception:  # noqa: BLE001 - one bad frame must not stop the recorder
                on_error(item)

    # -- trades, tickers --------------------------------------------------------------------

    def _on_trade(self, f: Trade) -> None:
        rec = f.received_at
        assert rec is not None
        ts = f.ts or rec
        xc = self.xclock
        if xc is None or ts > xc:
            self.xclock = ts
        if self._unstamped:
            self._stamp(self.xclock or ts)
        sid = f.sid
        if sid is not None:
            s = self._sids.get(sid)
            if s is None:
                s = self._sid_state(sid, "trade")
            s.last_ts = ts
        self._lag_tick += 1
        if self._lag_tick >= self._lag_every:
            self._lag_tick = 0
            self.metrics.lag.observe((rec - ts).total_seconds(), "trade")
        outage = self._trade_outage
        if outage is not None:
            self._trade_outage = None
            self.effects.backfill(outage, ts)
        self._trade_last_ts = ts
        self._emit(
            "trades",
            TradeRow(
                ts,
                _uuid(f.trade_id, UUID),
                f.market_ticker,
                f.yes_price,
                f.no_price,
                f.count,
                f.taker_outcome_side,
                f.taker_book_side,
                # absent from older frames (added 2026-05-29): false until the trade's REST copy
                # sets it (the column is NOT NULL; storage.tables.MERGE_TRADES)
                bool(f.is_block_trade),
                "ws",
                rec,
                self._trade_ranks.seq(f.market_ticker, ts),
            ),
        )

    def _on_ticker(self, f: Ticker) -> None:
        rec = f.received_at
        assert rec is not None
        ts = f.ts or rec
        xc = self.xclock
        if xc is None or ts > xc:
            self.xclock = ts
        if self._unstamped:
            self._stamp(self.xclock or ts)
        self._lag_tick += 1
        if self._lag_tick >= self._lag_every:
            self._lag_tick = 0
            self.metrics.lag.observe((rec - ts).total_seconds(), "ticker")
        dv = f.dollar_volume
        doi = f.dollar_open_interest
        self._out_stats.append(
            new_row(
                MarketStatsRow,
                (
                    ts,
                    f.market_ticker,
                    rec,
                    f.price,
                    f.yes_bid,
                    f.yes_ask,
                    f.yes_bid_size,
                    f.yes_ask_size,
                    f.last_trade_size,
                    f.volume,
                    f.open_interest,
                    None if dv is None else int(dv),
                    None if doi is None else int(doi),
                ),
            ),
        )
