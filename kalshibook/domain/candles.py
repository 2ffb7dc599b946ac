"""Candle assembly at read time (pure: no I/O, no clock).

The database keeps per-bucket aggregates of trades, quotes and market stats (migration 0002); this
module turns the few hundred rows of one request into candles (ARCHITECTURE.md §3):

- **Periods.** ``1m`` and ``1h`` periods are UTC minutes/hours; ``1d`` periods run from New York
  midnight to the next New York midnight (23 h or 25 h on DST days), as Kalshi's daily candles do.
  A period is labelled by its ``start`` and ``end`` (``end = start + interval``).
- **Range.** A request ``[start, end)`` selects the periods whose *start* lies in
  ``[floor(start), end)``, where ``floor`` aligns down to the period containing ``start``. So
  ``start`` may be any instant, ``end`` is exclusive, and the last period may still be in progress.
- **Trades.** ``open/high/low/close`` are trade prices (``None`` without trades), ``volume`` the
  contracts traded (0 without trades), ``vwap`` = notional / volume rounded half-even to 6 decimal
  places (micro-dollars, the finest Kalshi price grid; the exact value is rarely a finite decimal),
  ``previous`` = the last trade price before the period (Kalshi's ``price.previous``).
- **Quotes.** ``yes_bid``/``yes_ask`` open = the state carried in from before the period (the last
  quote before it); high/low include that open; close = the last quote in the period, or the open
  when the period has no quote. ``None`` means that side of the book was empty (or never quoted);
  high/low ignore ``None``.
- **Open interest** = the last value reported at or before the period end, carried forward.
- **fill=false** (default) omits the periods with no source row at all: no trade, no quote and no
  market-stats row. **fill=true** returns every period of the range (up to ``until``, the caller's
  "now"), with the same carried bid/ask/OI/previous and null prices, volume 0.
- Trades are in exchange order (``exchange_seq``, migration 0005): open/close and the carried-in
  last price are the first/last trade the exchange printed, also inside one millisecond. Quotes
  and market stats of one market with the very same timestamp have no order; their open/close
  may then be any one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final

import msgspec

from kalshibook.domain.candle_rows import (
    VWAP_DP,
    CandleRow,
    CarriedText,
    QuoteBucketText,
    StatsBucketText,
    TradeBucketText,
    assemble_rows,
    to_us,
    vwap_units,
)
from kalshibook.domain.periods import (
    INTERVALS,
    NEW_YORK,
    Interval,
    count_periods,
    iter_periods,
    period_ceil,
    period_end,
    period_floor,
)

__all__ = (
    "INTERVALS",
    "NEW_YORK",
    "VWAP_DP",
    "Candle",
    "CarriedIn",
    "Interval",
    "QuoteBucket",
    "StatsBucket",
    "TradeBucket",
    "assemble",
    "candle_from_row",
    "count_periods",
    "iter_periods",
    "period_ceil",
    "period_end",
    "period_floor",
    "vwap",
)

_ZERO: Final = Decimal(0)


# --- inputs -------------------------------------------------------------------------------------


class TradeBucket(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``market.candles_trades_*``."""

    bucket: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    notional: Decimal
    trade_count: int
    taker_yes_volume: Decimal = _ZERO
    taker_no_volume: Decimal = _ZERO


class QuoteBucket(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``market.candles_quotes_*`` (the quotes inside the bucket)."""

    bucket: datetime
    yes_bid_high: Decimal | None
    yes_bid_low: Decimal | None
    yes_bid_close: Decimal | None
    yes_ask_high: Decimal | None
    yes_ask_low: Decimal | None
    yes_ask_close: Decimal | None


class StatsBucket(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``market.candles_stats_*``; ``open_interest`` is None if no row reported one."""

    bucket: datetime
    open_interest: Decimal | None


class CarriedIn(msgspec.Struct, frozen=True, kw_only=True):
    """The state before the first period: last trade price, last quote, last open interest."""

    last_price: Decimal | None = None
    yes_bid: Decimal | None = None
    yes_ask: Decimal | None = None
    open_interest: Decimal | None = None


# --- output -------------------------------------------------------------------------------------


class Candle(msgspec.Struct, frozen=True, kw_only=True):
    start: datetime
    end: datetime
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    close: Decimal | None
    volume: Decimal
    vwap: Decimal | None
    trade_count: int
    taker_yes_volume: Decimal
    taker_no_volume: Decimal
    previous: Decimal | None
    yes_bid_open: Decimal | None
    yes_bid_high: Decimal | None
    yes_bid_low: Decimal | None
    yes_bid_close: Decimal | None
    yes_ask_open: Decimal | None
    yes_ask_high: Decimal | None
    yes_ask_low: Decimal | None
    yes_ask_close: Decimal | None
    open_interest: Decimal | None


# --- assembly (kalshibook.domain.candle_rows, on the exact text of the same numbers) ----------


def vwap(notional: Decimal, volume: Decimal) -> Decimal | None:
    """notional / volume, rounded half-even to 6 dp exactly (no intermediate rounding)."""
    units = vwap_units(str(notional), str(volume))
    return None if units is None else Decimal(units).scaleb(-VWAP_DP)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def candle_from_row(row: CandleRow) -> Candle:
    """The Decimal form of one assembled candle (every number the same value and exponent)."""
    d = _decimal
    return Candle(
        start=row.start,
        end=row.end,
        open=d(row.open),
        high=d(row.high),
        low=d(row.low),
        close=d(row.close),
        volume=Decimal(row.volume),
        vwap=None if row.vwap is None else Decimal(row.vwap).scaleb(-VWAP_DP),
        trade_count=row.trade_count,
        taker_yes_volume=Decimal(row.taker_yes_volume),
        taker_no_volume=Decimal(row.taker_no_volume),
        previous=d(row.previous),
        yes_bid_open=d(row.yes_bid_open),
        yes_bid_high=d(row.yes_bid_high),
        yes_bid_low=d(row.yes_bid_low),
        yes_bid_close=d(row.yes_bid_close),
        yes_ask_open=d(row.yes_ask_open),
        yes_ask_high=d(row.yes_ask_high),
        yes_ask_low=d(row.yes_ask_low),
        yes_ask_close=d(row.yes_ask_close),
        open_interest=d(row.open_interest),
    )


def _trade_text(row: TradeBucket) -> TradeBucketText:
    t = _text
    return TradeBucketText(
        to_us(row.bucket),
        t(row.open),
        t(row.high),
        t(row.low),
        t(row.close),
        t(row.volume),
        t(row.notional),
        row.trade_count,
        t(row.taker_yes_volume),
        t(row.taker_no_volume),
    )


def _quote_text(row: QuoteBucket) -> QuoteBucketText:
    t = _text
    return QuoteBucketText(
        to_us(row.bucket),
        t(row.yes_bid_high),
        t(row.yes_bid_low),
        t(row.yes_bid_close),
        t(row.yes_ask_high),
        t(row.yes_ask_low),
        t(row.yes_ask_close),
    )


def assemble(
    interval: Interval,
    start: datetime,
    end: datetime,
    *,
    trades: Sequence[TradeBucket],
    quotes: Sequence[QuoteBucket],
    stats: Sequence[StatsBucket],
    carried: CarriedIn,
    fill: bool = False,
    until: datetime | None = None,
) -> list[Candle]:
    """Candles for the periods starting in ``[period_floor(start), end)``.

    ``trades``/``quotes``/``stats`` are the aggregate rows of those periods (any order; buckets are
    period starts), ``carried`` the state before ``period_floor(start)``. With ``fill`` every period
    starting before ``min(end, until)`` is returned; otherwise only periods with a source row.
    (The Decimal face of :func:`kalshibook.domain.candle_rows.assemble_rows`.)
    """
    rows = assemble_rows(
        interval,
        start,
        end,
        trades=[_trade_text(r) for r in trades],
        quotes=[_quote_text(r) for r in quotes],
        stats=[StatsBucketText(to_us(r.bucket), _text(r.open_interest)) for r in stats],
        carried=CarriedText(
            last_price=_text(carried.last_price),
            yes_bid=_text(carried.yes_bid),
            yes_ask=_text(carried.yes_ask),
            open_interest=_text(carried.open_interest),
        ),
        fill=fill,
        until=until,
    )
    return [candle_from_row(r) for r in rows]
