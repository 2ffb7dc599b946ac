"""The simulator's historical partition and multi-market candlesticks (Kalshi 2026).

Kalshi moves markets settled before ``/historical/cutoff``'s ``market_settled_ts`` and trades
created before its ``trades_created_ts`` out of the live endpoints: they are served only by
``/historical/markets``, ``/historical/markets/{ticker}``, ``/historical/trades`` and
``/historical/markets/{ticker}/candlesticks`` (whose candles use other field names: no
``_dollars`` suffix, ``volume`` and ``open_interest``). The batch ``/markets/candlesticks`` and
event ``/series/{s}/events/{e}/candlesticks`` endpoints serve the same candles as the single
market one, computed from the simulator's trades and quotes.
"""

from __future__ import annotations

from typing import Any, Final

from kalshibook.sim import rest
from kalshibook.sim.entities import Market
from kalshibook.sim.model import Exchange
from kalshibook.sim.wire import rfc3339_s

__all__ = ("is_historical", "route")

MAX_BATCH_TICKERS: Final = 100
MAX_BATCH_CANDLES: Final = 10_000
MAX_EVENT_CANDLES: Final = 5_000


def is_historical(ex: Exchange, m: Market) -> bool:
    """Settled before the cutoff: served only by ``/historical/markets``."""
    settled = m.event.settled_ms
    return bool(settled) and settled < ex.cutoff_ms


def cutoff_ms(ex: Exchange) -> int:
    """The cutoff on whole seconds (Kalshi's timestamps here are RFC 3339 seconds)."""
    return ex.cutoff_ms // 1000 * 1000


def route(ex: Exchange, parts: list[str], q: rest.Query, now_ms: int) -> Any:
    """``/historical/...`` (``parts[0] == "historical"``); raises 404 for anything else."""
    n = len(parts)
    if n == 2 and parts[1] == "cutoff":
        cutoff = rfc3339_s(cutoff_ms(ex))
        return {
            "market_positions_last_updated_ts": cutoff,
            "market_settled_ts": cutoff,
            "orders_updated_ts": cutoff,
            "trades_created_ts": cutoff,
        }
    if n == 2 and parts[1] == "markets":
        return _markets(ex, q)
    if n == 2 and parts[1] == "trades":
        return rest.trades_page(ex, q, None, cutoff_ms(ex) - 1)
    if n >= 3 and parts[1] == "markets":
        m = ex.markets.get(parts[2])
        if m is None or not is_historical(ex, m):
            raise rest.not_found(f"historical market {parts[2]}")
        if n == 3:
            return {"market": rest.market_json(m, ex)}
        if n == 4 and parts[3] == "candlesticks":
            start, end, interval = rest.candle_params(q)
            got = rest.candles(ex, m, start, end, interval, now_ms)
            return {"ticker": m.ticker, "candlesticks": [_historical_candle(c) for c in got]}
    raise rest.not_found("endpoint")


def _markets(ex: Exchange, q: rest.Query) -> dict[str, Any]:
    limit = rest.int_param(q, "limit", 1, 1000) or 100
    after = rest.decode_cursor(q, "h")
    tickers = rest.list_param(q, "tickers")
    event_ticker = rest.one_param(q, "event_ticker")
    series_ticker = rest.one_param(q, "series_ticker")
    mve = rest.one_param(q, "mve_filter")
    if mve not in (None, "", "only", "exclude"):
        raise rest.bad(f"mve_filter must be only or exclude, got {mve!r}")
    out: list[dict[str, Any]] = []
    last = -1
    more = False
    if mve == "only":
        return {"cursor": "", "markets": []}
    wanted = None if tickers is None else set(tickers)
    for m in ex.market_list[after + 1 :] if after is not None else ex.market_list:
        if not is_historical(ex, m):
            continue
        if wanted is not None and m.ticker not in wanted:
            continue
        if event_ticker is not None and m.event.event_ticker != event_ticker:
            continue
        if series_ticker is not None and m.event.series_ticker != series_ticker:
            continue
        if len(out) == limit:
            more = True
            break
        out.append(rest.market_json(m, ex))
        last = m.index
    return {"cursor": rest.encode_cursor("h", last) if more else "", "markets": out}


def _historical_candle(c: dict[str, Any]) -> dict[str, Any]:
    """A live-shaped candle in the historical endpoint's names."""
    out: dict[str, Any] = {
        "end_period_ts": c["end_period_ts"],
        "open_interest": c["open_interest_fp"],
        "volume": c["volume_fp"],
        "price": {
            k.removesuffix("_dollars"): v
            for k, v in c["price"].items()
            if k not in ("min_dollars", "max_dollars")
        },
    }
    for side in ("yes_bid", "yes_ask"):
        if side in c:
            out[side] = {k.removesuffix("_dollars"): v for k, v in c[side].items()}
    return out


def batch_candles(ex: Exchange, q: rest.Query, now_ms: int) -> dict[str, Any]:
    """``GET /markets/candlesticks?market_tickers=a,b&start_ts&end_ts&period_interval``."""
    tickers = rest.list_param(q, "market_tickers") or []
    if not tickers:
        raise rest.bad("market_tickers is required")
    if len(tickers) > MAX_BATCH_TICKERS:
        raise rest.bad(f"at most {MAX_BATCH_TICKERS} market_tickers")
    start, end, interval = rest.candle_params(q)
    out: list[dict[str, Any]] = []
    total = 0
    for t in dict.fromkeys(tickers):
        m = ex.markets.get(t)
        if m is None or is_historical(ex, m):
            continue
        got = rest.candles(ex, m, start, end, interval, now_ms)
        total += len(got)
        if total > MAX_BATCH_CANDLES:
            raise rest.bad(f"more than {MAX_BATCH_CANDLES} candles requested; narrow the range")
        out.append({"market_ticker": t, "candlesticks": got})
    return {"markets": out}


def event_candles(
    ex: Exchange, series: str, event_ticker: str, q: rest.Query, now_ms: int
) -> dict[str, Any]:
    """``GET /series/{s}/events/{e}/candlesticks``: one list per market, truncated at
    :data:`MAX_EVENT_CANDLES` candles with ``adjusted_end_ts`` telling where to page on."""
    ev = ex.events.get(event_ticker)
    if ev is None or (ev.series_ticker and ev.series_ticker != series):
        raise rest.not_found(f"event {event_ticker} in series {series}")
    start, end, interval = rest.candle_params(q)
    markets = [m for m in ev.markets if not is_historical(ex, m)]
    lists = [rest.candles(ex, m, start, end, interval, now_ms) for m in markets]
    adjusted: int | None = None
    total = sum(len(c) for c in lists)
    if total > MAX_EVENT_CANDLES and markets:
        per_market = max(1, MAX_EVENT_CANDLES // len(markets))
        ends = sorted({c["end_period_ts"] for lst in lists for c in lst})
        adjusted = ends[min(len(ends), per_market) - 1] if ends else end
        lists = [[c for c in lst if c["end_period_ts"] <= adjusted] for lst in lists]
    return {
        "adjusted_end_ts": adjusted,
        "market_candlesticks": lists,
        "market_tickers": [m.ticker for m in markets],
    }
