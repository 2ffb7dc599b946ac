"""The candle response rendering (kalshibook.api.routes.candles.candles_out): every field is the
Decimal formatting of the same value, whatever is shared or memoised between candles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from kalshibook.api.kalshi_compat.shapes import label_of
from kalshibook.api.routes.candles import candles_out
from kalshibook.domain.candle_rows import CandleRow
from kalshibook.domain.periods import Interval, period_end, period_floor
from kalshibook.domain.prices import fmt_count, fmt_dollars

T0 = datetime(2026, 3, 1, tzinfo=UTC)
prices = st.one_of(st.none(), st.sampled_from(["0.41", "0.4100", "0.42", "0.005", "1", "0"]))
counts = st.sampled_from(["0", "12.50", "3", "1000.000"])
INTERVALS: tuple[Interval, ...] = ("1m", "1h", "1d")
NULLABLE = [
    "open", "high", "low", "close", "vwap", "previous", "open_interest",
    *(f"yes_{side}_{f}" for side in ("bid", "ask") for f in ("open", "high", "low", "close")),
]  # fmt: skip


@st.composite
def candle_rows(draw: st.DrawFn) -> list[CandleRow]:
    rows = []
    for k in range(draw(st.integers(min_value=1, max_value=6))):
        traded = draw(st.booleans())
        start = T0 + k * timedelta(minutes=1)
        rows.append(
            CandleRow(
                start,
                start + timedelta(minutes=1),
                *(draw(prices) if traded else None for _ in range(4)),
                draw(counts),
                draw(st.one_of(st.none(), st.integers(min_value=0, max_value=10**7))),
                draw(st.integers(min_value=0, max_value=50)),
                draw(counts),
                draw(counts),
                *(draw(prices) for _ in range(9)),
                draw(st.one_of(st.none(), counts)),
            )
        )
    return rows


def dollars(text: str | None) -> str | None:
    return None if text is None else fmt_dollars(Decimal(text))


@given(candle_rows())
def test_every_field_is_the_decimal_formatting(rows: list[CandleRow]) -> None:
    out = msgspec.to_builtins(candles_out(rows, "1m"))
    assert len(out) == len(rows)
    for c, o in zip(rows, out, strict=True):
        vwap = None if c.vwap is None else fmt_dollars(Decimal(c.vwap).scaleb(-6))
        bid = [dollars(x) for x in (c.yes_bid_open, c.yes_bid_low, c.yes_bid_high, c.yes_bid_close)]
        ask = [dollars(x) for x in (c.yes_ask_open, c.yes_ask_low, c.yes_ask_high, c.yes_ask_close)]
        oi = None if c.open_interest is None else fmt_count(Decimal(c.open_interest))
        trade = [dollars(x) for x in (c.open, c.low, c.high, c.close)]
        assert o["start"] == c.start.isoformat().replace("+00:00", "Z")
        assert o["end_period_ts"] == int(c.end.timestamp())
        assert [o["open"], o["low"], o["high"], o["close"]] == trade
        assert (o["vwap"], o["previous"], o["trade_count"]) == (
            vwap,
            dollars(c.previous),
            c.trade_count,
        )
        assert [o["volume"], o["volume_fp"]] == [fmt_count(Decimal(c.volume))] * 2
        assert o["taker_yes_volume"] == fmt_count(Decimal(c.taker_yes_volume))
        assert o["taker_no_volume"] == fmt_count(Decimal(c.taker_no_volume))
        assert [o[f"yes_bid_{f}"] for f in ("open", "low", "high", "close")] == bid
        assert [o[f"yes_ask_{f}"] for f in ("open", "low", "high", "close")] == ask
        assert list(o["yes_bid"].values()) == bid
        assert list(o["yes_ask"].values()) == ask
        assert o["price"] == {
            "open_dollars": trade[0],
            "low_dollars": trade[1],
            "high_dollars": trade[2],
            "close_dollars": trade[3],
            "mean_dollars": vwap,
            "previous_dollars": dollars(c.previous),
            "min_dollars": None,
            "max_dollars": None,
        }
        assert [o["open_interest"], o["open_interest_fp"]] == [oi, oi]


def test_end_period_ts_is_kalshis_label_on_new_york_dst_days() -> None:
    """``end_period_ts`` is /trade-api/v2's label (start + 24 h for a day: the recorded Kalshi
    candle of 2025-11-02), not the true end of a 23- or 25-hour day; ``end`` stays the end."""
    days = [
        (datetime(2026, 3, 8, 12, tzinfo=UTC), 23),  # spring forward
        (datetime(2025, 11, 2, 12, tzinfo=UTC), 25),  # fall back
        (datetime(2026, 1, 15, 12, tzinfo=UTC), 24),
    ]
    for instant, hours in days:
        for width in INTERVALS:
            start = period_floor(instant, width)
            end = period_end(start, width)
            row = msgspec.convert(
                {"start": start, "end": end, "volume": "0", "trade_count": 0,
                 "taker_yes_volume": "0", "taker_no_volume": "0"} | dict.fromkeys(NULLABLE),
                CandleRow,
            )  # fmt: skip
            [out] = msgspec.to_builtins(candles_out([row], width))
            assert out["end"] == end.isoformat().replace("+00:00", "Z")
            assert out["end_period_ts"] == int(label_of(row, width).timestamp())
            if width == "1d":
                assert end - start == timedelta(hours=hours)
                assert out["end_period_ts"] == int((start + timedelta(hours=24)).timestamp())
            else:
                assert out["end_period_ts"] == int(end.timestamp())
