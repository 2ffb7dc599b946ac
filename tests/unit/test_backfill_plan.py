"""The backfill's pure planning: cutoff routing, candle chunks, candle rows, ETA."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kalshibook.backfill.plan import (
    MAX_CANDLES_PER_REQUEST,
    TradeWindow,
    candle_chunks,
    candle_row,
    candle_span,
    trade_windows,
    trades_complete,
)
from kalshibook.backfill.progress import eta_text
from kalshibook.kalshi.rest_decode import decode_candlesticks

T0 = datetime(2026, 6, 1, tzinfo=UTC)
CUT = datetime(2026, 6, 25, tzinfo=UTC)


def test_windows_split_at_the_cutoff_on_whole_seconds() -> None:
    start = T0 + timedelta(microseconds=700_000)
    end = CUT + timedelta(days=3, milliseconds=999)
    got = trade_windows(start=start, end=end, cutoff=CUT, historical_market=False)
    assert got == [
        TradeWindow(True, T0, CUT),
        TradeWindow(False, CUT, CUT + timedelta(days=3)),
    ]
    # Entirely after / before the cutoff, and a historical market (always historical).
    assert trade_windows(
        start=CUT, end=CUT + timedelta(1), cutoff=CUT, historical_market=False
    ) == [TradeWindow(False, CUT, CUT + timedelta(1))]
    assert trade_windows(start=T0, end=T0 + timedelta(1), cutoff=CUT, historical_market=False) == [
        TradeWindow(True, T0, T0 + timedelta(1))
    ]
    assert trade_windows(start=T0, end=CUT + timedelta(1), cutoff=CUT, historical_market=True) == [
        TradeWindow(True, T0, CUT + timedelta(1))
    ]
    assert trade_windows(start=CUT, end=CUT, cutoff=CUT, historical_market=False) == []


def test_trades_complete_once_closed_before_the_fetch() -> None:
    assert trades_complete("finalized", None, T0)
    assert trades_complete("active", T0 - timedelta(seconds=1), T0)
    assert not trades_complete("active", T0 + timedelta(seconds=1), T0)
    assert not trades_complete("active", None, T0)


def test_candle_chunks_cover_the_span_within_the_cap() -> None:
    end = T0 + timedelta(days=10)
    for period in (1, 60, 1440):
        chunks = list(candle_chunks(T0, end, period))
        assert chunks[0][0] == int(T0.timestamp())
        assert chunks[-1][1] == int(end.timestamp())
        for (_, hi), (lo2, _) in itertools.pairwise(chunks):
            assert lo2 == hi + 1
        assert all((hi - lo) // (60 * period) < MAX_CANDLES_PER_REQUEST for lo, hi in chunks)
    assert len(list(candle_chunks(T0, end, 1))) == 3  # 14,400 minutes / 5,000


def test_candle_span() -> None:
    now = T0 + timedelta(days=30)
    close = T0 + timedelta(days=2)
    assert candle_span(T0, close, None, now) == (T0, close + timedelta(days=1, hours=1))
    assert candle_span(T0, None, T0 + timedelta(days=1), now) == (T0 + timedelta(days=1), now)
    assert candle_span(None, None, None, now) is None
    assert candle_span(T0, close, now, now) is None


def test_candle_rows_from_live_and_historical_names() -> None:
    live = decode_candlesticks(
        b'{"ticker":"X","candlesticks":[{"end_period_ts":1768194000,"open_interest_fp":"12.00",'
        b'"volume_fp":"3.50","price":{"open_dollars":"0.4100","high_dollars":"0.4500",'
        b'"low_dollars":"0.4000","close_dollars":"0.4400","mean_dollars":"0.4200",'
        b'"previous_dollars":"0.3900"},"yes_bid":{"open_dollars":"0.40","high_dollars":"0.44",'
        b'"low_dollars":"0.39","close_dollars":"0.43"}}]}'
    )
    hist = decode_candlesticks(
        b'{"ticker":"X","candlesticks":[{"end_period_ts":1768194000,"open_interest":"12.00",'
        b'"volume":"3.50","price":{"open":"0.4100","high":"0.4500","low":"0.4000",'
        b'"close":"0.4400","mean":"0.4200","previous":"0.3900"},"yes_bid":{"open":"0.40",'
        b'"high":"0.44","low":"0.39","close":"0.43"}}]}'
    )
    a = candle_row("X", 1440, live.candlesticks[0])
    b = candle_row("X", 1440, hist.candlesticks[0])
    assert a == b
    assert a.end_ts == datetime(2026, 1, 12, 5, tzinfo=UTC)
    assert (a.price_open, a.price_high, a.price_low, a.price_close) == (
        Decimal("0.41"),
        Decimal("0.45"),
        Decimal("0.40"),
        Decimal("0.44"),
    )
    assert (a.price_mean, a.price_previous) == (Decimal("0.42"), Decimal("0.39"))
    assert (a.volume, a.open_interest) == (Decimal("3.5"), Decimal("12"))
    assert a.yes_bid_close == Decimal("0.43")
    assert a.yes_ask_open is None


def test_eta() -> None:
    assert eta_text(0, 10, 5.0) == "?"
    assert eta_text(5, 10, 50.0) == "50s"
    assert eta_text(1, 100, 60.0) == "1h39m"
    assert eta_text(10, 10, 1.0) == "0s"
