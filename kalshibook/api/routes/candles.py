"""Candles (3 credits): ``GET /v1/markets/{ticker}/candles?interval=1m|1h|1d&start=&end=&fill=``.

Every candle carries kalshibook's flat fields and Kalshi's ``MarketCandlestick`` fields
(``end_period_ts``, ``yes_bid{…_dollars}``, ``yes_ask{…}``, ``price{…}``, ``volume_fp``,
``open_interest_fp``), so code written for Kalshi's candlesticks reads ``data`` unchanged:
``end_period_ts`` is Kalshi's label of the period, as on ``/trade-api/v2``
(:func:`kalshibook.api.kalshi_compat.shapes.label_of`: start + 24 h for a New York day, also on
the 23- and 25-hour days), while ``end`` is the period's true end.
Semantics (periods, carried state, fill, VWAP rounding): :mod:`kalshibook.domain.candles`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from litestar import Request, get
from litestar.openapi.spec import Example
from litestar.params import Parameter

from kalshibook.api import docs
from kalshibook.api import schemas as s
from kalshibook.api.deps import Conn, SettingsDep, envelope_meta
from kalshibook.api.docs import TickerPath, priced, responses
from kalshibook.api.kalshi_compat.shapes import LABEL_WIDTH
from kalshibook.api.params import parse_time
from kalshibook.domain.booleans import parse_bool
from kalshibook.domain.candle_rows import CandleRow
from kalshibook.domain.periods import Interval, count_periods, period_end, period_floor
from kalshibook.domain.prices import fmt_count_text, fmt_dollars_text, fmt_micro_dollars
from kalshibook.errors import BadRequest, NotFound, UnknownMarket
from kalshibook.storage.candles import read_candle_rows

__all__ = ("HANDLERS", "candles_handler", "candles_out")

INTERVALS: Final[dict[str, Interval]] = {
    "1m": "1m",
    "1": "1m",
    "1h": "1h",
    "60": "1h",
    "1d": "1d",
    "1440": "1d",
}
"""Our names, and Kalshi's ``period_interval`` minutes as aliases."""

# --- response -----------------------------------------------------------------------------------


_Quote = tuple[str | None, str | None, str | None, str | None]
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND: Final = timedelta(seconds=1)


class _Dollars(dict[str | None, str | None]):
    """``fmt_dollars_text`` of each distinct text, computed on the first look-up (a plain dict
    look-up after that: no Python call per field)."""

    def __missing__(self, text: str | None) -> str | None:
        out = self[text] = None if text is None else fmt_dollars_text(text)
        return out


class _Counts(dict[str, str]):
    """``fmt_count_text`` of each distinct text, as :class:`_Dollars`."""

    def __missing__(self, text: str) -> str:
        out = self[text] = fmt_count_text(text)
        return out


def candles_out(rows: Sequence[CandleRow], interval: Interval) -> list[s.CandleOut]:
    """The candles in the response shape: Kalshi-style strings, exactly fmt_dollars / fmt_count
    of the same values (kalshibook.domain.prices), each distinct text formatted once per request,
    and the bid/ask objects of consecutive candles with the same quotes shared (most periods of a
    filled range repeat the state carried into them); ``end_period_ts`` is Kalshi's label of the
    ``interval`` period (``label_of``: its start + ``LABEL_WIDTH``, the end but on New York DST
    days). This runs per candle: keep it lean."""
    label_width = LABEL_WIDTH[interval] // _SECOND  # once per request
    d = _Dollars()
    n = _Counts()
    no_quote: _Quote = (None, None, None, None)
    bid_key, ask_key = no_quote, no_quote
    bid = ask = s.KalshiQuoteOHLC(None, None, None, None)
    out: list[s.CandleOut] = []
    append = out.append
    micro = fmt_micro_dollars
    for c in rows:
        key: _Quote = (c.yes_bid_open, c.yes_bid_high, c.yes_bid_low, c.yes_bid_close)
        if key != bid_key:
            bid_key = key
            bid = s.KalshiQuoteOHLC(d[key[0]], d[key[2]], d[key[1]], d[key[3]])
        key = (c.yes_ask_open, c.yes_ask_high, c.yes_ask_low, c.yes_ask_close)
        if key != ask_key:
            ask_key = key
            ask = s.KalshiQuoteOHLC(d[key[0]], d[key[2]], d[key[1]], d[key[3]])
        o, h, lo, cl, prev = d[c.open], d[c.high], d[c.low], d[c.close], d[c.previous]
        vwap = None if c.vwap is None else micro(c.vwap)
        volume = n[c.volume]
        oi = None if c.open_interest is None else n[c.open_interest]
        append(
            s.CandleOut(
                c.start,
                c.end,
                o,
                h,
                lo,
                cl,
                volume,
                vwap,
                c.trade_count,
                n[c.taker_yes_volume],
                n[c.taker_no_volume],
                prev,
                bid.open_dollars,
                bid.high_dollars,
                bid.low_dollars,
                bid.close_dollars,
                ask.open_dollars,
                ask.high_dollars,
                ask.low_dollars,
                ask.close_dollars,
                oi,
                (c.start - _EPOCH) // _SECOND + label_width,  # int(label_of(c).timestamp())
                bid,
                ask,
                s.KalshiPrice(o, lo, h, cl, vwap, prev),
                volume,
                oi,
            )
        )
    return out


# --- parameters ---------------------------------------------------------------------------------


def parse_interval(value: str | None) -> Interval:
    if value is None:
        raise BadRequest("interval is required: 1m, 1h or 1d", parameter="interval")
    interval = INTERVALS.get(value.strip().lower())
    if interval is None:
        raise BadRequest(
            f"interval {value!r} is not supported: use 1m, 1h or 1d (or Kalshi's 1, 60, 1440)",
            parameter="interval",
        )
    return interval


def parse_fill(value: str | None) -> bool:
    if value is None:
        return False
    flag = parse_bool(value)
    if flag is None:
        raise BadRequest(f"fill must be true or false, got {value!r}", parameter="fill")
    return flag


def candle_window(
    interval: Interval, start: str | None, end: str | None, now: datetime, max_candles: int
) -> tuple[datetime, datetime]:
    """``(start, end)`` of the request, ``end`` clamped to the end of the current period.

    Periods are selected by their start in ``[floor(start), end)``; ``end`` defaults to now.
    """
    if start is None:
        raise BadRequest(
            "start is required (RFC 3339 or Unix seconds); candles cover [start, end)",
            parameter="start",
        )
    t0 = parse_time(start, "start")
    t1 = parse_time(end, "end") if end is not None else now
    if t1 <= t0:
        if end is None:
            raise BadRequest("start is in the future (end defaults to now)", parameter="start")
        raise BadRequest("end must be after start (ranges are [start, end))", parameter="end")
    t1 = min(t1, period_end(period_floor(now, interval), interval))
    n = count_periods(t0, t1, interval)
    if n > max_candles:
        raise BadRequest(
            f"[start, end) spans {n} {interval} periods; at most {max_candles} candles per "
            "request: narrow the range or use a larger interval",
            parameter="end",
        )
    return t0, t1


# --- handler ------------------------------------------------------------------------------------

# interval and start are required: ``required=True`` says so in the OpenAPI document, while the
# handler still receives None when one is missing (a nullable type with a default: Litestar
# requires at run time only a non-nullable parameter without default) and answers the 400 naming
# it that parse_interval / candle_window give, rather than Litestar's own message.
IntervalParam = Annotated[
    str | None,
    Parameter(
        description="candle width: 1m, 1h or 1d (1d = New York day); Kalshi's 1, 60, 1440 too",
        examples=[Example(value="1h")],
        required=True,
    ),
]
CandleStartParam = Annotated[
    str | None,
    Parameter(
        description="RFC 3339 or Unix seconds; aligned down to the period containing it",
        examples=[Example(value="2026-01-15T00:00:00Z")],
        required=True,
    ),
]
CandleEndParam = Annotated[
    str | None,
    Parameter(
        description="exclusive bound on period starts: RFC 3339 or Unix seconds; default now",
        examples=[Example(value="2026-01-16T00:00:00Z")],
    ),
]
FillParam = Annotated[
    str | None,
    Parameter(
        description="true: every period, also those without any trade/quote/stats row "
        "(null prices, volume 0, bid/ask/OI/previous carried), like Kalshi; default false: "
        "periods without any recorded row are omitted",
        examples=[Example(value="false")],
    ),
]


@get(
    "/v1/markets/{ticker:str}/candles",
    summary="Candles of one market (1m, 1h, 1d)",
    description=(
        "Periods whose start is in `[start, end)` (`start` aligned down to its period). 1m/1h "
        "periods are UTC; 1d periods run New York midnight to midnight (23 or 25 h on DST days). "
        "Prices from trades (`mean` = VWAP), bid/ask OHLC from top-of-book quotes with the state "
        "carried into each period as its open, open interest = last value at or before the "
        "period end. Each candle has kalshibook's flat fields and Kalshi's candlestick fields. "
        "At most `max_candles` (10,000) periods per request; the period in progress is included."
    ),
    tags=["candles"],
    responses=responses(s.CandlePage, docs.CANDLE_PAGE, errors=(400, 401, 402, 404, 429, 503)),
    name="candles",
    **priced(3),
)
async def candles_handler(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    ticker: TickerPath,
    interval: IntervalParam = None,
    start: CandleStartParam = None,
    end: CandleEndParam = None,
    fill: FillParam = None,
) -> s.CandlePage:
    now = datetime.now(UTC)
    if not ticker or len(ticker) > 200:  # control characters: reject_control_characters
        raise BadRequest("ticker is not a market ticker", parameter="ticker")
    width = parse_interval(interval)
    with_fill = parse_fill(fill)
    t0, t1 = candle_window(width, start, end, now, settings.api.max_candles)
    try:
        candles = await read_candle_rows(conn, ticker, width, t0, t1, fill=with_fill, until=now)
    except UnknownMarket as exc:
        raise NotFound(
            f"{exc.message}; check the ticker (GET /v1/markets lists them)", parameter="ticker"
        ) from None
    return s.CandlePage(
        data=candles_out(candles, width),
        next_cursor=None,
        has_more=False,
        ticker=ticker,
        interval=width,
        **envelope_meta(request),
    )


HANDLERS: list[Any] = [candles_handler]
