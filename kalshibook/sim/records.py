"""What the simulated exchange publishes and remembers: record kinds, :class:`Emit`, trade and
quote records, the model's configuration and the bounded :class:`TradeLog` behind REST trades."""

from __future__ import annotations

import bisect
from typing import Any, Final, NamedTuple

import msgspec

__all__ = (
    "CLOSED",
    "DELTA",
    "EVENT_LIFECYCLE",
    "LIFECYCLE",
    "TICKER",
    "TRADE",
    "Emit",
    "ModelConfig",
    "QuoteRec",
    "TradeLog",
    "TradeRec",
)

# Kinds of emitted records. All but CLOSED are Kalshi frame types.
DELTA: Final = "orderbook_delta"
TRADE: Final = "trade"
TICKER: Final = "ticker"
LIFECYCLE: Final = "market_lifecycle_v2"
EVENT_LIFECYCLE: Final = "event_lifecycle"
CLOSED: Final = "closed"
"""Internal record (no frame: Kalshi has no "closed" lifecycle event) marking trading close."""


class Emit(NamedTuple):
    """One thing the exchange published at ``ts_ms``."""

    kind: str
    ticker: str
    """Market ticker (the event ticker for ``event_lifecycle``)."""
    ts_ms: int
    msg: dict[str, Any]
    """The frame's ``msg`` object, exactly as Kalshi sends it."""
    cid: int = 0
    """Exchange-wide book change id (deltas only; strictly increasing)."""


class TradeRec(NamedTuple):
    n: int
    """Exchange-wide trade number (strictly increasing)."""
    ts_ms: int
    trade_id: str
    ticker: str
    yes_price: int
    size: int
    """Contracts traded, hundredths."""
    taker_outcome_side: str
    is_block_trade: bool
    open_interest: int
    """The market's open interest after the trade (hundredths)."""
    us: int = 0
    """Microseconds inside ``ts_ms`` (REST ``created_time``), increasing with ``n`` inside a
    millisecond: a sweep's fills have distinct times, as on Kalshi."""


class QuoteRec(NamedTuple):
    ts_ms: int
    yes_bid: int
    """0 when there is no YES bid."""
    yes_ask: int
    """``UNIT`` when there is no NO bid."""


class ModelConfig(msgspec.Struct, frozen=True, kw_only=True):
    seed: int = 1
    markets: int = 50
    """Open markets at start (plus a few unopened and already settled ones)."""
    lifetime_s: float = 600.0
    """Trading life of a market (open -> close) on the compressed clock."""
    new_markets_per_min: float | None = None
    """New markets created per minute; ``None`` = steady state (markets / lifetime)."""
    start_ms: int = 1_780_000_000_000
    """Exchange time of the initial state (Unix ms)."""
    trade_prob: float = 0.12
    cancel_prob: float = 0.40
    block_trade_prob: float = 0.002
    sweep_prob: float = 0.15
    """Share of trades whose taker sweeps 2-4 levels: one trade per level, all in one
    millisecond (Kalshi prints a sweep's fills in one ``ts_ms``)."""
    illiquid_prob: float = 0.03
    """Share of markets whose book stays empty."""
    close_update_prob: float = 0.1
    """Share of events whose close date moves once (``close_date_updated``)."""
    max_levels: int = 30
    trade_history: int = 500_000
    """Trades kept for REST ``/markets/trades`` (oldest dropped first)."""
    quote_history: int = 20_000
    """Top-of-book changes kept per market for candlesticks."""


class TradeLog:
    """Recent trades, exchange-wide and per market, ordered by trade number (and time)."""

    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self._all: list[TradeRec] = []
        self._head = 0
        self._by: dict[str, list[TradeRec]] = {}
        self._heads: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._all) - self._head

    def records(self) -> list[TradeRec]:
        """The kept trades, oldest first (exchange order)."""
        return self._all[self._head :]

    def append(self, rec: TradeRec) -> None:
        self._all.append(rec)
        lst = self._by.get(rec.ticker)
        if lst is None:
            lst = self._by[rec.ticker] = []
            self._heads[rec.ticker] = 0
        lst.append(rec)
        if len(self._all) - self._head > self.cap:
            old = self._all[self._head]
            self._head += 1
            self._heads[old.ticker] += 1
            if self._head > 4096 and self._head * 2 > len(self._all):
                del self._all[: self._head]
                self._head = 0
            h = self._heads[old.ticker]
            olds = self._by[old.ticker]
            if h == len(olds):
                del self._by[old.ticker]
                del self._heads[old.ticker]
            elif h > 256 and h * 2 > len(olds):
                del olds[:h]
                self._heads[old.ticker] = 0

    def all(self, ticker: str | None = None) -> list[TradeRec]:
        """Oldest first."""
        if ticker is None:
            return self._all[self._head :]
        lst = self._by.get(ticker)
        return [] if lst is None else lst[self._heads[ticker] :]

    def page(
        self,
        ticker: str | None,
        min_ts_ms: int | None,
        max_ts_ms: int | None,
        before_n: int | None,
        limit: int,
    ) -> tuple[list[TradeRec], int | None]:
        """Newest first: up to ``limit`` trades with ``n < before_n`` inside the time window,
        and the ``n`` to continue from (``None`` at the end)."""
        if ticker is None:
            lst, lo = self._all, self._head
        else:
            found = self._by.get(ticker)
            if found is None:
                return [], None
            lst, lo = found, self._heads[ticker]
        hi = len(lst)
        if before_n is not None:
            hi = bisect.bisect_left(lst, before_n, lo, hi, key=_trade_n)
        if max_ts_ms is not None:
            hi = bisect.bisect_right(lst, max_ts_ms, lo, hi, key=_trade_ts)
        if min_ts_ms is not None:
            lo = bisect.bisect_left(lst, min_ts_ms, lo, hi, key=_trade_ts)
        start = max(lo, hi - limit)
        out = lst[start:hi]
        out.reverse()
        return out, (out[-1].n if start > lo and out else None)


def _trade_n(r: TradeRec) -> int:
    return r.n


def _trade_ts(r: TradeRec) -> int:
    return r.ts_ms
