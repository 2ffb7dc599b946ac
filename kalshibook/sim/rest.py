"""Kalshi REST market-data endpoints over the model (pure: request in, status and JSON out).

Shapes follow Kalshi's 2026 fixed-point responses (``*_dollars`` strings, ``*_fp`` counts, RFC 3339
times, ``*_ts`` ints). Cursors are opaque (base64 of a position) and an empty cursor means "end".
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from kalshibook.domain.booleans import parse_bool
from kalshibook.sim.entities import Event, Market, Series, rules_primary, strike_num
from kalshibook.sim.model import Exchange
from kalshibook.sim.records import QuoteRec, TradeRec
from kalshibook.sim.wire import (
    PRICE_STR,
    UNIT,
    dollars_str,
    rfc3339_s,
    rfc3339_us,
    rfc3339_us_exact,
    size_str,
)

__all__ = (
    "PERIODS",
    "REST_PREFIX",
    "Query",
    "RestError",
    "bad",
    "candle_params",
    "candles",
    "decode_cursor",
    "encode_cursor",
    "handle",
    "int_param",
    "list_param",
    "market_json",
    "not_found",
    "one_param",
    "trades_page",
)

REST_PREFIX: Final = "/trade-api/v2"

Query = Mapping[str, Sequence[str]]

MARKET_STATUS_FILTER: Final[dict[str, frozenset[str]]] = {
    "unopened": frozenset({"initialized"}),
    "open": frozenset({"active"}),
    "paused": frozenset({"inactive"}),
    "closed": frozenset({"closed"}),
    "settled": frozenset({"determined", "finalized"}),
}
EVENT_STATUS_FILTER: Final[dict[str, frozenset[str]]] = {
    "unopened": frozenset({"unopened"}),
    "open": frozenset({"open"}),
    "closed": frozenset({"closed", "determined"}),
    "settled": frozenset({"settled"}),
}

_encoder = msgspec.json.Encoder(order="sorted")


class RestError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> bytes:
        return _encoder.encode(
            {"error": {"code": self.code, "message": self.message, "details": ""}}
        )


def _bad(message: str) -> RestError:
    return RestError(400, "bad_request", message)


def _not_found(what: str) -> RestError:
    return RestError(404, "not_found", f"{what} not found")


# --- parameters ---------------------------------------------------------------------------------


def _one(q: Query, name: str) -> str | None:
    v = q.get(name)
    if not v:
        return None
    return v[-1]


def _int(q: Query, name: str, lo: int | None = None, hi: int | None = None) -> int | None:
    raw = _one(q, name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be an integer, got {raw[:40]!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _bad(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _bool(q: Query, name: str) -> bool:
    raw = _one(q, name)
    if not raw:
        return False
    flag = parse_bool(raw)
    if flag is None:
        raise _bad(f"{name} must be true or false, got {raw[:40]!r}")
    return flag


def _list(q: Query, name: str) -> list[str] | None:
    values = q.get(name)
    if not values:
        return None
    out = [t.strip() for v in values for t in v.split(",") if t.strip()]
    return out or None


def _encode_cursor(kind: str, pos: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{pos}".encode()).decode().rstrip("=")


def _decode_cursor(q: Query, kind: str) -> int | None:
    raw = _one(q, "cursor")
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        got_kind, _, pos = text.partition(":")
        value = int(pos)
        if got_kind != kind or value < 0:
            raise ValueError(text)
        return value
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise _bad("invalid cursor") from None


# --- shapes ---------------------------------------------------------------------------------------


def market_json(m: Market, ex: Exchange) -> dict[str, Any]:
    """``GET /markets/{ticker}`` ``market`` object (2026 fixed-point shape)."""
    ev = m.event
    bb, bbs, ask, asks = m.top()
    expected = ev.close_ms + ex.determination_ms
    d: dict[str, Any] = {
        "can_close_early": True,
        "close_time": rfc3339_s(ev.close_ms),
        "created_time": rfc3339_us(ev.created_ms),
        "event_ticker": ev.event_ticker,
        "exchange_index": 0,
        "expected_expiration_time": rfc3339_s(expected),
        "expiration_time": rfc3339_s(expected + ex.lifetime_ms),
        "expiration_value": "",
        "last_price_dollars": PRICE_STR[m.last_price],
        "latest_expiration_time": rfc3339_s(expected + ex.lifetime_ms),
        "liquidity_dollars": "0.0000",
        "market_type": "binary",
        "no_ask_dollars": PRICE_STR[UNIT - bb],
        "no_bid_dollars": PRICE_STR[UNIT - ask],
        "no_sub_title": m.no_sub_title,
        "notional_value_dollars": "1.0000",
        "open_interest_fp": size_str(m.oi),
        "open_time": rfc3339_s(ev.open_ms),
        "previous_price_dollars": PRICE_STR[m.prev_price],
        "previous_yes_ask_dollars": PRICE_STR[m.prev_yes_ask],
        "previous_yes_bid_dollars": PRICE_STR[m.prev_yes_bid],
        "price_level_structure": ev.grid.name,
        "price_ranges": ev.grid.ranges,
        "result": m.result,
        "rules_primary": rules_primary(m),
        "rules_secondary": "",
        "settlement_timer_seconds": max(1, ex.settlement_ms // 1000),
        "status": m.status,
        "ticker": m.ticker,
        "title": ev.title,
        "updated_time": rfc3339_us(m.updated_ms),
        "volume_24h_fp": size_str(m.volume),
        "volume_fp": size_str(m.volume),
        "yes_ask_dollars": PRICE_STR[ask],
        "yes_ask_size_fp": size_str(asks),
        "yes_bid_dollars": PRICE_STR[bb],
        "yes_bid_size_fp": size_str(bbs),
        "yes_sub_title": m.yes_sub_title,
    }
    if m.strike_type is not None:
        d["strike_type"] = m.strike_type
    if m.floor_strike is not None:
        d["floor_strike"] = strike_num(m.floor_strike)
    if m.cap_strike is not None:
        d["cap_strike"] = strike_num(m.cap_strike)
    if m.settlement_value is not None and m.status in ("determined", "finalized"):
        d["settlement_value_dollars"] = PRICE_STR[m.settlement_value]
        if ev.value is not None and m.strike_type is not None:
            d["expiration_value"] = f"{strike_num(ev.value)}"
    if m.status == "finalized":
        d["settlement_ts"] = rfc3339_us(ev.settled_ms)
    return d


def event_json(ev: Event, ex: Exchange, nested: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "available_on_brokers": False,
        "category": ev.category,
        "collateral_return_type": ev.collateral_return_type,
        "event_ticker": ev.event_ticker,
        "exchange_index": 0,
        "last_updated_ts": rfc3339_us(ev.updated_ms),
        "mutually_exclusive": ev.mutually_exclusive,
        "series_ticker": ev.series_ticker,
        "settlement_sources": [],
        "strike_date": rfc3339_s(ev.close_ms),
        "strike_period": "",
        "sub_title": ev.sub_title,
        "title": ev.title,
    }
    if nested:
        d["markets"] = [
            market_json(m, ex) for m in ev.markets if not rest_history.is_historical(ex, m)
        ]
    return d


def series_json(s: Series, volume: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "additional_prohibitions": [],
        "category": s.category,
        "contract_terms_url": f"https://kalshi-public-docs.s3.amazonaws.com/contract_terms/{s.ticker}.pdf",
        "contract_url": f"https://kalshi-public-docs.s3.amazonaws.com/regulatory/{s.ticker}.pdf",
        "exchange_index": 0,
        "fee_multiplier": 1,
        "fee_type": s.fee_type,
        "frequency": s.frequency,
        "last_updated_ts": rfc3339_us(s.updated_ms),
        "settlement_sources": [{"name": "Simulated source", "url": "https://example.invalid/"}],
        "tags": s.tags,
        "ticker": s.ticker,
        "title": s.title,
    }
    if volume is not None:
        d["volume_fp"] = size_str(volume)
    return d


def trade_json(t: TradeRec) -> dict[str, Any]:
    outcome = t.taker_outcome_side
    return {
        "count_fp": size_str(t.size),
        "created_time": rfc3339_us_exact(t.ts_ms, t.us),
        "is_block_trade": t.is_block_trade,
        "no_price_dollars": PRICE_STR[UNIT - t.yes_price],
        "taker_book_side": "bid" if outcome == "yes" else "ask",
        "taker_outcome_side": outcome,
        "taker_side": outcome,
        "ticker": t.ticker,
        "trade_id": t.trade_id,
        "yes_price_dollars": PRICE_STR[t.yes_price],
    }


def orderbook_json(m: Market, depth: int) -> dict[str, Any]:
    yes = m.levels("yes")
    no = m.levels("no")
    if depth:
        yes, no = yes[-depth:], no[-depth:]
    return {
        "yes_dollars": [[PRICE_STR[p], size_str(s)] for p, s in yes],
        "no_dollars": [[PRICE_STR[p], size_str(s)] for p, s in no],
    }


# --- endpoints -----------------------------------------------------------------------------------


def _get_markets(ex: Exchange, q: Query) -> dict[str, Any]:
    limit = _int(q, "limit", 1, 1000) or 100
    after = _decode_cursor(q, "m")
    status = _one(q, "status")
    statuses: frozenset[str] | None = None
    if status:
        if status not in MARKET_STATUS_FILTER:
            raise _bad(f"status must be one of {', '.join(MARKET_STATUS_FILTER)}, got {status!r}")
        statuses = MARKET_STATUS_FILTER[status]
    event_ticker = _one(q, "event_ticker")
    series_ticker = _one(q, "series_ticker")
    tickers = _list(q, "tickers")
    families: dict[str, tuple[int | None, int | None]] = {}
    for fam in ("created", "close", "settled", "updated"):
        lo = _int(q, f"min_{fam}_ts")
        hi = _int(q, f"max_{fam}_ts")
        if lo is not None or hi is not None:
            families[fam] = (lo, hi)
    if len(families) > 1:
        raise _bad(
            "timestamp filters of different families cannot be combined: "
            + ", ".join(sorted(families))
        )
    allowed = {
        "created": ("unopened", "open"),
        "close": ("closed",),
        "settled": ("settled",),
        "updated": (),
    }
    for fam in families:
        if status and status not in allowed[fam]:
            raise _bad(f"min/max_{fam}_ts cannot be combined with status={status}")

    mve = _one(q, "mve_filter")
    if mve not in (None, "", "only", "exclude"):
        raise _bad(f"mve_filter must be only or exclude, got {mve!r}")

    candidates: Sequence[Market]
    if mve == "only":  # the simulator lists no multivariate (KXMVE) markets
        candidates = []
    elif tickers is not None:
        found = [ex.markets[t] for t in dict.fromkeys(tickers) if t in ex.markets]
        candidates = sorted(found, key=lambda m: m.index)
    elif event_ticker is not None:
        ev = ex.events.get(event_ticker)
        candidates = ev.markets if ev is not None else []
    else:  # resume right after the cursor: market_list[i].index == i
        candidates = ex.market_list[after + 1 :] if after is not None else ex.market_list

    def keep(m: Market) -> bool:
        if rest_history.is_historical(ex, m):
            return False
        if statuses is not None and m.status not in statuses:
            return False
        if series_ticker is not None and m.event.series_ticker != series_ticker:
            return False
        if event_ticker is not None and m.event.event_ticker != event_ticker:
            return False
        for fam, (lo, hi) in families.items():
            ev = m.event
            at = {
                "created": ev.created_ms,
                "close": ev.close_ms,
                "settled": ev.settled_ms,
                "updated": m.updated_ms,
            }[fam] // 1000
            if fam == "settled" and not ev.settled_ms:
                return False
            if (lo is not None and at < lo) or (hi is not None and at > hi):
                return False
        return True

    out: list[dict[str, Any]] = []
    last = -1
    more = False
    for m in candidates:
        if after is not None and m.index <= after:
            continue
        if not keep(m):
            continue
        if len(out) == limit:
            more = True
            break
        out.append(market_json(m, ex))
        last = m.index
    return {"cursor": _encode_cursor("m", last) if more else "", "markets": out}


def _get_events(ex: Exchange, q: Query) -> dict[str, Any]:
    limit = _int(q, "limit", 1, 200) or 200
    after = _decode_cursor(q, "e")
    nested = _bool(q, "with_nested_markets")
    status = _one(q, "status")
    statuses: frozenset[str] | None = None
    if status:
        if status not in EVENT_STATUS_FILTER:
            raise _bad(f"status must be one of {', '.join(EVENT_STATUS_FILTER)}, got {status!r}")
        statuses = EVENT_STATUS_FILTER[status]
    series_ticker = _one(q, "series_ticker")
    tickers = _list(q, "tickers")
    wanted = set(tickers) if tickers is not None else None
    min_close = _int(q, "min_close_ts")
    min_updated = _int(q, "min_updated_ts")
    out: list[dict[str, Any]] = []
    last = -1
    more = False
    for ev in ex.event_list[after + 1 :] if after is not None else ex.event_list:
        if statuses is not None and ev.status not in statuses:
            continue
        if series_ticker is not None and ev.series_ticker != series_ticker:
            continue
        if wanted is not None and ev.event_ticker not in wanted:
            continue
        if min_close is not None and ev.close_ms // 1000 < min_close:
            continue
        if min_updated is not None and ev.updated_ms // 1000 < min_updated:
            continue
        if len(out) == limit:
            more = True
            break
        out.append(event_json(ev, ex, nested))
        last = ev.index
    return {"cursor": _encode_cursor("e", last) if more else "", "events": out, "milestones": []}


def _series_volume(ex: Exchange, ticker: str) -> int:
    return sum(m.volume for m in ex.market_list if m.event.series_ticker == ticker)


def _get_series_list(ex: Exchange, q: Query) -> dict[str, Any]:
    category = _one(q, "category")
    tags = _list(q, "tags")
    include_volume = _bool(q, "include_volume")
    min_updated = _int(q, "min_updated_ts")
    out = []
    for s in ex.series.values():
        if category and s.category != category:
            continue
        if tags and not set(tags) & set(s.tags):
            continue
        if min_updated is not None and s.updated_ms // 1000 < min_updated:
            continue
        out.append(series_json(s, _series_volume(ex, s.ticker) if include_volume else None))
    return {"series": out}


def trades_page(ex: Exchange, q: Query, from_ms: int | None, to_ms: int | None) -> dict[str, Any]:
    """A page of trades (newest first) inside the query's window and ``[from_ms, to_ms]``
    (the live/historical partition)."""
    limit = _int(q, "limit", 1, 1000) or 100
    before = _decode_cursor(q, "t")
    ticker = _one(q, "ticker")
    min_ts = _int(q, "min_ts")
    max_ts = _int(q, "max_ts")
    block = _one(q, "is_block_trade")
    lo = None if min_ts is None else min_ts * 1000
    hi = None if max_ts is None else max_ts * 1000 + 999
    if from_ms is not None:
        lo = from_ms if lo is None else max(lo, from_ms)
    if to_ms is not None:
        hi = to_ms if hi is None else min(hi, to_ms)
    if lo is not None and hi is not None and hi < lo:
        return {"cursor": "", "trades": []}
    recs, cont = ex.trades.page(ticker, lo, hi, before, limit)
    if block is not None:
        want = _bool(q, "is_block_trade")
        recs = [t for t in recs if t.is_block_trade == want]
    return {
        "cursor": _encode_cursor("t", cont) if cont is not None else "",
        "trades": [trade_json(t) for t in recs],
    }


PERIODS: Final = {1: 60_000, 60: 3_600_000, 1440: 86_400_000}
_PERIODS: Final = PERIODS


def _ny_offset_ms(ts_ms: int) -> int:
    """UTC offset of America/New_York at ``ts_ms`` (UTC if no time-zone data)."""
    try:
        from zoneinfo import ZoneInfo

        tz = ZoneInfo("America/New_York")
    except (ImportError, KeyError, OSError):  # pragma: no cover - no tzdata
        return 0
    d = dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).astimezone(tz)
    off = d.utcoffset()
    return int(off.total_seconds() * 1000) if off is not None else 0


def candles(
    ex: Exchange, m: Market, start_ts: int, end_ts: int, interval: int, now_ms: int
) -> list[dict[str, Any]]:
    """Kalshi-shaped candles whose end lies in ``[start_ts, end_ts]`` (seconds).

    Every period from the market's open to the last completed period is returned (gap-free:
    no-trade periods have null trade prices, ``previous_dollars`` and zero volume).
    """
    period = _PERIODS[interval]
    offset = _ny_offset_ms(m.event.open_ms) if interval == 1440 else 0
    first_end = ((m.event.open_ms + offset) // period + 1) * period - offset
    last_end = min(now_ms, m.event.close_ms + period)
    last_end = ((last_end + offset) // period) * period - offset
    lo = max(first_end, start_ts * 1000)
    lo = first_end + max(0, -(-(lo - first_end) // period)) * period
    hi = min(last_end, end_ts * 1000)
    if hi < lo:
        return []
    trades = ex.trades.all(m.ticker)
    quotes: list[QuoteRec] = m.quotes
    out: list[dict[str, Any]] = []
    ti = qi = 0
    bid = ask = None
    prev_price: int | None = None
    oi = 0
    count = 0
    end = lo
    # Carry state from before the first requested period.
    p_start = lo - period
    while qi < len(quotes) and quotes[qi].ts_ms < p_start:
        bid, ask = quotes[qi].yes_bid, quotes[qi].yes_ask
        qi += 1
    while ti < len(trades) and trades[ti].ts_ms < p_start:
        prev_price, oi = trades[ti].yes_price, trades[ti].open_interest
        ti += 1
    while end <= hi and count < 5000:
        start = end - period
        b_open, a_open = bid, ask
        b_hi = b_lo = bid
        a_hi = a_lo = ask
        while qi < len(quotes) and quotes[qi].ts_ms < end:
            bid, ask = quotes[qi].yes_bid, quotes[qi].yes_ask
            if b_open is None:
                b_open, a_open = bid, ask
            b_hi = bid if b_hi is None else max(b_hi, bid)
            b_lo = bid if b_lo is None else min(b_lo, bid)
            a_hi = ask if a_hi is None else max(a_hi, ask)
            a_lo = ask if a_lo is None else min(a_lo, ask)
            qi += 1
        p_open = p_hi = p_lo = p_close = None
        volume = notional = 0
        previous = prev_price
        while ti < len(trades) and trades[ti].ts_ms < end:
            t = trades[ti]
            if t.ts_ms >= start:
                if p_open is None:
                    p_open = p_hi = p_lo = t.yes_price
                else:
                    assert p_hi is not None
                    assert p_lo is not None
                    p_hi, p_lo = max(p_hi, t.yes_price), min(p_lo, t.yes_price)
                p_close = t.yes_price
                volume += t.size
                notional += t.size * t.yes_price
            prev_price, oi = t.yes_price, t.open_interest
            ti += 1
        price: dict[str, Any] = {
            "close_dollars": _p(p_close),
            "high_dollars": _p(p_hi),
            "low_dollars": _p(p_lo),
            "max_dollars": None,
            "mean_dollars": dollars_str(notional // volume) if volume else None,
            "min_dollars": None,
            "open_dollars": _p(p_open),
            "previous_dollars": _p(previous),
        }
        candle: dict[str, Any] = {
            "end_period_ts": end // 1000,
            "open_interest_fp": size_str(oi),
            "price": price,
            "volume_fp": size_str(volume),
        }
        if b_open is not None:
            candle["yes_bid"] = _ohlc(b_open, b_hi, b_lo, bid)
            candle["yes_ask"] = _ohlc(a_open, a_hi, a_lo, ask)
        out.append(candle)
        end += period
        count += 1
    return out


def _p(v: int | None) -> str | None:
    return None if v is None else PRICE_STR[v]


def _ohlc(o: int | None, h: int | None, low: int | None, c: int | None) -> dict[str, Any]:
    return {
        "close_dollars": _p(c),
        "high_dollars": _p(h),
        "low_dollars": _p(low),
        "open_dollars": _p(o),
    }


def _get_candles(ex: Exchange, series: str, ticker: str, q: Query, now_ms: int) -> dict[str, Any]:
    m = ex.markets.get(ticker)
    if m is None or (m.event.series_ticker and m.event.series_ticker != series):
        raise _not_found(f"market {ticker} in series {series}")
    if rest_history.is_historical(ex, m):
        raise _not_found(f"market {ticker} (historical: /historical/markets/{ticker}/candlesticks)")
    start, end, interval = candle_params(q)
    return {"ticker": ticker, "candlesticks": candles(ex, m, start, end, interval, now_ms)}


def candle_params(q: Query) -> tuple[int, int, int]:
    """``start_ts``, ``end_ts`` and ``period_interval`` (all required)."""
    start = _int(q, "start_ts")
    end = _int(q, "end_ts")
    interval = _int(q, "period_interval")
    if start is None or end is None or interval is None:
        raise _bad("start_ts, end_ts and period_interval are required")
    if interval not in _PERIODS:
        raise _bad("period_interval must be 1, 60 or 1440")
    return start, end, interval


def handle(ex: Exchange, path: str, q: Query, now_ms: int) -> tuple[int, bytes]:
    """Answer ``GET path?q``; ``path`` includes :data:`REST_PREFIX`."""
    try:
        return 200, _encoder.encode(_route(ex, path, q, now_ms))
    except RestError as exc:
        return exc.status, exc.body()


def _route(ex: Exchange, path: str, q: Query, now_ms: int) -> Any:
    if not path.startswith(REST_PREFIX + "/"):
        raise _not_found("endpoint")
    parts = [p for p in path[len(REST_PREFIX) :].split("/") if p]
    n = len(parts)
    head = parts[0] if parts else ""
    if head == "markets":
        if n == 1:
            return _get_markets(ex, q)
        if n == 2 and parts[1] == "trades":
            return trades_page(ex, q, rest_history.cutoff_ms(ex), None)
        if n == 2 and parts[1] == "candlesticks":
            return rest_history.batch_candles(ex, q, now_ms)
        if n == 2 and parts[1] == "orderbooks":
            tickers = _list(q, "tickers") or []
            if len(tickers) > 100:
                raise _bad("at most 100 tickers")
            books = [
                {"ticker": t, "orderbook_fp": orderbook_json(ex.markets[t], 0)}
                for t in tickers
                if t in ex.markets
            ]
            return {"orderbooks": books}
        if n == 2:
            m = ex.markets.get(parts[1])
            if m is None or rest_history.is_historical(ex, m):
                raise _not_found(f"market {parts[1]}")
            return {"market": market_json(m, ex)}
        if n == 3 and parts[2] == "orderbook":
            m = ex.markets.get(parts[1])
            if m is None:
                raise _not_found(f"market {parts[1]}")
            depth = _int(q, "depth", 0, 100) or 0
            return {"orderbook_fp": orderbook_json(m, depth)}
    elif head == "events":
        if n == 1:
            return _get_events(ex, q)
        if n == 2:
            ev = ex.events.get(parts[1])
            if ev is None:
                raise _not_found(f"event {parts[1]}")
            nested = _bool(q, "with_nested_markets")
            return {
                "event": event_json(ev, ex, nested),
                "markets": [
                    market_json(m, ex) for m in ev.markets if not rest_history.is_historical(ex, m)
                ],
            }
    elif head == "series":
        if n == 1:
            return _get_series_list(ex, q)
        if n == 2:
            s = ex.series.get(parts[1])
            if s is None:
                raise _not_found(f"series {parts[1]}")
            vol = _series_volume(ex, s.ticker) if _bool(q, "include_volume") else None
            return {"series": series_json(s, vol)}
        if n == 5 and parts[2] == "markets" and parts[4] == "candlesticks":
            return _get_candles(ex, parts[1], parts[3], q, now_ms)
        if n == 5 and parts[2] == "events" and parts[4] == "candlesticks":
            return rest_history.event_candles(ex, parts[1], parts[3], q, now_ms)
    elif head == "historical":
        return rest_history.route(ex, parts, q, now_ms)
    elif head == "exchange" and n == 2 and parts[1] == "status":
        return {
            "exchange_active": True,
            "exchange_estimated_resume_time": None,
            "trading_active": True,
        }
    elif head == "exchange" and n == 2 and parts[1] == "schedule":
        return {"schedule": {"maintenance_windows": [], "standard_hours": []}}
    raise _not_found("endpoint")


# Public names of the query helpers (used by :mod:`kalshibook.sim.rest_history`).
bad = _bad
not_found = _not_found
one_param = _one
int_param = _int
list_param = _list
encode_cursor = _encode_cursor
decode_cursor = _decode_cursor

from kalshibook.sim import rest_history  # noqa: E402  (circular: it uses the helpers above)
