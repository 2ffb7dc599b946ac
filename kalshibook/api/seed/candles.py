"""``GET /candles/{ticker}`` (3 credits): the trade bars of /v1's candles, prices in cents.

The same periods and values as ``GET /v1/markets/{ticker}/candles`` (``fill=false``), keeping
only periods with at least one trade: the seed's candles are OHLC of trades, and every field of
its candle (open, high, low, close, volume, trade_count) is a trade statistic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final

from litestar import Request, get
from litestar.params import Parameter

from kalshibook.api.deps import Conn, SettingsDep, envelope_meta
from kalshibook.api.docs import TickerPath
from kalshibook.api.routes.candles import candle_window, parse_interval
from kalshibook.api.seed import schemas as s
from kalshibook.api.seed.docs import seed_route
from kalshibook.api.seed.numbers import cents, quantity
from kalshibook.domain.candles import Candle
from kalshibook.errors import BadRequest, NotFound, UnknownMarket
from kalshibook.storage.candles import read_candles

__all__ = ("HANDLERS", "candle_record")

_RENAMED: Final = {"start": "start_time", "end": "end_time"}


def candle_record(ticker: str, c: Candle) -> s.Candle:
    # a period with a trade has all four prices
    assert c.open is not None
    assert c.high is not None
    assert c.low is not None
    assert c.close is not None
    return s.Candle(
        bucket=c.start,
        market_ticker=ticker,
        open=cents(c.open),
        high=cents(c.high),
        low=cents(c.low),
        close=cents(c.close),
        volume=quantity(c.volume),
        trade_count=c.trade_count,
    )


@get(
    "/candles/{ticker:str}",
    summary="Candles of one market (kalshibook SDK: get_candles)",
    description=(
        "`/v1/markets/{ticker}/candles`' periods (1m, 1h, 1d = New York day) with at least one "
        "trade, OHLC in cents; `bucket` = the period's start. At most 10,000 periods per request."
    ),
    **seed_route(3, s.CandlesResponse, errors=(404,)),
)
async def candles(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    ticker: TickerPath,
    start_time: Annotated[str | None, Parameter(description="required: RFC 3339 or Unix s")] = None,
    end_time: Annotated[str | None, Parameter(description="exclusive; default now")] = None,
    interval: Annotated[str, Parameter(description="1m, 1h or 1d")] = "1h",
) -> s.CandlesResponse:
    now = datetime.now(UTC)
    try:
        width = parse_interval(interval)
        t0, t1 = candle_window(width, start_time, end_time, now, settings.api.max_candles)
    except BadRequest as exc:
        name = _RENAMED.get(exc.parameter or "", exc.parameter)
        raise BadRequest(exc.message, parameter=name) from None
    try:
        rows = await read_candles(conn, ticker, width, t0, t1, fill=False, until=now)
    except UnknownMarket as exc:
        raise NotFound(exc.message, parameter="ticker") from None
    data = [candle_record(ticker, c) for c in rows if c.trade_count > 0]
    return s.CandlesResponse(data=data, **envelope_meta(request))


HANDLERS: list[Any] = [candles]
