"""``kalshibook verify``'s comparison logic, on the recorded fixtures' one real overlap and on
made-up periods (issue #19)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from kalshibook.backfill.verify import (
    CandleValues,
    VerifyReport,
    consistency_problems,
    differences,
    period_start,
)
from kalshibook.kalshi.rest_decode import decode_event_candlesticks, decode_trades_page

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi"


def _fixture(name: str) -> bytes:
    return json.dumps(json.loads((FIXTURES / name).read_text())["response"]).encode()


def kalshi_values(c: object) -> CandleValues:
    p = c.price  # type: ignore[attr-defined]
    return CandleValues(
        c.volume_fp,  # type: ignore[attr-defined]
        p.open_dollars,
        p.high_dollars,
        p.low_dollars,
        p.close_dollars,
        p.mean_dollars,
        c.open_interest_fp,  # type: ignore[attr-defined]
    )


def candle_of(trades: list[tuple[Decimal, Decimal]]) -> CandleValues:
    """(price, count) oldest first -> the candle kalshibook computes."""
    volume = sum((n for _, n in trades), Decimal(0))
    notional = sum((p * n for p, n in trades), Decimal(0))
    prices = [p for p, _ in trades]
    return CandleValues(
        volume, prices[0], max(prices), min(prices), prices[-1], notional / volume, None
    )


def test_recorded_trades_are_consistent_with_kalshis_daily_candle() -> None:
    ev = decode_event_candlesticks(_fixture("rest_event_candlesticks_daily_prod_2026-01-15.json"))
    page = decode_trades_page(_fixture("rest_get_markets_trades_prod_2026-01-12.json"))
    ticker = page.trades[0].ticker
    candles = ev.market_candlesticks[list(ev.market_tickers).index(ticker)]
    # The New York day of 2026-01-12 ends at 2026-01-13 05:00Z.
    end = datetime(2026, 1, 13, 5, tzinfo=UTC)
    day = next(c for c in candles if c.end_period_ts == int(end.timestamp()))
    start = period_start(end, 1440)
    assert start == datetime(2026, 1, 12, 5, tzinfo=UTC)
    trades = sorted(
        (t for t in page.trades if t.created_time and start <= t.created_time < end),
        key=lambda t: t.created_time or start,
    )
    assert trades  # the overlap: part of that day's trades were recorded
    part = candle_of([(t.yes_price_dollars, t.count_fp) for t in trades])
    kalshi = kalshi_values(day)
    assert consistency_problems(kalshi, part) == []
    assert part.volume < kalshi.volume  # only part of the day: not an exact match
    assert "volume" in differences(kalshi, part)
    # A trade outside Kalshi's range, or more volume than Kalshi's, is caught.
    bad = part._replace(high=Decimal("0.09"))
    assert consistency_problems(kalshi, bad) == ["high 0.09 outside Kalshi's [0.0600, 0.0600]"]
    assert consistency_problems(kalshi, part._replace(volume=Decimal(8)))


def test_differences_and_report() -> None:
    k = CandleValues(Decimal(10), Decimal("0.41"), Decimal("0.45"), Decimal("0.40"),
                     Decimal("0.44"), Decimal("0.4233"), Decimal(100))  # fmt: skip
    ours = k._replace(mean=Decimal("0.423350"), open_interest=None)
    assert differences(k, ours) == {}  # mean within Kalshi's rounding, no OI recorded
    assert differences(k, ours._replace(mean=Decimal("0.4250"))) == {"mean": Decimal("0.0017")}
    assert differences(k, None)["volume"] == Decimal(10)
    assert differences(k, None)["open"] == Decimal("0.41")
    empty = CandleValues(Decimal(0), None, None, None, None, None, None)
    assert differences(empty, None) == {}
    assert differences(k, k._replace(open_interest=Decimal(99))) == {"open_interest": Decimal(1)}
    r = VerifyReport()
    end = datetime(2026, 1, 13, 5, tzinfo=UTC)
    r.add("A", 1440, end, k, ours)
    r.add("A", 1, end, empty, None)
    r.add("B", 60, end, k, ours._replace(volume=Decimal(7), close=Decimal("0.43")))
    assert (len(r.markets), r.periods, r.exact, r.mismatched_periods) == (2, 3, 2, 1)
    top = r.largest(5)
    assert [m.field for m in top] == ["volume", "close"]
    lines = list(r.summary_lines())
    assert lines[0] == "verify: markets=2 periods=3 exact=2 mismatched=1"
    assert "B 60m" in lines[1]


def test_period_starts() -> None:
    end = datetime(2026, 3, 9, 4, tzinfo=UTC)  # New York midnight after the DST change
    assert period_start(end, 1440) == datetime(2026, 3, 8, 5, tzinfo=UTC)  # a 23-hour day
    assert period_start(end, 60) == datetime(2026, 3, 9, 3, tzinfo=UTC)
    assert period_start(end, 1) == datetime(2026, 3, 9, 3, 59, tzinfo=UTC)
