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
from typing import Final

import msgspec

from kalshibook.domain.periods import Interval, iter_periods, period_end, period_floor, period_width

__all__ = (
    "VWAP_DP",
    "BucketRow",
    "CandleRow",
    "CarriedText",
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


class BucketRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One period's aggregate rows (trades, quotes, stats joined on the bucket), numbers as text.

    ``bucket_us`` is the period's start in microseconds since the Unix epoch. ``open`` is None
    when the period has no trade (a trade row always has a price); ``quoted`` says whether the
    period has a quotes row (whose values may all be None: an empty book).
    """

    bucket_us: int
    open: str | None = None
    high: str | None = None
    low: str | None = None
    close: str | None = None
    volume: str | None = None
    notional: str | None = None
    trade_count: int | None = None
    taker_yes_volume: str | None = None
    taker_no_volume: str | None = None
    quoted: bool = False
    yes_bid_high: str | None = None
    yes_bid_low: str | None = None
    yes_bid_close: str | None = None
    yes_ask_high: str | None = None
    yes_ask_low: str | None = None
    yes_ask_close: str | None = None
    open_interest: str | None = None


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


def _periods(
    interval: Interval,
    first: datetime,
    end: datetime,
    rows: Sequence[BucketRow],
    fill: bool,
    until: datetime | None,
) -> list[tuple[datetime, datetime, BucketRow | None]]:
    """(start, end, row or None) of every period to return, in order."""
    width = period_width(interval)
    first_us, end_us = to_us(first), to_us(end)
    stop = end if until is None or not fill else min(end, _utc(until))
    if width is None:  # New York days: the range's periods once; rows are checked against them
        grid = list(iter_periods(first, end, interval))
        position = {to_us(t): k for k, t in enumerate(grid)}
        by_us = _by_bucket(rows, interval, lambda b: b in position)
        if fill:
            filled = bisect_left(grid, stop)
            indices = [*range(filled), *sorted(k for b in by_us if (k := position[b]) >= filled)]
        else:
            indices = sorted(position[b] for b in by_us)
        last = len(grid) - 1
        return [
            (
                grid[k],
                grid[k + 1] if k < last else period_end(grid[k], interval),
                by_us.get(to_us(grid[k])),
            )
            for k in indices
        ]
    width_us = width // _US
    by_us = _by_bucket(
        rows, interval, lambda b: first_us <= b < end_us and (b - first_us) % width_us == 0
    )
    if fill:
        count = max(0, -(-(stop - first) // width))
        starts = [first + width * k for k in range(count)]
        get = by_us.get
        slots = [get(k) for k in range(first_us, first_us + count * width_us, width_us)]
        if len(slots) - slots.count(None) < len(by_us):
            # rows of periods after ``until`` (the caller's clock behind the database's):
            # sparse, after the filled periods
            later = sorted(k for k in by_us if k >= first_us + count * width_us)
            starts += [from_us(k) for k in later]
            slots += [by_us[k] for k in later]
    else:
        ordered = sorted(by_us)
        starts = [from_us(k) for k in ordered]
        slots = [by_us[k] for k in ordered]
    return [(t, t + width, r) for t, r in zip(starts, slots, strict=True)]


def _by_bucket(
    rows: Sequence[BucketRow], interval: Interval, is_period: Callable[[int], bool]
) -> dict[int, BucketRow]:
    by_us: dict[int, BucketRow] = {}
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
    rows: Sequence[BucketRow],
    carried: CarriedText,
    fill: bool = False,
    until: datetime | None = None,
) -> list[CandleRow]:
    """Candles for the periods starting in ``[period_floor(start), end)``.

    ``rows``: one per period with any source row (buckets are period starts, any order);
    ``carried``: the state before ``period_floor(start)``. With ``fill`` every period starting
    before ``min(end, until)`` is returned; otherwise only the periods of ``rows``.
    """
    first = _utc(period_floor(start, interval))
    periods = _periods(interval, first, _utc(end), rows, fill, until)
    num = _Numbers()
    last_price = carried.last_price
    bid, ask, oi = carried.yes_bid, carried.yes_ask, carried.open_interest
    out: list[CandleRow] = []
    append = out.append
    for bucket, stop, row in periods:
        if row is None:
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
                    last_price,
                    bid,
                    bid,
                    bid,
                    bid,
                    ask,
                    ask,
                    ask,
                    ask,
                    oi,
                )
            )
            continue
        bid_open, ask_open = bid, ask
        bid_high = bid_low = bid_open
        ask_high = ask_low = ask_open
        previous = last_price
        if row.quoted:
            bid_high = num.max(bid_open, row.yes_bid_high)
            bid_low = num.min(bid_open, row.yes_bid_low)
            ask_high = num.max(ask_open, row.yes_ask_high)
            ask_low = num.min(ask_open, row.yes_ask_low)
            bid, ask = row.yes_bid_close, row.yes_ask_close
        if row.open_interest is not None:
            oi = row.open_interest
        if row.open is None:
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
        last_price = row.close
        volume = row.volume or "0"
        append(
            CandleRow(
                bucket,
                stop,
                row.open,
                row.high,
                row.low,
                row.close,
                volume,
                vwap_units(row.notional or "0", volume),
                row.trade_count or 0,
                row.taker_yes_volume or "0",
                row.taker_no_volume or "0",
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
