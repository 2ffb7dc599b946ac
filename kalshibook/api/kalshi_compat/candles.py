"""Kalshi's candlesticks (3 credits per market; a failed batch pays 3): single, batch, event and
historical, read by :func:`kalshibook.storage.candles.read_candles`, the read of
``/v1/markets/{ticker}/candles``.

Kalshi's rules, not ``/v1``'s (:mod:`.shapes`): a candle is returned when its ``end_period_ts``
lies in ``[start_ts, end_ts]`` (both inclusive) and its period has ended. Periods in which
nothing at all was recorded (no trade, quote or open-interest report) are omitted, as with
``/v1``'s ``fill=false``. At most ``max_candles`` (10,000) candles per request, all markets
together; an event request beyond that is cut and says where in ``adjusted_end_ts``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import get
from litestar.params import Parameter
from psycopg import AsyncConnection

from kalshibook.api.deps import Conn, SettingsDep
from kalshibook.api.kalshi_compat import schemas as k
from kalshibook.api.kalshi_compat.common import (
    EventPath,
    SeriesPath,
    TickerPath,
    kalshi_route,
    parse_flag,
    parse_tickers,
    unix_time,
)
from kalshibook.api.kalshi_compat.shapes import (
    LABEL_WIDTH,
    candle_out,
    carried_candle,
    hist_candle_out,
    label_of,
    parse_period,
    read_range,
    returned,
)
from kalshibook.domain.candles import Candle, Interval, count_periods, iter_periods
from kalshibook.errors import BadRequest, NotFound, UnknownMarket
from kalshibook.storage import reads
from kalshibook.storage.candles import read_candles

__all__ = ("HANDLERS",)

Ts = Annotated[int | None, Parameter(description="required; Unix seconds, inclusive")]
Period = Annotated[int | None, Parameter(description="required; minutes: 1, 60 or 1440")]
Latest = Annotated[
    str | None, Parameter(description="true: prepend the period before the range (no trades)")
]


class Window:
    """One candle request's checked range."""

    __slots__ = ("end", "interval", "now", "start")

    def __init__(self, start_ts: int | None, end_ts: int | None, period: int | None) -> None:
        start = unix_time(start_ts, "start_ts")
        end = unix_time(end_ts, "end_ts")
        if start is None:
            raise BadRequest("start_ts is required (Unix seconds)", parameter="start_ts")
        if end is None:
            raise BadRequest("end_ts is required (Unix seconds)", parameter="end_ts")
        if end < start:
            raise BadRequest("end_ts must not be before start_ts", parameter="end_ts")
        self.interval: Interval = parse_period(period)
        self.start, self.end = start, end
        self.now = datetime.now(UTC)

    def periods(self) -> int:
        """Periods one market's answer may span (up to now)."""
        t0, t1 = read_range(self.start, min(self.end, self.now), self.interval)
        return count_periods(t0, t1, self.interval)

    def check(self, markets: int, max_candles: int) -> None:
        n = self.periods() * max(1, markets)
        if n > max_candles:
            raise BadRequest(
                f"the request spans {n} candles; at most {max_candles} per request: narrow "
                "[start_ts, end_ts], use a longer period_interval or fewer markets",
                parameter="end_ts",
            )


async def _candles(
    conn: AsyncConnection[Any], ticker: str, w: Window, include_before: bool
) -> list[k.Candle]:
    """Kalshi's candlesticks of one market (404 for an unknown market)."""
    t0, t1 = read_range(w.start, w.end, w.interval)
    try:
        rows = await read_candles(conn, ticker, w.interval, t0, t1, fill=False, until=w.now)
    except UnknownMarket as exc:
        raise NotFound(exc.message, parameter="ticker") from None
    iv = w.interval
    out = [candle_out(c, iv) for c in rows if returned(c, iv, w.start, w.end, w.now)]
    if include_before:
        before = await _period_before(conn, ticker, w)
        if before is not None:
            out.insert(0, carried_candle(before, w.interval))
    return out


async def _period_before(
    conn: AsyncConnection[Any], ticker: TickerPath, w: Window
) -> Candle | None:
    """The last period labelled before ``start_ts``, its state carried in (``fill``)."""
    width = LABEL_WIDTH[w.interval]
    lo, hi = w.start - 2 * width, w.start - width
    rows = await read_candles(conn, ticker, w.interval, lo, hi, fill=True, until=w.now)
    earlier = [c for c in rows if label_of(c, w.interval) < w.start and c.end <= w.now]
    return earlier[-1] if earlier else None


@get(
    "/series/{series_ticker:str}/markets/{ticker:str}/candlesticks",
    summary="Candlesticks of one market (Kalshi GetMarketCandlesticks)",
    **kalshi_route(3, k.MarketCandles),
)
async def market_candlesticks(
    conn: Conn,
    settings: SettingsDep,
    series_ticker: SeriesPath,
    ticker: TickerPath,
    start_ts: Ts = None,
    end_ts: Ts = None,
    period_interval: Period = None,
    include_latest_before_start: Latest = None,
) -> k.MarketCandles:
    w = Window(start_ts, end_ts, period_interval)
    w.check(1, settings.api.max_candles)
    include = parse_flag(include_latest_before_start, "include_latest_before_start")
    row = await reads.get_market(conn, ticker)
    if row is not None and row.series_ticker not in (None, series_ticker):
        raise NotFound(
            f"market {ticker!r} is not in series {series_ticker!r}", parameter="series_ticker"
        )
    return k.MarketCandles(ticker=ticker, candlesticks=await _candles(conn, ticker, w, include))


@get(
    "/markets/candlesticks",
    summary="Candlesticks of up to 100 markets (Kalshi BatchGetMarketCandlesticks)",
    **kalshi_route(3, k.BatchCandles, per="market_tickers"),
)
async def batch_candlesticks(
    conn: Conn,
    settings: SettingsDep,
    market_tickers: Annotated[list[str] | None, Parameter(description="1 to 100")] = None,
    start_ts: Ts = None,
    end_ts: Ts = None,
    period_interval: Period = None,
    include_latest_before_start: Latest = None,
) -> k.BatchCandles:
    tickers = parse_tickers(market_tickers, "market_tickers", 100)
    if not tickers:
        raise BadRequest("market_tickers is required (1 to 100)", parameter="market_tickers")
    w = Window(start_ts, end_ts, period_interval)
    w.check(len(tickers), settings.api.max_candles)
    include = parse_flag(include_latest_before_start, "include_latest_before_start")
    return k.BatchCandles(
        markets=[
            k.TickerCandles(market_ticker=t, candlesticks=await _candles(conn, t, w, include))
            for t in tickers
        ]
    )


@get(
    "/series/{series_ticker:str}/events/{event_ticker:str}/candlesticks",
    summary="Candlesticks of every market of an event (Kalshi GetMarketCandlesticksByEvent)",
    description=(
        "3 credits per request. Markets by ticker. When the event's markets together would "
        "exceed 10,000 candles the range is cut: `adjusted_end_ts` is the last label served "
        "(ask again from just after it); otherwise it is `end_ts`."
    ),
    **kalshi_route(3, k.EventCandles),
)
async def event_candlesticks(
    conn: Conn,
    settings: SettingsDep,
    series_ticker: SeriesPath,
    event_ticker: EventPath,
    start_ts: Ts = None,
    end_ts: Ts = None,
    period_interval: Period = None,
) -> k.EventCandles:
    w = Window(start_ts, end_ts, period_interval)
    event = await reads.get_event(conn, event_ticker)
    if event is None or event.series_ticker not in (None, series_ticker):
        raise NotFound(
            f"unknown event {event_ticker!r} in series {series_ticker!r}",
            parameter="event_ticker",
        )
    markets = await reads.event_markets(conn, event_ticker)
    allowed = max(1, settings.api.max_candles // max(1, len(markets)))
    if w.periods() > allowed:
        t0, t1 = read_range(w.start, w.end, w.interval)
        starts = iter_periods(t0, t1, w.interval)
        last = next(s for i, s in enumerate(starts) if i == allowed - 1)
        w.end = max(w.start, last + LABEL_WIDTH[w.interval])
    candles = [await _candles(conn, m.ticker, w, False) for m in markets]
    return k.EventCandles(
        market_tickers=[m.ticker for m in markets],
        market_candlesticks=candles,
        adjusted_end_ts=int(w.end.timestamp()),
    )


@get(
    "/historical/markets/{ticker:str}/candlesticks",
    summary="Historical candlesticks (Kalshi GetHistoricalMarketCandlesticks)",
    description="The same candles as the live endpoint, with the historical field names.",
    **kalshi_route(3, k.HistCandles),
)
async def historical_candlesticks(
    conn: Conn,
    settings: SettingsDep,
    ticker: TickerPath,
    start_ts: Ts = None,
    end_ts: Ts = None,
    period_interval: Period = None,
) -> k.HistCandles:
    w = Window(start_ts, end_ts, period_interval)
    w.check(1, settings.api.max_candles)
    t0, t1 = read_range(w.start, w.end, w.interval)
    try:
        rows = await read_candles(conn, ticker, w.interval, t0, t1, fill=False, until=w.now)
    except UnknownMarket as exc:
        raise NotFound(exc.message, parameter="ticker") from None
    return k.HistCandles(
        ticker=ticker,
        candlesticks=[
            hist_candle_out(c, w.interval)
            for c in rows
            if returned(c, w.interval, w.start, w.end, w.now)
        ],
    )


HANDLERS: list[Any] = [
    market_candlesticks,
    batch_candlesticks,
    event_candlesticks,
    historical_candlesticks,
]
