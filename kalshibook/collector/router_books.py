"""Order book handling of the router: snapshots, deltas, checkpoints, unfollowed books.

A delta applies only to a book that came from the same sid and is clean (has a snapshot, no open
gap); otherwise it is dropped (counted) or, when it does not fit the book, the book's gap opens and
a ``get_snapshot`` is requested. A delta of a market with no book at all asks for its first
snapshot (once). A snapshot replaces the book, closes its gap and, when it carries
no time, waits for the next timestamped frame (:class:`~.router_core.Unstamped`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from kalshibook.collector.router_core import MarketState, RouterCore, Unstamped, new_row
from kalshibook.collector.subscriptions import ORDERBOOK
from kalshibook.domain.book import OrderBook
from kalshibook.errors import BookError
from kalshibook.kalshi.ws_frames import OrderbookDelta, OrderbookSnapshot
from kalshibook.storage.tables import DeltaRow, SnapshotRow

__all__ = ("BookRouting",)

log = logging.getLogger(__name__)

FIRST_SNAPSHOT_ASKS = 10_000
"""Markets remembered as asked for their first snapshot (then forgotten all at once)."""


class BookRouting(RouterCore):
    """The ``orderbook_delta`` channel and the book operations the service calls."""

    def _on_delta(self, f: OrderbookDelta) -> None:
        rec = f.received_at
        assert rec is not None
        ts = f.ts or rec
        xc = self.xclock
        if xc is None or ts > xc:
            self.xclock = ts
        if self._unstamped:
            self._stamp(self.xclock or ts)
        sid = f.sid
        assert sid is not None
        s = self._sids.get(sid)
        if s is None:
            s = self._sid_state(sid, ORDERBOOK)
        s.last_ts = ts
        s.last_seq = f.seq
        self._lag_tick += 1
        if self._lag_tick >= self._lag_every:
            self._lag_tick = 0
            self.metrics.lag.observe((rec - ts).total_seconds(), "orderbook_delta")
        ticker = f.market_ticker
        mk = self._mk.get(ticker)
        if mk is None or mk.sid != sid:
            self.dropped_deltas += 1
            if mk is None:
                self._ask_first_snapshot(sid, ticker)
            return
        mb = mk.mb
        if mb is None or not mb.has_snapshot or mb.dirty:  # i.e. not mb.ready
            self.dropped_deltas += 1
            return
        try:
            quote = self._apply_delta(mb, f.side, f.price, f.delta)
        except BookError as exc:
            log.warning(
                "delta does not fit book ticker=%s sid=%d seq=%s: %s", ticker, sid, f.seq, exc
            )
            self._open_gap(mk, mk.ts, "seq_gap", sid)
            self.effects.request_snapshot(sid, [ticker])
            return
        seq = f.seq
        assert seq is not None
        mk.seq = seq
        mk.ts = ts
        self._out_deltas.append(
            new_row(DeltaRow, (ts, ticker, rec, f.side, f.price, f.delta, s.epoch, sid, seq))
        )
        if quote is not None:
            self._quote_row(ticker, ts, rec, quote)
        if mb.deltas_since_checkpoint >= self.checkpoint_deltas:
            self._checkpoint_row(mk, rec)

    def _ask_first_snapshot(self, sid: int, ticker: str) -> None:
        """A delta of a market with no book on any sid: Kalshi sends a market's snapshot first
        when it joins a subscription, so that snapshot was lost (or never sent) and, unasked, the
        market's deltas would be dropped for as long as the subscription lives. Ask once per
        ``(sid, market)``; the subscriber asks the exchange only for markets still subscribed on
        that sid (a late delta of a market just unfollowed asks nothing)."""
        key = (sid, ticker)
        if key in self._asked_first:
            return
        if len(self._asked_first) >= FIRST_SNAPSHOT_ASKS:
            self._asked_first.clear()
        self._asked_first.add(key)
        log.info("delta before any snapshot ticker=%s sid=%d: asking for its snapshot", ticker, sid)
        self.effects.request_snapshot(sid, [ticker])

    def _on_snapshot(self, f: OrderbookSnapshot) -> None:
        rec = f.received_at
        assert rec is not None
        sid = f.sid
        assert sid is not None
        s = self._sids.get(sid)
        if s is not None and f.seq is not None and s.last_seq is not None and f.seq <= s.last_seq:
            # the sequence restarted: Kalshi gave a new subscription this sid number again, and
            # its rows need an epoch of their own ((epoch, seq) orders a market's book events)
            del self._sids[sid]
            s = None
        if s is None:
            s = self._sid_state(sid, ORDERBOOK)
        s.last_seq = f.seq
        ticker = f.market_ticker
        self._asked_first.discard((sid, ticker))
        mk = self._mk.get(ticker)
        if mk is None:
            mk = self._mk[ticker] = MarketState(ticker)
        gap = mk.gap
        resync = f.id is not None or gap is not None
        try:
            quote = self.books.apply_snapshot(ticker, f.yes, f.no, now=self._mono())
        except BookError as exc:
            log.warning("invalid snapshot ticker=%s sid=%d: %s", ticker, sid, exc)
            return
        if mk.sid is not None and mk.sid != sid:
            old = self._sids.get(mk.sid)
            if old is not None:
                old.tickers.discard(ticker)
        s.tickers.add(ticker)
        mk.mb = self.books.get(ticker)
        mk.sid = sid
        mk.epoch = s.epoch
        mk.seq = f.seq
        mk.gap = None
        yes, no = mk.mb.book.to_json_levels() if mk.mb is not None else (b"[]", b"[]")
        row: list[Any] = [
            None,
            ticker,
            rec,
            "resync" if resync else "snapshot",
            s.epoch,
            sid,
            f.seq,
            yes,
            no,
        ]
        if f.ts is not None:
            ts = self._advance(f.ts)
            s.last_ts = ts
            row[0] = ts
            self._emit("orderbook_snapshots", SnapshotRow(*row))
            if gap is not None:
                self._gap_row(ticker, gap, ts, rec)
            if quote is not None:
                self._quote_row(ticker, ts, rec, quote)
            mk.ts = ts
        else:
            mk.ts = None
            self._unstamped.append(Unstamped(mk, row, quote, gap))

    def checkpoint_due(self, now: datetime) -> int:
        """Write checkpoints of books due by time (``checkpoint_seconds``); returns how many."""
        n = 0
        for t in self.books.due_for_checkpoint(
            self._mono(), self.checkpoint_deltas, self.checkpoint_seconds
        ):
            mk = self._mk.get(t)
            if mk is not None and self._checkpoint_row(mk, now):
                n += 1
        return n

    def checkpoint_all(self, now: datetime) -> int:
        """Checkpoint every clean book (shutdown)."""
        self.flush_unstamped(now)
        n = 0
        for mk in self._mk.values():
            if self._checkpoint_row(mk, now):
                n += 1
        return n

    def forget(self, ticker: str, now: datetime) -> bool:
        """Stop following a market's book (settled / unsubscribed).

        A clean book is simply dropped: its last stored state stays true. A book inside a gap is
        dropped but its gap stays open, and True is returned: the caller should fetch the final
        book over REST (:meth:`rest_snapshot`), which closes the gap; otherwise the gap is written
        up to the exchange clock at shutdown.
        """
        mk = self._mk.get(ticker)
        if mk is not None and mk.sid is not None:
            s = self._sids.get(mk.sid)
            if s is not None:
                s.tickers.discard(ticker)
        self.books.remove(ticker)
        if mk is None:
            return False
        if mk.gap is None:
            del self._mk[ticker]
            return False
        mk.mb = None
        mk.sid = None
        return True

    def rest_snapshot(
        self,
        ticker: str,
        yes: Iterable[tuple[Any, Any]],
        no: Iterable[tuple[Any, Any]],
        now: datetime,
    ) -> bool:
        """Store the REST book of a market that is no longer followed (its final state) and close
        its gap at the exchange clock. Returns False when the market needed none."""
        mk = self._mk.get(ticker)
        if mk is None or mk.gap is None or mk.mb is not None:
            return False
        ts = self.xclock or now
        book = OrderBook()
        try:
            book.apply_snapshot(yes, no)
        except BookError as exc:
            log.warning("invalid REST book ticker=%s: %s", ticker, exc)
            return False
        y, n = book.to_json_levels()
        self._emit(
            "orderbook_snapshots",
            SnapshotRow(ts, ticker, now, "rest", self.epochs.next(), None, None, y, n),
        )
        self._gap_row(ticker, mk.gap, ts, now)
        self._quote_row(ticker, ts, now, book.top())
        del self._mk[ticker]
        return True

    @property
    def book_count(self) -> int:
        return len(self.books)

    def dirty_count(self) -> int:
        return sum(1 for m in self.books if m.dirty)
