"""OpenAPI examples of the seed routes (the tickers of the API tests' seed data)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from kalshibook.api.docs import EXAMPLE_EVENT, EXAMPLE_MARKET, EXAMPLE_SERIES, EXAMPLE_SETTLED
from kalshibook.api.seed import schemas as s

__all__ = ("ERROR_EXAMPLE", "EXAMPLES")

_T0 = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)
_ONE: Final[dict[str, Any]] = {
    "request_id": "4f6c1b0e2d3a4c5b8e9f0a1b2c3d4e5f",
    "response_time": 2.4,
}
_PAGE: Final[dict[str, Any]] = {**_ONE, "next_cursor": None, "has_more": False}
_SUMMARY = s.MarketSummary(
    ticker=EXAMPLE_MARKET,
    title="Will the high temp in NYC be 45-46° on Jan 15, 2026?",
    event_ticker=EXAMPLE_EVENT,
    status="active",
    category="Climate and Weather",
    first_data_at=None,
    last_data_at=None,
)
_EVENT = s.EventSummary(
    event_ticker=EXAMPLE_EVENT,
    series_ticker=EXAMPLE_SERIES,
    title="Highest temperature in NYC on Jan 15, 2026?",
    sub_title="On Jan 15, 2026",
    category="Climate and Weather",
    mutually_exclusive=True,
    status="open",
    market_count=2,
)
_SETTLEMENT = s.SettlementRecord(
    market_ticker=EXAMPLE_SETTLED,
    event_ticker=EXAMPLE_EVENT,
    result="yes",
    settlement_value=100,
    determined_at=datetime(2026, 1, 16, 14, 0, tzinfo=UTC),
    settled_at=datetime(2026, 1, 16, 15, 0, tzinfo=UTC),
)

EXAMPLES: Final[dict[type[Any], Any]] = {
    s.OrderbookResponse: s.OrderbookResponse(
        market_ticker=EXAMPLE_MARKET,
        timestamp=_T0,
        snapshot_basis=datetime(2026, 1, 15, 14, 55, tzinfo=UTC),
        deltas_applied=12,
        yes=[s.Level(price=42, quantity=150), s.Level(price=41.5, quantity=12.5)],
        no=[s.Level(price=56, quantity=80)],
        complete=True,
        **_ONE,
    ),
    s.DeltasResponse: s.DeltasResponse(
        data=[
            s.DeltaRecord(
                market_ticker=EXAMPLE_MARKET,
                ts=_T0,
                seq=1841,
                price_cents=42,
                delta_amount=-25,
                side="yes",
            )
        ],
        **_PAGE,
    ),
    s.TradesResponse: s.TradesResponse(
        data=[
            s.TradeRecord(
                trade_id="0b8a3c52-52b4-4c4e-9a52-6f2d1b8e4a10",
                market_ticker=EXAMPLE_MARKET,
                yes_price=42,
                no_price=58,
                count=10,
                taker_side="yes",
                ts=_T0,
            )
        ],
        **_PAGE,
    ),
    s.CandlesResponse: s.CandlesResponse(
        data=[
            s.Candle(
                bucket=_T0,
                market_ticker=EXAMPLE_MARKET,
                open=42,
                high=45,
                low=41,
                close=44,
                volume=120,
                trade_count=9,
            )
        ],
        **_ONE,
    ),
    s.MarketsResponse: s.MarketsResponse(data=[_SUMMARY], **_PAGE),
    s.MarketDetailResponse: s.MarketDetailResponse(
        data=s.MarketDetail(
            ticker=_SUMMARY.ticker,
            title=_SUMMARY.title,
            event_ticker=_SUMMARY.event_ticker,
            status=_SUMMARY.status,
            category=_SUMMARY.category,
            first_data_at=datetime(2026, 1, 14, 15, 0, tzinfo=UTC),
            last_data_at=_T0,
            rules=None,
            strike_price=45,
            discovered_at=datetime(2026, 1, 14, 14, 58, tzinfo=UTC),
            metadata={"series_ticker": EXAMPLE_SERIES, "strike_type": "between"},
            snapshot_count=96,
            delta_count=18_233,
        ),
        **_ONE,
    ),
    s.EventsResponse: s.EventsResponse(data=[_EVENT], **_PAGE),
    s.EventDetailResponse: s.EventDetailResponse(
        data=s.EventDetail(
            **{f: getattr(_EVENT, f) for f in s.EventSummary.__struct_fields__},
            markets=[_SUMMARY],
        ),
        **_ONE,
    ),
    s.SettlementsResponse: s.SettlementsResponse(data=[_SETTLEMENT], **_PAGE),
    s.SettlementResponse: s.SettlementResponse(data=_SETTLEMENT, **_ONE),
}

ERROR_EXAMPLE = s.ErrorResponse(
    error=s.ErrorBody(code="market_not_found", message="unknown market ticker 'KXNOPE'"),
    request_id=_ONE["request_id"],
)
