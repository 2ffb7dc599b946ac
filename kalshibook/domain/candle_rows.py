"""Candle assembly on numbers as text (pure: no I/O, no clock): the one implementation.

The rules are those of :mod:`kalshibook.domain.candles` (carried quote state, previous trade
price, open interest carried forward, fill, VWAP half-even to 6 dp). Numbers stay the exact text
PostgreSQL prints for a numeric (or ``str(Decimal)``): a request of 1,440 candles would otherwise
spend most of its time building and formatting tens of thousands of Decimal objects. Text is
compared numerically only where a rule needs an order (bid/ask high and low), through Decimals
built once per distinct value, and VWAP is computed with integers, exactly. Buckets are integer
microseconds since the Unix epoch (what the read returns): placing a row in its period is integer
arithmetic, with no datetime per row.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final, TypeVar

import msgspec

from kalshibook.domain.periods import Interval, iter_periods, period_end, period_floor, period_width

__all__ = (
    "VWAP_DP",
    "CandleRow",
    "CarriedText",
    "QuoteBucketText",
    "StatsBucketText",
    "TradeBucketText",
    "assemble_rows",
    "from_us",
    "to_us",
    "vwap_units",
)

VWAP_DP: Final = 6
_SCALE: Final = 10**VWAP_DP
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_POW10: Final[tuple[int, ...]] = tuple(10**k for k in range(64))


def to_us(ts: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (exact)."""
    return (ts - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """Integer microseconds since the Unix epoch as a UTC datetime (exact)."""
    return _EPOCH + timedelta(microseconds=us)


class TradeBucketText(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One period's trades aggregate row, numbers as text; ``bucket_us`` is the period's start in
    microseconds since the Unix epoch."""

    bucket_us: int
    open: str | None
    high: str | None
    low: str | None
    close: str | None
    volume: str | None
    notional: str | None
    trade_count: int | None
    taker_yes_volume: str | None
    taker_no_volume: str | None


class QuoteBucketText(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One period's quotes aggregate row, numbers as text (values may all be None: an empty
    book)."""

    bucket_us: int
    yes_bid_high: str | None
    yes_bid_low: str | None
    yes_bid_close: str | None
    yes_ask_high: str | None
    yes_ask_low: str | None
    yes_ask_close: str | None


class StatsBucketText(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One period's market-stats aggregate row: its last open interest as text, or None."""

    bucket_us: int
    open_interest: str | None


class CarriedText(msgspec.Struct, frozen=True, kw_only=True):
    """The state before the first period, numbers as text."""

    last_price: str | None = None
    yes_bid: str | None = None
    yes_ask: str | None = None
    open_interest: str | None = None


class CandleRow(msgspec.Struct, frozen=True, gc=False):
    """One candle, numbers as text; ``vwap`` in integer micro-dollars (half-even), or None."""

    start: datetime
    end: datetime
    open: str | None
    high: str | None
    low: str | None
    close: str | None
    volume: str
    vwap: int | None
    trade_count: int
    taker_yes_volume: str
    taker_no_volume: str
    previous: str | None
    yes_bid_open: str | None
    yes_bid_high: str | None
    yes_bid_low: str | None
    yes_bid_close: str | None
    yes_ask_open: str | None
    yes_ask_high: str | None
    yes_ask_low: str | None
    yes_ask_close: str | None
    open_interest: str | None


def _vwap_exact(notional: str, volume: str) -> int | None:
    if Decimal(volume) == 0:
        return None
    exact: Fraction = Fraction(Decimal(notional)) / Fraction(Decimal(volume)) * _SCALE
    units: int = round(exact)
    return units


def vwap_units(notional: str, volume: str) -> int | None:
    """notional / volume in micro-dollars, rounded half-even exactly; None when volume is 0."""
    n_whole, _, n_frac = notional.partition(".")
    v_whole, _, v_frac = volume.partition(".")
    n_digits = n_whole + n_frac
    v_digits = v_whole + v_frac
    # plain decimals (PostgreSQL's numeric text): ASCII digits, one optional '-', one '.'
    if not (
        n_digits.isascii()
        and v_digits.isascii()
        and n_digits.removeprefix("-").isdigit()
        and v_digits.removeprefix("-").isdigit()
        and len(n_frac) < len(_POW10)
        and len(v_frac) + VWAP_DP < len(_POW10)
    ):
        return _vwap_exact(notional, volume)  # exponent, NaN, ...: the Fraction way
    v = int(v_digits)
    if v == 0:
        return None
    num = int(n_digits) * _POW10[len(v_frac) + VWAP_DP]
    den = v * _POW10[len(n_frac)]
    if den < 0:
        num, den = -num, -den
    q, r = divmod(num, den)
    twice = 2 * r
    if twice > den or (twice == den and q & 1):
        q += 1
    return q


class _Numbers:
    """Decimals of the texts compared in one assembly, built once per distinct text."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[str, Decimal] = {}

    def _d(self, text: str) -> Decimal:
        d = self._cache.get(text)
        if d is None:
            d = self._cache[text] = Decimal(text)
        return d

    def max(self, a: str | None, b: str | None) -> str | None:
        if a is None:
            return b
        if b is None or a == b:
            return a
        return a if self._d(a) >= self._d(b) else b

    def min(self, a: str | None, b: str | None) -> str | None:
        if a is None:
            return b
        if b is None or a == b:
            return a
        return a if self._d(a) <= self._d(b) else b


def _utc(ts: datetime) -> datetime:
    """``ts`` with the UTC tzinfo object (comparing or hashing datetimes of different zones costs
    a utcoffset() call each time)."""
    return ts if ts.tzinfo is UTC else ts.astimezone(UTC)


_Sources = tuple[dict[int, TradeBucketText], dict[int, QuoteBucketText], dict[int, StatsBucketText]]


def _periods(
    interval: Interval,
    first: datetime,
    end: datetime,
    rows: tuple[Sequence[TradeBucketText], Sequence[QuoteBucketText], Sequence[StatsBucketText]],
    fill: bool,
    until: datetime | None,
) -> tuple[list[tuple[datetime, datetime, int]], _Sources]:
    """(start, end, bucket_us) of every period to return, in order, and each source's rows by
    bucket (checked: one row per bucket, each a period of the range)."""
    width = period_width(interval)
    first_us, end_us = to_us(first), to_us(end)
    stop = end if until is None or not fill else min(end, _utc(until))
    grid: list[datetime] = []
    position: dict[int, int] = {}
    is_period: Callable[[int], bool]
    if width is None:  # New York days: the range's periods once; rows are checked against them
        grid = list(iter_periods(first, end, interval))
        position = {to_us(t): k for k, t in enumerate(grid)}
        is_period = position.__contains__
    else:
        width_us = width // _US

        def is_period(b: int) -> bool:
            return first_us <= b < end_us and (b - first_us) % width_us == 0

    trades, quotes, stats = rows
    sources: _Sources = (
        _by_bucket(trades, interval, is_period),
        _by_bucket(quotes, interval, is_period),
        _by_bucket(stats, interval, is_period),
    )
    buckets = sources[0].keys() | sources[1].keys() | sources[2].keys()
    if width is None:
        if fill:
            filled = bisect_left(grid, stop)
            indices = [*range(filled), *sorted(k for b in buckets if (k := position[b]) >= filled)]
        else:
            indices = sorted(position[b] for b in buckets)
        last = len(grid) - 1
        return [
            (
                grid[k],
                grid[k + 1] if k < last else period_end(grid[k], interval),
                to_us(grid[k]),
            )
            for k in indices
        ], sources
    if fill:
        count = max(0, -(-(stop - first) // width))
        starts = [first + width * k for k in range(count)]
        limit = first_us + count * width_us
        keys = list(range(first_us, limit, width_us))
        # rows of periods after ``until`` (the caller's clock behind the database's): sparse,
        # after the filled periods
        later = sorted(k for k in buckets if k >= limit)
        starts += [from_us(k) for k in later]
        keys += later
    else:
        keys = sorted(buckets)
        starts = [from_us(k) for k in keys]
    return [(t, t + width, k) for t, k in zip(starts, keys, strict=True)], sources


_Row = TypeVar("_Row", TradeBucketText, QuoteBucketText, StatsBucketText)


def _by_bucket(
    rows: Sequence[_Row], interval: Interval, is_period: Callable[[int], bool]
) -> dict[int, _Row]:
    by_us: dict[int, _Row] = {}
    for row in rows:
        b = row.bucket_us
        if b in by_us:
            raise ValueError(f"two rows for bucket {from_us(b).isoformat()}")
        if not is_period(b):
            raise ValueError(
                f"row bucket {from_us(b).isoformat()} is not a {interval} period in range"
            )
        by_us[b] = row
    return by_us


def assemble_rows(
    interval: Interval,
    start: datetime,
    end: datetime,
    *,
    trades: Sequence[TradeBucketText] = (),
    quotes: Sequence[QuoteBucketText] = (),
    stats: Sequence[StatsBucketText] = (),
    carried: CarriedText,
    fill: bool = False,
    until: datetime | None = None,
) -> list[CandleRow]:
    """Candles for the periods starting in ``[period_floor(start), end)``.

    ``trades``/``quotes``/``stats``: the level's aggregate rows of those periods (at most one per
    period and source, any order; buckets are period starts); ``carried``: the state before
    ``period_floor(start)``. With ``fill`` every period starting before ``min(end, until)`` is
    returned; otherwise only the periods with a row of any source.
    """
    first = _utc(period_floor(start, interval))
    periods, (by_trade, by_quote, by_stats) = _periods(
        interval, first, _utc(end), (trades, quotes, stats), fill, until
    )
    trade_of, quote_of, stats_of = by_trade.get, by_quote.get, by_stats.get
    num = _Numbers()
    last_price = carried.last_price
    bid, ask, oi = carried.yes_bid, carried.yes_ask, carried.open_interest
    out: list[CandleRow] = []
    append = out.append
    for bucket, stop, key in periods:
        bid_open, ask_open = bid, ask
        quote = quote_of(key)
        if quote is None:
            bid_high = bid_low = bid_open
            ask_high = ask_low = ask_open
        else:
            bid_high = num.max(bid_open, quote.yes_bid_high)
            bid_low = num.min(bid_open, quote.yes_bid_low)
            ask_high = num.max(ask_open, quote.yes_ask_high)
            ask_low = num.min(ask_open, quote.yes_ask_low)
            bid, ask = quote.yes_bid_close, quote.yes_ask_close
        stat = stats_of(key)
        if stat is not None and stat.open_interest is not None:
            oi = stat.open_interest
        previous = last_price
        trade = trade_of(key)
        if trade is None or trade.open is None:
            append(
                CandleRow(
                    bucket,
                    stop,
                    None,
                    None,
                    None,
                    None,
                    "0",
                    None,
                    0,
                    "0",
                    "0",
                    previous,
                    bid_open,
                    bid_high,
                    bid_low,
                    bid,
                    ask_open,
                    ask_high,
                    ask_low,
                    ask,
                    oi,
                )
            )
            continue
        last_price = trade.close
        volume = trade.volume or "0"
        append(
            CandleRow(
                bucket,
                stop,
                trade.open,
                trade.high,
                trade.low,
                trade.close,
                volume,
                vwap_units(trade.notional or "0", volume),
                trade.trade_count or 0,
                trade.taker_yes_volume or "0",
                trade.taker_no_volume or "0",
                previous,
                bid_open,
                bid_high,
                bid_low,
                bid,
                ask_open,
                ask_high,
                ask_low,
                ask,
                oi,
            )
        )
    return out
