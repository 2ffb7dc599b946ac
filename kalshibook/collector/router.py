"""Frames -> books, rows and follow-up work (pure: no I/O, no asyncio, no clock of its own).

:class:`Router` consumes, in wire order, what a :class:`~kalshibook.kalshi.ws.WsSession` yields
(decoded frames, :class:`~kalshibook.kalshi.sequencing.GapDetected`,
:class:`~kalshibook.kalshi.ws.Disconnected`) and

* keeps one exact integer :class:`~kalshibook.domain.book.BookSet` of every subscribed market,
* appends the rows to store per table (taken by :meth:`Router.take`; the caller hands them to
  the writer): every snapshot frame, every applied delta, a ``quotes`` row on every top-of-book
  change, checkpoint snapshots every ``checkpoint_deltas`` deltas of a market, trades, ticker
  stats, lifecycle rows, market status and settlement upserts, and ``book_gaps`` rows,
* asks its :class:`Effects` for follow-up work it cannot do itself (``get_snapshot``,
  resubscriptions, trade backfill windows, settlement confirmation, subscription changes,
  enrichment), which the service runs in background tasks.

Times. Every row time is exchange time. Snapshot frames carry none: a snapshot reflects the book
when the exchange produced it, which is after every frame received before it and before every
frame received after it, so its rows (the snapshot, the quote it causes and the closing of the
market's gap) are stamped with the time of the next timestamped frame on the connection. Lifecycle
frames carry no time either and are stamped with the exchange clock (the latest exchange time
seen).

Gaps. A market's gap opens when its book becomes untrustworthy (sequence gap on its sid, terminal
error 10/25, disconnect, a delta that does not fit the book, daemon restart) with ``from_ts`` = the
last exchange time received on its subscription, and closes when its next snapshot is stamped:
one ``book_gaps`` row ``[from_ts, to_ts]``. The first cause is the row's reason.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, Protocol
from uuid import UUID

import msgspec

from kalshibook.collector.catalog import Catalog, lifecycle_status
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.reference import SETTLEMENT_RESULTS, price_ranges_json
from kalshibook.collector.subscriptions import ORDERBOOK, EpochClock
from kalshibook.domain.book import BookSet, MarketBook, OrderBook, Quote
from kalshibook.errors import BookError
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
from kalshibook.storage.tables import (
    BookGapRow,
    DeltaRow,
    EventRow,
    LifecycleRow,
    MarketRow,
    MarketStatsRow,
    QuoteRow,
    SettlementRow,
    SnapshotRow,
    TradeRow,
)

__all__ = ("Effects", "NullEffects", "Router", "Row")

_new: Final = tuple.__new__
"""``_new(RowType, (values...))`` builds a row NamedTuple without the Python-level ``__new__``
call of its constructor: half the cost, on the per-frame rows (deltas, quotes, ticker stats)."""
log = logging.getLogger(__name__)

_uuid: Final = msgspec.convert
"""``_uuid(text, UUID)``: msgspec's C parser (a third of ``UUID(text)``'s cost); raises
``msgspec.ValidationError`` on bad text, as ``UUID()`` raises ``ValueError``."""

Row = tuple[Any, ...]
"""One row of a table, as the writer takes it (the table's row NamedTuple)."""

LIFECYCLE = "market_lifecycle_v2"
_ONE_US = timedelta(microseconds=1)
_encode = msgspec.json.encode
_EMPTY_JSON = b"{}"


class Effects(Protocol):
    """Follow-up work the router asks for; implementations must not block (queue it)."""

    def request_snapshot(self, sid: int, tickers: list[str]) -> None:
        """Send ``update_subscription get_snapshot`` for ``tickers`` on orderbook ``sid``."""

    def resubscribe(self, sid: int, channel: str, reason: str) -> None:
        """Subscription ``sid`` is gone (error 10/25): subscribe its channel/markets again."""

    def backfill(self, start: datetime, end: datetime) -> None:
        """Trades may be missing in ``[start, end]``: fetch them over REST."""

    def confirm_settlement(self, ticker: str) -> None: ...

    def subscribe_markets(self, tickers: list[str]) -> None:
        """Add markets to the orderbook subscriptions."""

    def unsubscribe_markets(self, tickers: list[str]) -> None: ...

    def enrich(self, market: str | None = None, event: str | None = None) -> None:
        """Fetch and store the REST view of a market and/or event (and their series)."""

    def rediscover(self) -> None:
        """Lifecycle frames may have been lost: sweep the markets over REST."""


class NullEffects:
    """Effects that do nothing (replay, tests)."""

    def request_snapshot(self, sid: int, tickers: list[str]) -> None:
        pass

    def resubscribe(self, sid: int, channel: str, reason: str) -> None:
        pass

    def backfill(self, start: datetime, end: datetime) -> None:
        pass

    def confirm_settlement(self, ticker: str) -> None:
        pass

    def subscribe_markets(self, tickers: list[str]) -> None:
        pass

    def unsubscribe_markets(self, tickers: list[str]) -> None:
        pass

    def enrich(self, market: str | None = None, event: str | None = None) -> None:
        pass

    def rediscover(self) -> None:
        pass


class _Sid:
    """One subscription instance on the current connection."""

    __slots__ = ("channel", "epoch", "last_ts", "sid", "tickers")

    def __init__(self, sid: int, channel: str, epoch: int) -> None:
        self.sid = sid
        self.channel = channel
        self.epoch = epoch
        self.last_ts: datetime | None = None
        """Exchange time of the last frame received on this sid."""
        self.tickers: set[str] = set()
        """Markets whose current book came from this sid."""


class _Mk:
    """Router state of one market's book."""

    __slots__ = ("epoch", "gap", "mb", "seq", "sid", "ticker", "ts")

    def __init__(self, ticker: str) -> None:
        self.ticker = ticker
        self.mb: MarketBook | None = None
        self.sid: int | None = None
        self.epoch = 0
        self.seq: int | None = None
        """seq of the last snapshot/delta applied."""
        self.ts: datetime | None = None
        """Exchange time of the last event applied (None while the snapshot is unstamped)."""
        self.gap: tuple[datetime, str, int | None] | None = None
        """Open gap: (from_ts, reason, sid)."""


class _Unstamped:
    __slots__ = ("gap", "mk", "quote", "row")

    def __init__(
        self,
        mk: _Mk,
        row: list[Any],
        quote: Quote | None,
        gap: tuple[datetime, str, int | None] | None,
    ) -> None:
        self.mk = mk
        self.row = row
        self.quote = quote
        self.gap = gap


class Router:
    """Frames in, rows and effects out. Single-threaded; never awaits."""

    def __init__(
        self,
        *,
        effects: Effects | None = None,
        metrics: Metrics | None = None,
        catalog: Catalog | None = None,
        checkpoint_deltas: int = 500,
        checkpoint_seconds: float = 300.0,
        epochs: EpochClock | None = None,
        monotonic: Callable[[], float] | None = None,
        lag_sample_every: int = 8,
    ) -> None:
        import time

        self.effects: Effects = effects or NullEffects()
        self.metrics = metrics or Metrics()
        self.catalog = catalog or Catalog()
        self.books = BookSet()
        self._apply_delta = self.books.apply_delta_to
        self.checkpoint_deltas = max(1, checkpoint_deltas)
        self.checkpoint_seconds = checkpoint_seconds
        self.epochs = epochs or EpochClock()
        self._mono = monotonic or time.monotonic
        self._out: defaultdict[str, list[Row]] = defaultdict(list)
        """Rows to store, by table (taken by :meth:`take`)."""
        self._out_deltas: list[Row] = []
        self._out_quotes: list[Row] = []
        self._out_stats: list[Row] = []
        self._bind_out()
        self._mk: dict[str, _Mk] = {}
        self._sids: dict[int, _Sid] = {}
        self.sid_channels: Mapping[int, str] = {}
        """sid -> channel on the current connection (the session's acknowledged subscriptions);
        used for gaps/errors on sids that have not delivered a frame yet."""
        self.xclock: datetime | None = None
        """Exchange clock: the latest exchange time received."""
        self._unstamped: list[_Unstamped] = []
        self._last_quote_rec: datetime | None = None
        self._trade_last_ts: datetime | None = None
        self._trade_outage: datetime | None = None
        self.stopping = False
        self._lag_every = max(1, lag_sample_every)
        self._lag_tick = 0
        # counters (also exported as metrics by the service)
        self.dropped_deltas = 0
        self.unknown_frames = 0
        self.control_errors = 0
        self._dispatch: dict[type, Callable[[Any], None]] = {
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

    # ---------------------------------------------------------------------------------------
    # entry points
    # ---------------------------------------------------------------------------------------

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

    def take(self) -> list[tuple[str, list[Row]]]:
        """Take the rows produced so far: ``(table, rows in order)`` for each table with rows."""
        out = self._out
        taken = [(table, rows) for table, rows in out.items() if rows]
        for table, _ in taken:
            out[table] = []
        self._bind_out()
        return taken

    def drain(self) -> list[tuple[str, Row]]:
        """:meth:`take`, flattened to ``(table, row)`` pairs (in order within each table)."""
        return [(table, row) for table, rows in self.take() for row in rows]

    def _emit(self, table: str, row: Row) -> None:
        self._out[table].append(row)

    def _bind_out(self) -> None:
        # The per-frame tables' current lists, appended to without a look-up.
        out = self._out
        self._out_deltas = out["orderbook_deltas"]
        self._out_quotes = out["quotes"]
        self._out_stats = out["market_stats"]

    # ---------------------------------------------------------------------------------------
    # clock
    # ---------------------------------------------------------------------------------------

    def _advance(self, ts: datetime) -> datetime:
        """A timestamped frame arrived: move the exchange clock, stamp pending snapshots."""
        xc = self.xclock
        if xc is None or ts > xc:
            self.xclock = xc = ts
        if self._unstamped:
            self._stamp(xc)
        return ts

    def _stamp(self, ts: datetime) -> None:
        pending = self._unstamped
        self._unstamped = []
        for u in pending:
            mk = u.mk
            row = u.row
            row[0] = ts
            self._emit("orderbook_snapshots", SnapshotRow(*row))
            if u.gap is not None:
                self._gap_row(mk.ticker, u.gap, ts, row[2])
            if u.quote is not None:
                self._quote_row(mk.ticker, ts, row[2], u.quote)
            if mk.ts is None:
                mk.ts = ts

    def flush_unstamped(self, now: datetime) -> None:
        """Stamp pending snapshots with the exchange clock (shutdown, or a quiet feed)."""
        if self._unstamped:
            self._stamp(self.xclock or now)

    @property
    def has_unstamped(self) -> bool:
        return bool(self._unstamped)

    def _now_ts(self, received_at: datetime | None) -> datetime:
        xc = self.xclock
        if xc is not None:
            return xc
        if received_at is not None:
            return received_at
        raise ValueError("no exchange time known yet")  # pragma: no cover - frames carry times

    # ---------------------------------------------------------------------------------------
    # rows
    # ---------------------------------------------------------------------------------------

    def _quote_row(self, ticker: str, ts: datetime, rec: datetime, q: Quote) -> None:
        # received_at strictly increases over quote rows so (ts, received_at) orders them even
        # when many changes share one exchange millisecond.
        last = self._last_quote_rec
        if last is not None and rec <= last:
            rec = last + _ONE_US
        self._last_quote_rec = rec
        self._out_quotes.append(
            _new(QuoteRow, (ts, ticker, rec, q.yes_bid, q.yes_bid_size, q.yes_ask, q.yes_ask_size))
        )

    def _gap_row(
        self, ticker: str, gap: tuple[datetime, str, int | None], to_ts: datetime, now: datetime
    ) -> None:
        from_ts, reason, sid = gap
        if to_ts < from_ts:
            to_ts = from_ts
        self._emit("book_gaps", BookGapRow(from_ts, to_ts, ticker, reason, sid, now))
        self.metrics.gaps.inc(1.0, reason)

    def _checkpoint_row(self, mk: _Mk, now: datetime) -> bool:
        mb = mk.mb
        if mb is None or not mb.ready or mk.ts is None or mk.sid is None:
            return False
        yes, no = mb.book.to_json_levels()
        self._emit(
            "orderbook_snapshots",
            SnapshotRow(mk.ts, mk.ticker, now, "checkpoint", mk.epoch, mk.sid, mk.seq, yes, no),
        )
        self.books.mark_checkpoint(mk.ticker, self._mono())
        self.metrics.checkpoints.inc()
        return True

    # ---------------------------------------------------------------------------------------
    # gaps
    # ---------------------------------------------------------------------------------------

    def _open_gap(self, mk: _Mk, from_ts: datetime | None, reason: str, sid: int | None) -> None:
        if mk.gap is None:
            start = from_ts or mk.ts or self.xclock
            if start is None:
                return  # nothing was ever known about this book: no gap to speak of
            mk.gap = (start, reason, sid)
        if mk.mb is not None:
            mk.mb.dirty = True

    def open_restart_gaps(self, tickers: Iterable[str], from_ts: datetime) -> None:
        """Daemon restart: books of ``tickers`` are unknown since ``from_ts`` (the last data
        stored by the previous run) until their next snapshot."""
        for t in tickers:
            mk = self._mk.get(t)
            if mk is None:
                mk = self._mk[t] = _Mk(t)
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

    def _sid_state(self, sid: int, channel: str) -> _Sid:
        s = self._sids.get(sid)
        if s is None:
            s = self._sids[sid] = _Sid(sid, channel, self.epochs.next())
        return s

    def _channel_of(self, sid: int) -> str | None:
        s = self._sids.get(sid)
        if s is not None:
            return s.channel
        return self.sid_channels.get(sid)

    def _book_gap_on_sid(
        self, sid: int, reason: str, now: datetime, since: datetime | None = None
    ) -> list[str]:
        """Open gaps on every book of ``sid``, from ``since`` (default: the sid's last frame)."""
        s = self._sids.get(sid)
        if s is None:
            return []
        start = since if since is not None else s.last_ts
        tickers = sorted(s.tickers)
        for t in tickers:
            mk = self._mk.get(t)
            if mk is not None and mk.sid == sid:
                self._open_gap(mk, start, reason, sid)
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
            tickers = self._book_gap_on_sid(g.sid, "seq_gap", now)
            if tickers:
                self.effects.request_snapshot(g.sid, tickers)
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

    # ---------------------------------------------------------------------------------------
    # order books
    # ---------------------------------------------------------------------------------------

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
        self._lag_tick += 1
        if self._lag_tick >= self._lag_every:
            self._lag_tick = 0
            self.metrics.lag.observe((rec - ts).total_seconds(), "orderbook_delta")
        ticker = f.market_ticker
        mk = self._mk.get(ticker)
        if mk is None or mk.sid != sid:
            self.dropped_deltas += 1
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
            _new(DeltaRow, (ts, ticker, rec, f.side, f.price, f.delta, s.epoch, sid, seq))
        )
        if quote is not None:
            self._quote_row(ticker, ts, rec, quote)
        if mb.deltas_since_checkpoint >= self.checkpoint_deltas:
            self._checkpoint_row(mk, rec)

    def _on_snapshot(self, f: OrderbookSnapshot) -> None:
        rec = f.received_at
        assert rec is not None
        sid = f.sid
        assert sid is not None
        s = self._sids.get(sid)
        if s is None:
            s = self._sid_state(sid, ORDERBOOK)
        ticker = f.market_ticker
        mk = self._mk.get(ticker)
        if mk is None:
            mk = self._mk[ticker] = _Mk(ticker)
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
            self._unstamped.append(_Unstamped(mk, row, quote, gap))

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

    # ---------------------------------------------------------------------------------------
    # trades, tickers
    # ---------------------------------------------------------------------------------------

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
                bool(f.is_block_trade),
                "ws",
                rec,
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
            _new(
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

    # ---------------------------------------------------------------------------------------
    # lifecycle
    # ---------------------------------------------------------------------------------------

    def _on_lifecycle(self, f: MarketLifecycle) -> None:
        rec = f.received_at
        assert rec is not None
        ts = self._now_ts(rec)
        ticker = f.market_ticker
        et = f.event_type
        cat = self.catalog
        info = cat.market(ticker)
        meta = f.additional_metadata
        event_ticker = meta.event_ticker if meta is not None else None
        if info is None:
            info = cat.note_market(ticker, event_ticker, None, None)
        elif event_ticker:
            info.event_ticker = event_ticker
        self._emit(
            "lifecycle_events",
            LifecycleRow(
                ts,
                ticker,
                info.event_ticker,
                rec,
                "market",
                et,
                f.result or None,
                f.settlement_value,
                f.open_ts,
                f.close_ts,
                f.determination_ts,
                f.settled_ts,
                f.sid,
                f.seq,
                _encode(f.raw),
            ),
        )
        if f.multivariate:
            return
        status = lifecycle_status(et, f.is_deactivated, info.status)
        if status is not None:
            info.status = status
        if et == "determined":
            if f.result:
                info.result = f.result
            if f.settlement_value is not None:
                info.settlement_value = f.settlement_value
        self._market_row(f, info, status)
        if et in ("created", "activated"):
            self.effects.subscribe_markets([ticker])
            if et == "created" or info.event_ticker is None:
                self.effects.enrich(market=ticker, event=info.event_ticker)
        elif et == "determined":
            self._settlement_row(ticker, info, f, rec)
            self.effects.confirm_settlement(ticker)
        elif et == "settled":
            self._settlement_row(ticker, info, f, rec)
            self.effects.confirm_settlement(ticker)
            self.effects.unsubscribe_markets([ticker])

    def _market_row(self, f: MarketLifecycle, info: Any, status: str | None) -> None:
        """Keep ``markets`` current from lifecycle (nulls never erase stored values)."""
        if info.event_ticker is None:
            self.effects.enrich(market=f.market_ticker)
            return
        if status is None and f.close_ts is None and f.event_type != "metadata_updated":
            return
        current = status or info.status
        if current is None:
            self.effects.enrich(market=f.market_ticker, event=info.event_ticker)
            return
        meta = f.additional_metadata
        ranges = price_ranges_json(f.price_ranges)
        custom = (
            f.custom_strike
            if f.custom_strike is not None
            else (meta.custom_strike if meta is not None else None)
        )
        self._emit(
            "markets",
            MarketRow(
                f.market_ticker,
                info.event_ticker,
                info.series_ticker,
                None,
                meta.title if meta is not None else None,
                f.yes_sub_title or (meta.yes_sub_title if meta is not None else None),
                f.no_sub_title or (meta.no_sub_title if meta is not None else None),
                current,
                None,
                f.open_ts,
                f.close_ts,
                meta.expected_expiration_ts if meta is not None else None,
                None,
                f.strike_type or (meta.strike_type if meta is not None else None),
                f.floor_strike
                if f.floor_strike is not None
                else (meta.floor_strike if meta is not None else None),
                f.cap_strike
                if f.cap_strike is not None
                else (meta.cap_strike if meta is not None else None),
                None,
                None if custom is None else _encode(custom),
                f.price_level_structure,
                ranges,
                f.result or None,
                f.settlement_value,
                _EMPTY_JSON,
            ),
        )

    def _settlement_row(self, ticker: str, info: Any, f: MarketLifecycle, rec: datetime) -> None:
        result = f.result or info.result
        if result not in SETTLEMENT_RESULTS:
            return  # the REST confirmation will write it
        value = f.settlement_value if f.settlement_value is not None else info.settlement_value
        self._emit(
            "settlements",
            SettlementRow(
                ticker,
                info.event_ticker,
                info.series_ticker,
                result,
                value,
                f.determination_ts,
                f.settled_ts,
                "ws",
                False,
                _encode(f.raw),
            ),
        )

    def _event_row(self, f: EventLifecycle | EventFeeUpdate, kind: str, event_type: str) -> None:
        """A lifecycle_events row for an event-level frame (no market, no typed market fields)."""
        rec = f.received_at
        assert rec is not None
        row = LifecycleRow(
            self._now_ts(rec), None, f.event_ticker, rec, kind, event_type,
            None, None, None, None, None, None, f.sid, f.seq, _encode(f.raw),
        )  # fmt: skip
        self._emit("lifecycle_events", row)

    def _on_event_lifecycle(self, f: EventLifecycle) -> None:
        self._event_row(f, "event", "event_lifecycle")
        self._emit(
            "events",
            EventRow(
                f.event_ticker,
                f.series_ticker or None,
                f.title,
                f.subtitle,
                None,
                None,
                f.collateral_return_type,
                f.strike_date,
                f.strike_period or None,
                _encode(f.raw),
            ),
        )
        self.catalog.events.setdefault(f.event_ticker, f.series_ticker or None)
        self.effects.enrich(event=f.event_ticker)

    def _on_fee(self, f: EventFeeUpdate) -> None:
        self._event_row(f, "event_fee", "event_fee_update")

    # ---------------------------------------------------------------------------------------
    # control
    # ---------------------------------------------------------------------------------------

    def _on_control(self, f: Subscribed | Ok | Unsubscribed) -> None:
        log.debug("unsolicited control frame type=%s sid=%s id=%s", f.kind, f.sid, f.id)

    def _on_unknown(self, f: UnknownFrame) -> None:
        self.unknown_frames += 1
        log.debug("unknown frame type=%s", f.type)
