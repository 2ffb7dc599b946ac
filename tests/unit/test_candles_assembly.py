"""Candle assembly (pure): periods, carried state, fill rules, VWAP, with literal inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import islice

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshibook.domain.candle_rows import vwap_units
from kalshibook.domain.candles import (
    CarriedIn,
    QuoteBucket,
    StatsBucket,
    TradeBucket,
    assemble,
    count_periods,
    iter_periods,
    period_ceil,
    period_end,
    period_floor,
    vwap,
)

D = Decimal


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def trade(bucket: datetime, o: str, h: str, lo: str, c: str, vol: str, notional: str, n: int = 1):
    return TradeBucket(
        bucket=bucket,
        open=D(o),
        high=D(h),
        low=D(lo),
        close=D(c),
        volume=D(vol),
        notional=D(notional),
        trade_count=n,
    )


def quote(
    bucket: datetime,
    bid: tuple[str | None, str | None, str | None],
    ask: tuple[str | None, str | None, str | None],
) -> QuoteBucket:
    def d(x: str | None) -> Decimal | None:
        return None if x is None else D(x)

    return QuoteBucket(
        bucket=bucket,
        yes_bid_high=d(bid[0]),
        yes_bid_low=d(bid[1]),
        yes_bid_close=d(bid[2]),
        yes_ask_high=d(ask[0]),
        yes_ask_low=d(ask[1]),
        yes_ask_close=d(ask[2]),
    )


# --- periods ------------------------------------------------------------------------------------


def test_minute_and_hour_periods_are_utc() -> None:
    ts = utc(2026, 3, 8, 6, 59, 59, 999999)
    assert period_floor(ts, "1m") == utc(2026, 3, 8, 6, 59)
    assert period_floor(ts, "1h") == utc(2026, 3, 8, 6)
    assert period_end(utc(2026, 3, 8, 6), "1h") == utc(2026, 3, 8, 7)
    assert period_floor(utc(2026, 3, 8, 7), "1h") == utc(2026, 3, 8, 7)  # boundary is its own start
    assert period_ceil(utc(2026, 3, 8, 7), "1h") == utc(2026, 3, 8, 7)
    assert period_ceil(utc(2026, 3, 8, 7, 0, 1), "1h") == utc(2026, 3, 8, 8)


@pytest.mark.parametrize(
    ("inside", "start", "end", "hours"),
    [
        # winter: New York midnight is 05:00Z
        (utc(2026, 1, 15, 12), utc(2026, 1, 15, 5), utc(2026, 1, 16, 5), 24),
        # 2026-03-08: clocks spring forward at 02:00 EST -> a 23-hour day
        (utc(2026, 3, 8, 12), utc(2026, 3, 8, 5), utc(2026, 3, 9, 4), 23),
        # 2026-11-01: clocks fall back at 02:00 EDT -> a 25-hour day
        (utc(2026, 11, 1, 12), utc(2026, 11, 1, 4), utc(2026, 11, 2, 5), 25),
        # 04:30Z on 2026-01-15 is still 2026-01-14 in New York
        (utc(2026, 1, 15, 4, 30), utc(2026, 1, 14, 5), utc(2026, 1, 15, 5), 24),
    ],
)
def test_daily_periods_are_new_york_days(
    inside: datetime, start: datetime, end: datetime, hours: int
) -> None:
    assert period_floor(inside, "1d") == start
    assert period_end(start, "1d") == end
    assert end - start == timedelta(hours=hours)
    assert period_floor(start, "1d") == start
    assert period_floor(end - timedelta(microseconds=1), "1d") == start


@pytest.mark.parametrize("interval", ["1m", "1h", "1d"])
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (utc(2026, 3, 7, 23, 59, 30), utc(2026, 3, 9, 4)),
        (utc(2026, 10, 31, 3), utc(2026, 11, 2, 5, 0, 0, 1)),
        (utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 1)),
        (utc(2026, 1, 1, 5), utc(2026, 1, 1, 5)),
    ],
)
def test_count_periods_matches_iteration(interval: str, start: datetime, end: datetime) -> None:
    periods = list(iter_periods(start, end, interval))  # type: ignore[arg-type]
    assert count_periods(start, end, interval) == len(periods)  # type: ignore[arg-type]
    assert all(p < end for p in periods)
    if periods:
        assert periods[0] == period_floor(start, interval)  # type: ignore[arg-type]


def test_range_is_aligned_down_and_end_exclusive() -> None:
    got = list(iter_periods(utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 0, 3), "1m"))
    assert got == [utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2)]


# --- VWAP ---------------------------------------------------------------------------------------


def test_vwap_is_exact_and_rounded_half_even_to_6_dp() -> None:
    assert vwap(D("1.00"), D("3")) == D("0.333333")
    assert vwap(D("2.00"), D("3")) == D("0.666667")
    assert vwap(D("0.0000005"), D("1")) == D("0.000000")  # half -> even
    assert vwap(D("0.0000015"), D("1")) == D("0.000002")
    assert vwap(D("0.0000025"), D("1")) == D("0.000002")
    assert vwap(D("12.345"), D("25.00")) == D("0.493800")
    assert vwap(D("0"), D("0")) is None


def _reference_units(notional: Decimal, volume: Decimal) -> int | None:
    if volume == 0:
        return None
    exact = Fraction(notional) / Fraction(volume) * 10**6
    floor = exact.numerator // exact.denominator
    rest = exact - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2):
        return floor + 1
    return floor


decimals = st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**9), max_value=10**9)


@given(decimals, decimals, st.booleans())
def test_vwap_units_is_the_exact_half_even_quotient_of_any_decimal_text(
    notional: Decimal, volume: Decimal, plain: bool
) -> None:
    """Plain text (PostgreSQL's numeric output: the integer path) or str(Decimal) (exponents too:
    the Fraction path), any sign and scale: the exact quotient, rounded half-even."""
    n_text, v_text = (
        (format(notional, "f"), format(volume, "f"))
        if plain
        else (
            str(notional),
            str(volume),
        )
    )
    assert vwap_units(n_text, v_text) == _reference_units(notional, volume)


# --- assembly -----------------------------------------------------------------------------------

T0 = utc(2026, 3, 1, 15, 0)
M = timedelta(minutes=1)


def test_carried_quote_opens_the_period_and_counts_in_high_low() -> None:
    candles = assemble(
        "1m",
        T0,
        T0 + 3 * M,
        trades=[],
        quotes=[quote(T0 + M, ("0.45", "0.41", "0.41"), ("0.50", "0.47", "0.50"))],
        stats=[],
        carried=CarriedIn(yes_bid=D("0.44"), yes_ask=D("0.52")),
        fill=True,
    )
    assert [c.start for c in candles] == [T0, T0 + M, T0 + 2 * M]
    first, second, third = candles
    # no quote change in the first minute: the carried state is open, high, low and close
    assert (first.yes_bid_open, first.yes_bid_high, first.yes_bid_low, first.yes_bid_close) == (
        D("0.44"),
        D("0.44"),
        D("0.44"),
        D("0.44"),
    )
    # the carried open (0.52) is above every ask quoted in the minute: it is the high
    assert (second.yes_ask_open, second.yes_ask_high, second.yes_ask_low, second.yes_ask_close) == (
        D("0.52"),
        D("0.52"),
        D("0.47"),
        D("0.50"),
    )
    assert (second.yes_bid_open, second.yes_bid_high, second.yes_bid_low, second.yes_bid_close) == (
        D("0.44"),
        D("0.45"),
        D("0.41"),
        D("0.41"),
    )
    # the next minute opens at the previous close
    assert (third.yes_bid_open, third.yes_ask_open) == (D("0.41"), D("0.50"))
    assert (third.yes_bid_close, third.yes_ask_close) == (D("0.41"), D("0.50"))


def test_an_empty_book_side_is_null_and_ignored_by_high_low() -> None:
    candles = assemble(
        "1m",
        T0,
        T0 + 2 * M,
        trades=[],
        # the bid side emptied during the minute (last quote has no bid)
        quotes=[quote(T0, ("0.40", "0.40", None), ("0.60", "0.55", "0.55"))],
        stats=[],
        carried=CarriedIn(yes_bid=D("0.38"), yes_ask=None),
        fill=True,
    )
    first, second = candles
    assert (first.yes_bid_open, first.yes_bid_high, first.yes_bid_low, first.yes_bid_close) == (
        D("0.38"),
        D("0.40"),
        D("0.38"),
        None,
    )
    assert (first.yes_ask_open, first.yes_ask_high, first.yes_ask_low, first.yes_ask_close) == (
        None,
        D("0.60"),
        D("0.55"),
        D("0.55"),
    )
    assert (second.yes_bid_open, second.yes_bid_high, second.yes_bid_low) == (None, None, None)


def test_previous_is_the_last_trade_before_the_period() -> None:
    candles = assemble(
        "1m",
        T0,
        T0 + 4 * M,
        trades=[
            trade(T0, "0.30", "0.35", "0.30", "0.34", "10", "3.20", 2),
            trade(T0 + 2 * M, "0.36", "0.36", "0.33", "0.33", "4", "1.35", 3),
        ],
        quotes=[],
        stats=[],
        carried=CarriedIn(last_price=D("0.29")),
        fill=True,
    )
    assert [c.previous for c in candles] == [D("0.29"), D("0.34"), D("0.34"), D("0.33")]
    assert [c.close for c in candles] == [D("0.34"), None, D("0.33"), None]
    assert [c.volume for c in candles] == [D("10"), D("0"), D("4"), D("0")]
    assert [c.trade_count for c in candles] == [2, 0, 3, 0]
    assert [c.vwap for c in candles] == [D("0.320000"), None, D("0.337500"), None]


def test_fill_false_omits_periods_without_any_source_row() -> None:
    kwargs = {
        "trades": [trade(T0, "0.30", "0.30", "0.30", "0.30", "1", "0.30")],
        "quotes": [quote(T0 + 2 * M, ("0.2", "0.2", "0.2"), (None, None, None))],
        "stats": [StatsBucket(bucket=T0 + 4 * M, open_interest=D("7"))],
        "carried": CarriedIn(open_interest=D("5")),
    }
    sparse = assemble("1m", T0, T0 + 6 * M, fill=False, **kwargs)  # type: ignore[arg-type]
    dense = assemble("1m", T0, T0 + 6 * M, fill=True, **kwargs)  # type: ignore[arg-type]
    assert [c.start for c in sparse] == [T0, T0 + 2 * M, T0 + 4 * M]
    assert [c.start for c in dense] == [T0 + i * M for i in range(6)]
    # the omitted periods are exactly the ones fill adds, and the kept ones are identical
    assert [c for c in dense if c.start in {s.start for s in sparse}] == sparse
    assert [c.open_interest for c in dense] == [D(5), D(5), D(5), D(5), D(7), D(7)]
    filled = dense[1]
    assert (filled.open, filled.high, filled.low, filled.close, filled.vwap) == (None,) * 5
    assert (filled.volume, filled.trade_count, filled.previous) == (D(0), 0, D("0.30"))


def test_stats_row_without_open_interest_keeps_the_carried_value() -> None:
    candles = assemble(
        "1h",
        T0,
        T0 + timedelta(hours=2),
        trades=[],
        quotes=[],
        stats=[
            StatsBucket(bucket=T0, open_interest=None),
            StatsBucket(bucket=T0 + timedelta(hours=1), open_interest=D("12.50")),
        ],
        carried=CarriedIn(open_interest=D("3")),
    )
    assert [c.open_interest for c in candles] == [D("3"), D("12.50")]


def test_fill_stops_at_until_and_labels_daily_periods_by_new_york_days() -> None:
    start = utc(2026, 3, 7, 5)  # New York midnight, 2026-03-07
    candles = assemble(
        "1d",
        start,
        utc(2026, 3, 20),
        trades=[],
        quotes=[],
        stats=[],
        carried=CarriedIn(last_price=D("0.5")),
        fill=True,
        until=utc(2026, 3, 9, 12),
    )
    assert [(c.start, c.end) for c in candles] == [
        (utc(2026, 3, 7, 5), utc(2026, 3, 8, 5)),
        (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4)),  # 23 hours
        (utc(2026, 3, 9, 4), utc(2026, 3, 10, 4)),  # in progress at `until`
    ]
    assert all(c.previous == D("0.5") for c in candles)


@pytest.mark.parametrize("interval", ["1m", "1h", "1d"])
def test_fill_keeps_rows_of_periods_after_until(interval: str) -> None:
    """A row of a period that starts after ``until`` (the caller's clock behind the database's)
    is still returned, after the filled periods, without filling the gap before it."""
    first = period_floor(utc(2026, 3, 7, 12), interval)  # type: ignore[arg-type]
    span = first + timedelta(days=40)
    starts = list(islice(iter_periods(first, span, interval), 9))  # type: ignore[arg-type]
    late = starts[5]
    candles = assemble(
        interval,  # type: ignore[arg-type]
        first,
        starts[8],
        trades=[trade(starts[0], *["0.4"] * 4, "1", "0.4"), trade(late, *["0.6"] * 4, "2", "1.2")],
        quotes=[],
        stats=[],
        carried=CarriedIn(),
        fill=True,
        until=starts[2] + timedelta(seconds=1),  # the third period is in progress
    )
    assert [c.start for c in candles] == [starts[0], starts[1], starts[2], late]
    assert [c.close for c in candles] == [D("0.4"), None, None, D("0.6")]
    assert [c.previous for c in candles] == [None, D("0.4"), D("0.4"), D("0.4")]
    assert candles[-1].end == starts[6]


def test_start_inside_a_period_selects_that_period() -> None:
    candles = assemble(
        "1h",
        T0 + 30 * M,
        T0 + 61 * M,
        trades=[trade(T0, "0.1", "0.1", "0.1", "0.1", "1", "0.1")],
        quotes=[],
        stats=[],
        carried=CarriedIn(),
    )
    assert [c.start for c in candles] == [T0]
    assert candles[0].end == T0 + timedelta(hours=1)


def test_rows_outside_the_range_or_off_the_grid_are_rejected() -> None:
    with pytest.raises(ValueError, match="not a 1m period"):
        assemble(
            "1m",
            T0,
            T0 + M,
            trades=[trade(T0 + M, *["0.1"] * 6)],
            quotes=[],
            stats=[],
            carried=CarriedIn(),
        )
    with pytest.raises(ValueError, match="not a 1h period"):
        assemble(
            "1h",
            T0,
            T0 + 2 * M,
            trades=[trade(T0 + M, *["0.1"] * 6)],
            quotes=[],
            stats=[],
            carried=CarriedIn(),
        )
    with pytest.raises(ValueError, match="two rows"):
        assemble(
            "1m",
            T0,
            T0 + M,
            trades=[trade(T0, *["0.1"] * 6)] * 2,
            quotes=[],
            stats=[],
            carried=CarriedIn(),
        )
