"""The router's state and the row helpers every handler shares (see :mod:`.router`).

:class:`RouterCore` holds the books (:class:`~kalshibook.domain.book.BookSet`), the per-market
(:class:`MarketState`) and per-subscription (:class:`SidState`) state, the exchange clock, the
snapshots waiting for a time (:class:`Unstamped`) and the rows produced, by table. The frame
handlers are methods of its subclasses (:mod:`.router_books`, :mod:`.router_gaps`,
:mod:`.router_lifecycle`, :mod:`.router`): one object, so a handler reads the state as plain
attributes, as before the split (no extra indirection per frame).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from kalshibook.collector.catalog import Catalog
from kalshibook.collector.effects import Effects, NullEffects
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.subscriptions import EpochClock
from kalshibook.domain.book import BookSet, MarketBook, Quote
from kalshibook.domain.exchange_order import LiveRanker
from kalshibook.storage.tables import BookGapRow, QuoteRow, SnapshotRow

__all__ = ("LIFECYCLE", "MarketState", "RouterCore", "Row", "SidState", "Unstamped")

new_row: Final = tuple.__new__
"""``new_row(RowType, (values...))`` builds a row NamedTuple without the Python-level
``__new__`` call of its constructor: half the cost, on the per-frame rows (deltas, quotes,
ticker stats)."""
encode_json: Final = msgspec.json.encode

Row = tuple[Any, ...]
"""One row of a table, as the writer takes it (the table's row NamedTuple)."""

LIFECYCLE: Final = "market_lifecycle_v2"
_ONE_US: Final = timedelta(microseconds=1)


class SidState:
    """One subscription instance on the current connection."""

    __slots__ = ("channel", "epoch", "last_seq", "last_ts", "sid", "tickers")

    def __init__(self, sid: int, channel: str, epoch: int) -> None:
        self.sid = sid
        self.channel = channel
        self.epoch = epoch
        self.last_ts: datetime | None = None
        """Exchange time of the last frame received on this sid."""
        self.last_seq: int | None = None
        """seq of the last orderbook frame received on this sid (a lower one: a new
        subscription given the same sid number)."""
        self.tickers: set[str] = set()
        """Markets whose current book came from this sid."""


class MarketState:
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


class Unstamped:
    __slots__ = ("gap", "mk", "quote", "row")

    def __init__(
        self,
        mk: MarketState,
        row: list[Any],
        quote: Quote | None,
        gap: tuple[datetime, str, int | None] | None,
    ) -> None:
        self.mk = mk
        self.row = row
        self.quote = quote
        self.gap = gap


class RouterCore:
    """State and shared row helpers of the :class:`~kalshibook.collector.router.Router`."""

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
        self._mk: dict[str, MarketState] = {}
        self._sids: dict[int, SidState] = {}
        self._asked_first: set[tuple[int, str]] = set()
        """``(sid, ticker)`` of deltas that came with no book anywhere, whose snapshot was asked
        for (once; bounded by ``FIRST_SNAPSHOT_ASKS``)."""
        self.sid_channels: Mapping[int, str] = {}
        """sid -> channel on the current connection (the session's acknowledged subscriptions);
        used for gaps/errors on sids that have not delivered a frame yet."""
        self.xclock: datetime | None = None
        """Exchange clock: the latest exchange time received."""
        self._unstamped: list[Unstamped] = []
        self._last_quote_rec: datetime | None = None
        self._trade_last_ts: datetime | None = None
        self._trade_ranks = LiveRanker()
        self._trade_outage: datetime | None = None
        self.stopping = False
        self._lag_every = max(1, lag_sample_every)
        self._lag_tick = 0
        # counters (also exported as metrics by the service)
        self.dropped_deltas = 0
        self.unknown_frames = 0
        self.control_errors = 0
        self._dispatch: dict[type, Callable[[Any], None]] = self._handlers()
        """Handler of each item type (built once: one dict look-up per item)."""

    def _handlers(self) -> dict[type, Callable[[Any], None]]:
        raise NotImplementedError

    # -- rows out ---------------------------------------------------------------------------

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

    # -- clock ------------------------------------------------------------------------------

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

    # -- rows -------------------------------------------------------------------------------

    def _quote_row(self, ticker: str, ts: datetime, rec: datetime, q: Quote) -> None:
        # received_at strictly increases over quote rows so (ts, received_at) orders them even
        # when many changes share one exchange millisecond.
        last = self._last_quote_rec
        if last is not None and rec <= last:
            rec = last + _ONE_US
        self._last_quote_rec = rec
        self._out_quotes.append(
            new_row(
                QuoteRow, (ts, ticker, rec, q.yes_bid, q.yes_bid_size, q.yes_ask, q.yes_ask_size)
            )
        )

    def _gap_row(
        self, ticker: str, gap: tuple[datetime, str, int | None], to_ts: datetime, now: datetime
    ) -> None:
        from_ts, reason, sid = gap
        if to_ts < from_ts:
            to_ts = from_ts
        self._emit("book_gaps", BookGapRow(from_ts, to_ts, ticker, reason, sid, now))
        self.metrics.gaps.inc(1.0, reason)

    def _checkpoint_row(self, mk: MarketState, now: datetime) -> bool:
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

    # -- shared state -----------------------------------------------------------------------

    def _open_gap(
        self,
        mk: MarketState,
        from_ts: datetime | None,
        reason: str,
        sid: int | None,
        fallback: datetime | None = None,
    ) -> None:
        """The book is untrustworthy from ``from_ts`` (else its last event's time, the exchange
        clock, ``fallback``) until its next snapshot; its deltas are not applied meanwhile."""
        if mk.mb is not None:
            mk.mb.dirty = True
        if mk.gap is None:
            start = from_ts or mk.ts or self.xclock or fallback
            if start is not None:  # else nothing was ever known of this book: no gap row
                mk.gap = (start, reason, sid)

    def _sid_state(self, sid: int, channel: str) -> SidState:
        s = self._sids.get(sid)
        if s is None:
            s = self._sids[sid] = SidState(sid, channel, self.epochs.next())
        return s

    def _channel_of(self, sid: int) -> str | None:
        s = self._sids.get(sid)
        if s is not None:
            return s.channel
        return self.sid_channels.get(sid)
