"""Kalshi-compatible shapes (pure): candle labels against Kalshi's recorded daily candles, the
inclusive end rule, omitted keys, credits per ticker and the KALSHI-ACCESS-KEY header."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec

from kalshibook.api.credentials import authorization_of, request_cost
from kalshibook.api.kalshi_compat.shapes import candle_out, label_of, read_range, returned
from kalshibook.domain.candles import Candle, Interval, iter_periods, period_end, period_floor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi"
D = Decimal


def candle(start: datetime, interval: Interval, **values: object) -> Candle:
    end = period_end(start, interval)
    base: dict[str, object] = {
        "start": start, "end": end, "open": None, "high": None, "low": None, "close": None,
        "volume": D(0), "vwap": None, "trade_count": 0, "taker_yes_volume": D(0),
        "taker_no_volume": D(0), "previous": None, "yes_bid_open": None, "yes_bid_high": None,
        "yes_bid_low": None, "yes_bid_close": None, "yes_ask_open": None, "yes_ask_high": None,
        "yes_ask_low": None, "yes_ask_close": None, "open_interest": None,
    }  # fmt: skip
    base.update(values)
    return Candle(**base)  # type: ignore[arg-type]


def test_daily_labels_follow_kalshis_recorded_candles() -> None:
    body = json.loads(
        (
            FIXTURES / "rest_get_market_candlesticks_daily_KXELONMARS-99_prod_2026-01-12.json"
        ).read_text("utf-8")
    )
    labels = [c["end_period_ts"] for c in body["response"]["candlesticks"]]
    first = datetime.fromtimestamp(labels[0], UTC) - timedelta(hours=24)
    last = datetime.fromtimestamp(labels[-1], UTC)
    ours = [
        int(label_of(candle(s, "1d"), "1d").timestamp()) for s in iter_periods(first, last, "1d")
    ]
    assert set(labels) <= set(ours)  # Kalshi's series has gaps (no data); never another label
    assert len(set(labels)) > 80
    # the 25-hour New York day of 2025-11-02: local midnight + 24 h, one hour before it ends
    day = period_floor(datetime(2025, 11, 2, 12, tzinfo=UTC), "1d")
    c = candle(day, "1d")
    assert c.end - c.start == timedelta(hours=25)
    assert int(label_of(c, "1d").timestamp()) == 1762142400 in labels


def test_a_candle_is_returned_when_its_end_is_in_the_inclusive_range() -> None:
    t = datetime(2026, 1, 15, 12, tzinfo=UTC)
    now = t + timedelta(days=1)
    c = candle(t, "1h")  # labelled 13:00
    for lo, hi, want in (
        (t + timedelta(hours=1), t + timedelta(hours=1), True),  # both ends inclusive
        (t, t + timedelta(hours=1) - timedelta(seconds=1), False),
        (t + timedelta(hours=1, seconds=1), now, False),
    ):
        assert returned(c, "1h", lo, hi, now) is want
        t0, t1 = read_range(lo, hi, "1h")
        assert (period_floor(t0, "1h") <= c.start < t1) or not want
    assert not returned(c, "1h", t, now, t + timedelta(minutes=30))  # period in progress


def test_candles_send_null_keys_without_a_value_and_round_the_mean_to_4_places() -> None:
    t = datetime(2026, 1, 15, 12, tzinfo=UTC)
    quiet = msgspec.to_builtins(candle_out(candle(t, "1m", previous=D("0.06")), "1m"))
    no_quote = dict.fromkeys(("open_dollars", "low_dollars", "high_dollars", "close_dollars"))
    assert quiet == {
        "end_period_ts": int(t.timestamp()) + 60,
        "yes_bid": no_quote,
        "yes_ask": no_quote,
        "price": {
            **no_quote,
            "mean_dollars": None,
            "previous_dollars": "0.0600",
            "min_dollars": None,
            "max_dollars": None,
        },
        "volume_fp": "0.00",
        "open_interest_fp": None,
    }
    traded = candle_out(
        candle(t, "1m", open=D("0.07"), high=D("0.07"), low=D("0.06"), close=D("0.06"),
               volume=D(4), vwap=D("0.062512"), open_interest=D("13673")),
        "1m",
    )  # fmt: skip
    assert traded.price.mean_dollars == "0.0625"
    assert traded.open_interest_fp == "13673.00"


def test_kalshi_access_key_and_cost_per_ticker() -> None:
    def scope(headers: dict[bytes, bytes], query: bytes = b"") -> dict[str, object]:
        return {"headers": list(headers.items()), "query_string": query}

    assert authorization_of(scope({b"kalshi-access-key": b"kb-a-b"})) == "Bearer kb-a-b"
    both = {b"authorization": b"Bearer kb-x-y", b"kalshi-access-key": b"kb-a-b"}
    assert authorization_of(scope(both)) == "Bearer kb-x-y"
    assert authorization_of(scope({})) is None
    # (charged up front, of which the part given back should the batch fail)
    opt = {"cost": 5, "cost_per": "tickers"}
    assert request_cost(opt, scope({}, b"tickers=A,B&tickers=C&tickers=A")) == (15, 10)  # type: ignore[arg-type]
    assert request_cost(opt, scope({})) == (5, 0)  # type: ignore[arg-type]
    assert request_cost({"cost": 2}, scope({}, b"tickers=A,B")) == (2, 0)  # type: ignore[arg-type]
