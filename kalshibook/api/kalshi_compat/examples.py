"""OpenAPI examples of the Kalshi-compatible routes (values in Kalshi's recorded shapes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from kalshibook.api.docs import EXAMPLE_EVENT, EXAMPLE_MARKET, EXAMPLE_SERIES
from kalshibook.api.kalshi_compat import schemas as k

__all__ = ("ERROR_EXAMPLE", "EXAMPLES")

_T0 = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SERIES = k.Series(
    ticker=EXAMPLE_SERIES,
    title="Highest temperature in NYC",
    category="Climate and Weather",
    frequency="daily",
    tags=["Weather"],
    fee_type="quadratic",
    fee_multiplier=1,
    last_updated_ts=_T0,
)
_MARKET = k.Market(
    ticker=EXAMPLE_MARKET,
    event_ticker=EXAMPLE_EVENT,
    status="active",
    result="",
    series_ticker=EXAMPLE_SERIES,
    market_type="binary",
    title="Will the high temp in NYC be 45-46° on Jan 15, 2026?",
    open_time=_T0,
    close_time=_T0,
    strike_type="between",
    floor_strike=45,
    cap_strike=46,
    price_level_structure="linear_cent",
    price_ranges=[{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
)
_EVENT = k.Event(
    event_ticker=EXAMPLE_EVENT,
    series_ticker=EXAMPLE_SERIES,
    title="Highest temperature in NYC on Jan 15, 2026?",
    sub_title="On Jan 15, 2026",
    mutually_exclusive=True,
    last_updated_ts=_T0,
)
_TRADE = k.Trade(
    trade_id="0720e561-a081-b12a-c5de-65629e4f3b27",
    ticker=EXAMPLE_MARKET,
    count_fp="43.00",
    yes_price_dollars="0.0800",
    no_price_dollars="0.9200",
    taker_outcome_side="yes",
    taker_book_side="bid",
    taker_side="yes",
    created_time=_T0,
    is_block_trade=False,
)
_BOOK = k.Orderbook(
    yes_dollars=[("0.4100", "5.50"), ("0.4200", "13.00")], no_dollars=[("0.5600", "5.00")]
)
_CANDLE = k.Candle(
    end_period_ts=1768194000,
    yes_bid=k.OHLC(
        open_dollars="0.0600", low_dollars="0.0600", high_dollars="0.0600", close_dollars="0.0600"
    ),
    yes_ask=k.OHLC(
        open_dollars="0.0700", low_dollars="0.0700", high_dollars="0.0700", close_dollars="0.0700"
    ),
    price=k.Price(
        open_dollars="0.0700",
        low_dollars="0.0600",
        high_dollars="0.0700",
        close_dollars="0.0600",
        mean_dollars="0.0625",
        previous_dollars="0.0600",
    ),
    volume_fp="4.00",
    open_interest_fp="13673.00",
)
_HIST = k.HistCandle(
    end_period_ts=1768194000,
    yes_bid=k.HistOHLC(open="0.0600", low="0.0600", high="0.0600", close="0.0600"),
    yes_ask=k.HistOHLC(open="0.0700", low="0.0700", high="0.0700", close="0.0700"),
    price=k.HistPrice(previous="0.0600"),
    volume="0.00",
    open_interest="13673.00",
)

EXAMPLES: Final[dict[type[Any], Any]] = {
    k.SeriesList: k.SeriesList(series=[_SERIES], cursor=""),
    k.SeriesOne: k.SeriesOne(series=_SERIES),
    k.Events: k.Events(events=[_EVENT], cursor=""),
    k.EventOne: k.EventOne(event=_EVENT, markets=[_MARKET]),
    k.Markets: k.Markets(markets=[_MARKET], cursor=""),
    k.MarketOne: k.MarketOne(market=_MARKET),
    k.Trades: k.Trades(trades=[_TRADE], cursor=""),
    k.OrderbookOne: k.OrderbookOne(orderbook_fp=_BOOK),
    k.Orderbooks: k.Orderbooks(
        orderbooks=[k.TickerBook(ticker=EXAMPLE_MARKET, orderbook_fp=_BOOK)]
    ),
    k.MarketCandles: k.MarketCandles(ticker=EXAMPLE_MARKET, candlesticks=[_CANDLE]),
    k.BatchCandles: k.BatchCandles(
        markets=[k.TickerCandles(market_ticker=EXAMPLE_MARKET, candlesticks=[_CANDLE])]
    ),
    k.EventCandles: k.EventCandles(
        market_tickers=[EXAMPLE_MARKET], market_candlesticks=[[_CANDLE]], adjusted_end_ts=1768194000
    ),
    k.HistCandles: k.HistCandles(ticker=EXAMPLE_MARKET, candlesticks=[_HIST]),
    k.Cutoff: k.Cutoff(
        market_settled_ts=_EPOCH,
        trades_created_ts=_EPOCH,
        orders_updated_ts=_EPOCH,
        market_positions_last_updated_ts=_EPOCH,
    ),
}
ERROR_EXAMPLE: Final = k.ErrorResponse(
    error=k.Error(code="not_found", message="unknown market ticker 'X'"),
    request_id="4f6c1b0e2d3a4c5b8e9f0a1b2c3d4e5f",
)
