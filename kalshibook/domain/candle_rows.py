"""Candle assembly on numbers as text (pure: no I/O, no clock): the one implementation.

The rules are those of :mod:`kalshibook.domain.candles` (carried quote state, previous trade
price, open interest carried forward, fill, VWAP half-even to 6 dp). Numbers stay the exact text
PostgreSQL prints for a numeric (or ``str(Decimal)``): a request of 1,440 candles would otherwise
spend most of its time building and formatting tens of thousands of Decimal objects. Text is
compared numerically only where a rule needs an order (bid/ask high and low), through Decimals
built once per distinct value, and VWAP is computed with integers, exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final

import msgspec

from kalshibook.domain.periods import Interval, iter_periods, period_end, period_floor, period_width

__all__ = ("VWAP_DP", "BucketRow", "CandleRow", "CarriedText", "assemble_rows", "vwap_units")

VWAP_DP: Final = 6
_SCALE: Final = 10**VWAP_DP
_ZERO: Final = timedelta(0)
_PLAIN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


class BucketRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One period's aggregate rows (trades, quotes, stats joined on the bucket), numbers as text.

    ``open`` is None when the period has no trade (a trade row always has a price); ``quoted``
    says whether the period has a quotes row (whose values may all be None: an empty book).
    """

    bucket: datetime
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


def _int_scale(text: str) -> tuple[int, int]:
    whole, _, frac = text.partition(".")
    return int(whole + frac), len(frac)


def vwap_units(notional: str, volume: str) -> int | None:
    """notional / volume in micro-dollars, rounded half-even exactly; None when volume is 0."""
    if _PLAIN.fullmatch(notional) is None or _PLAIN.fullmatch(volume) is None:
        if Decimal(volume) == 0:
            return None
        exact: Fraction = Fraction(Decimal(notional)) / Fraction(Decimal(volume)) * _SCALE
        return round(exact)
    n, n_dp = _int_scale(notional)
    v, v_dp = _int_scale(volume)
    if v == 0:
        return None
    num: int = n * 10 ** (v_dp + VWAP_DP)
    den: int = v * 10**n_dp
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
    """``ts`` with the UTC tzinfo object: the database's datetimes carry the session's zone
    (``Etc/UTC``, ...), and comparing or hashing datetimes of different zones costs a utcoffset()
    call each time, the bulk of an assembly of 1,440 periods."""
    return ts if ts.tzinfo is UTC else ts.astimezone(UTC)


def _buckets(
    interval: Interval,
    first: datetime,
    end: datetime,
    rows: Sequence[BucketRow],
    fill: bool,
    until: datetime | None,
) -> tuple[list[datetime], dict[datetime, BucketRow]]:
    by_bucket: dict[datetime, BucketRow] = {}
    width = period_width(interval)
    for row in rows:
        b = _utc(row.bucket)
        if b in by_bucket:
            raise ValueError(f"two rows for bucket {b.isoformat()}")
        on_grid = (b - first) % width == _ZERO if width else period_floor(b, interval) == b
        if not (first <= b < end and on_grid):
            raise ValueError(f"row bucket {b.isoformat()} is not a {interval} period in range")
        by_bucket[b] = row
    if not fill:
        return sorted(by_bucket), by_bucket
    stop = end if until is None else min(end, _utc(until))
    if width:
        periods = [first + width * k for k in range(max(0, -(-(stop - first) // width)))]
    else:
        periods = list(iter_periods(first, stop, interval))
    if len(by_bucket) and not by_bucket.keys() <= set(periods):
        return sorted(set(periods) | set(by_bucket)), by_bucket
    return periods, by_bucket


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
    end = _utc(end)
    buckets, by_bucket = _buckets(interval, first, end, rows, fill, until)
    width = period_width(interval)
    num = _Numbers()
    last_price = carried.last_price
    bid, ask, oi = carried.yes_bid, carried.yes_ask, carried.open_interest
    out: list[CandleRow] = []
    append = out.append
    for bucket in buckets:
        row = by_bucket.get(bucket)
        bid_open, ask_open = bid, ask
        bid_high = bid_low = bid_open
        ask_high = ask_low = ask_open
        previous = last_price
        stop = bucket + width if width else period_end(bucket, interval)
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
                    previous,
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
