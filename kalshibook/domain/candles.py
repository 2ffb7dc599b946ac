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

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo

import msgspec

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
    "count_periods",
    "iter_periods",
    "period_ceil",
    "period_end",
    "period_floor",
    "vwap",
)

Interval = Literal["1m", "1h", "1d"]
INTERVALS: Final[tuple[Interval, ...]] = get_args(Interval)
NEW_YORK: Final = ZoneInfo("America/New_York")
VWAP_DP: Final = 6
_FIXED: Final[dict[str, timedelta]] = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1)}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO: Final = Decimal(0)


# --- periods ------------------------------------------------------------------------------------


def _ny_midnight(day: date) -> datetime:
    # New York changes clocks at 02:00, so local midnight always exists and is unambiguous.
    return datetime.combine(day, time(0), tzinfo=NEW_YORK).astimezone(UTC)


def period_floor(ts: datetime, interval: Interval) -> datetime:
    """Start of the period containing ``ts`` (aware UTC datetime)."""
    if ts.tzinfo is None:
        raise ValueError("period_floor needs an aware datetime")
    if interval == "1d":
        return _ny_midnight(ts.astimezone(NEW_YORK).date())
    width = _FIXED[interval]
    return _EPOCH + ((ts - _EPOCH) // width) * width


def period_end(start: datetime, interval: Interval) -> datetime:
    """End of the period starting at ``start`` (exclusive; the next period's start)."""
    if interval == "1d":
        return _ny_midnight(start.astimezone(NEW_YORK).date() + timedelta(days=1))
    return start + _FIXED[interval]


def period_ceil(ts: datetime, interval: Interval) -> datetime:
    """The smallest period boundary at or after ``ts``."""
    floor = period_floor(ts, interval)
    return floor if floor == ts else period_end(floor, interval)


def iter_periods(start: datetime, end: datetime, interval: Interval) -> Iterator[datetime]:
    """Starts of the periods whose start lies in ``[period_floor(start), end)``."""
    current = period_floor(start, interval)
    while current < end:
        yield current
        current = period_end(current, interval)


def count_periods(start: datetime, end: datetime, interval: Interval) -> int:
    """``len(list(iter_periods(start, end, interval)))`` without iterating."""
    first = period_floor(start, interval)
    if end <= first:
        return 0
    if interval == "1d":
        last = period_floor(end - timedelta(microseconds=1), interval)
        return (last.astimezone(NEW_YORK).date() - first.astimezone(NEW_YORK).date()).days + 1
    width = _FIXED[interval]
    return -(-(end - first) // width)


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


# --- assembly -----------------------------------------------------------------------------------


def vwap(notional: Decimal, volume: Decimal) -> Decimal | None:
    """notional / volume, rounded half-even to 6 dp exactly (no intermediate rounding)."""
    if volume == 0:
        return None
    scaled = Fraction(notional) / Fraction(volume) * 10**VWAP_DP
    return Decimal(round(scaled)).scaleb(-VWAP_DP)


def _max(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _min(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


_Row = TypeVar("_Row", TradeBucket, QuoteBucket, StatsBucket)


def _by_bucket(rows: Iterable[_Row]) -> dict[datetime, _Row]:
    out: dict[datetime, _Row] = {}
    for row in rows:
        if row.bucket in out:
            raise ValueError(f"two rows for bucket {row.bucket.isoformat()}")
        out[row.bucket] = row
    return out


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
    """
    first = period_floor(start, interval)
    by_trade = _by_bucket(trades)
    by_quote = _by_bucket(quotes)
    by_stats = _by_bucket(stats)
    buckets = set(by_trade) | set(by_quote) | set(by_stats)
    for bucket in buckets:
        if not first <= bucket < end or period_floor(bucket, interval) != bucket:
            raise ValueError(f"row bucket {bucket.isoformat()} is not a {interval} period in range")
    if fill:
        stop = end if until is None else min(end, until)
        buckets.update(iter_periods(first, stop, interval))

    last_price = carried.last_price
    bid, ask, oi = carried.yes_bid, carried.yes_ask, carried.open_interest
    out: list[Candle] = []
    for bucket in sorted(buckets):
        trade = by_trade.get(bucket)
        quote = by_quote.get(bucket)
        stat = by_stats.get(bucket)

        bid_open, ask_open = bid, ask
        if quote is not None:
            bid_high = _max(bid_open, quote.yes_bid_high)
            bid_low = _min(bid_open, quote.yes_bid_low)
            ask_high = _max(ask_open, quote.yes_ask_high)
            ask_low = _min(ask_open, quote.yes_ask_low)
            bid, ask = quote.yes_bid_close, quote.yes_ask_close
        else:
            bid_high = bid_low = bid_open
            ask_high = ask_low = ask_open

        if stat is not None and stat.open_interest is not None:
            oi = stat.open_interest

        previous = last_price
        if trade is not None:
            last_price = trade.close

        out.append(
            Candle(
                start=bucket,
                end=period_end(bucket, interval),
                open=trade.open if trade else None,
                high=trade.high if trade else None,
                low=trade.low if trade else None,
                close=trade.close if trade else None,
                volume=trade.volume if trade else _ZERO,
                vwap=vwap(trade.notional, trade.volume) if trade else None,
                trade_count=trade.trade_count if trade else 0,
                taker_yes_volume=trade.taker_yes_volume if trade else _ZERO,
                taker_no_volume=trade.taker_no_volume if trade else _ZERO,
                previous=previous,
                yes_bid_open=bid_open,
                yes_bid_high=bid_high,
                yes_bid_low=bid_low,
                yes_bid_close=bid,
                yes_ask_open=ask_open,
                yes_ask_high=ask_high,
                yes_ask_low=ask_low,
                yes_ask_close=ask,
                open_interest=oi,
            )
        )
    return out
