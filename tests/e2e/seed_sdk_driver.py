"""Runs in the published SDK's own virtual environment (``kalshibook==0.1.0`` from PyPI), never
in ours: both packages are named ``kalshibook``. Reads a JSON spec on stdin, calls every public
method of the SDK, sync and async, against the server, and prints what it got as JSON.

Not a test module (pytest does not collect it); tests/e2e/test_seed_sdk.py runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from datetime import datetime
from typing import Any

import kalshibook
from kalshibook import (
    KalshiBook,
    KalshiBookError,
)


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = (f.name for f in dataclasses.fields(value) if f.name != "meta")  # per request
        return {name: plain(getattr(value, name)) for name in fields}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def data(resp: Any) -> Any:
    return plain(resp.data)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def frame(df: Any) -> dict[str, Any]:
    return {"rows": len(df), "columns": sorted(str(c) for c in df.columns)}


def sync_calls(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cost: dict[str, int] = {}
    tk, start, end = spec["ticker"], t(spec["start"]), t(spec["end"])
    with KalshiBook(spec["key"], base_url=spec["base_url"]) as c:
        books = [c.get_orderbook(tick, t(at)) for tick, at in spec["books"]]
        cost["orderbook"] = books[0].meta.credits_used
        out["orderbook"] = [plain(b) for b in books]
        first_ticker, first_at = spec["books"][0]
        out["orderbook_depth1"] = plain(c.get_orderbook(first_ticker, t(first_at), depth=1))
        markets = c.list_markets()
        cost["markets"] = markets.meta.credits_used
        out["markets"], out["markets_df"] = data(markets), frame(markets.to_df())
        out["market"] = data(c.get_market(tk))
        events = c.list_events()
        out["events"], out["events_df"] = data(events), frame(events.to_df())
        out["events_open"] = data(c.list_events(status="open"))
        out["event"] = data(c.get_event(spec["event"]))
        sets = c.list_settlements()
        out["settlements"], out["settlements_df"] = data(sets), frame(sets.to_df())
        out["settlements_yes"] = data(c.list_settlements(result="yes"))
        out["settlement"] = data(c.get_settlement(spec["settled"]))
        for iv in ("1m", "1h", "1d"):
            cs = c.get_candles(
                tk, start_time=t(spec["cstart"]), end_time=t(spec["cend"]), interval=iv
            )
            cost["candles"] = cs.meta.credits_used
            out[f"candles_{iv}"], out[f"candles_{iv}_df"] = data(cs), frame(cs.to_df())
        deltas = c.list_deltas(tk, start, end, limit=spec["page"])
        out["deltas"] = plain(list(deltas))
        out["deltas_df"] = frame(c.list_deltas(tk, start, end, limit=spec["page"]).to_df())
        trades = c.list_trades(tk, start, end, limit=spec["page"])
        out["trades"] = plain(list(trades))
        out["trades_df"] = frame(c.list_trades(tk, start, end, limit=spec["page"]).to_df())
        out["remaining"] = c.list_markets().meta.credits_remaining
    out["cost"] = cost
    return out


async def async_calls(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tk, start, end = spec["ticker"], t(spec["start"]), t(spec["end"])
    async with KalshiBook(spec["key"], base_url=spec["base_url"], sync=False) as c:
        out["orderbook"] = [
            plain(await c.aget_orderbook(tick, t(at))) for tick, at in spec["books"]
        ]
        markets = await c.alist_markets()
        out["markets"], out["markets_df"] = data(markets), frame(markets.to_df())
        out["market"] = data(await c.aget_market(tk))
        events = await c.alist_events()
        out["events"], out["events_df"] = data(events), frame(events.to_df())
        out["events_open"] = data(await c.alist_events(status="open"))
        out["event"] = data(await c.aget_event(spec["event"]))
        sets = await c.alist_settlements()
        out["settlements"], out["settlements_df"] = data(sets), frame(sets.to_df())
        out["settlements_yes"] = data(await c.alist_settlements(result="yes"))
        out["settlement"] = data(await c.aget_settlement(spec["settled"]))
        for iv in ("1m", "1h", "1d"):
            cs = await c.aget_candles(
                tk, start_time=t(spec["cstart"]), end_time=t(spec["cend"]), interval=iv
            )
            out[f"candles_{iv}"], out[f"candles_{iv}_df"] = data(cs), frame(cs.to_df())
        deltas = await c.alist_deltas(tk, start, end, limit=spec["page"])
        out["deltas"] = plain([d async for d in deltas])
        out["deltas_df"] = frame(deltas.to_df())  # drained: the frame of every page
        trades = await c.alist_trades(tk, start, end, limit=spec["page"])
        out["trades"] = plain([x async for x in trades])
        out["trades_df"] = frame(trades.to_df())
    return out


def raised(call: Any) -> dict[str, Any]:
    try:
        call()
    except KalshiBookError as exc:
        return {"class": type(exc).__name__, "status": exc.status_code, "body": exc.response_body}
    return {"class": None}


async def araised(call: Any) -> dict[str, Any]:
    try:
        await call()
    except KalshiBookError as exc:
        return {"class": type(exc).__name__, "status": exc.status_code, "body": exc.response_body}
    return {"class": None}


def error_calls(spec: dict[str, Any]) -> dict[str, Any]:
    url, tk = spec["base_url"], spec["ticker"]
    start, end = t(spec["start"]), t(spec["end"])
    out: dict[str, Any] = {}
    with KalshiBook(spec["unknown_key"], base_url=url) as c:
        out["bad_key"] = raised(lambda: c.get_market(tk))
    with KalshiBook(spec["empty_key"], base_url=url) as c:
        out["no_credits"] = raised(c.list_markets)
    with KalshiBook(spec["key"], base_url=url) as c:
        out["unknown_market"] = raised(lambda: c.get_market("NOPE-26JAN01-X"))
        out["unknown_book"] = raised(lambda: c.get_orderbook("NOPE-26JAN01-X", end))
        out["no_book_yet"] = raised(lambda: c.get_orderbook(tk, t(spec["early"])))
        out["unknown_event"] = raised(lambda: c.get_event("NOPE-26JAN01"))
        out["unsettled"] = raised(lambda: c.get_settlement(spec["unsettled"]))
        out["unknown_candles"] = raised(
            lambda: c.get_candles("NOPE-26JAN01-X", start_time=start, end_time=end)
        )
        out["inverted_trades"] = raised(lambda: c.list_trades(tk, end, start))
        out["inverted_deltas"] = raised(lambda: c.list_deltas(tk, end, start))
        out["inverted_candles"] = raised(lambda: c.get_candles(tk, start_time=end, end_time=start))
        out["bad_depth"] = raised(lambda: c.get_orderbook(tk, end, depth=1000))
        out["bad_interval"] = raised(
            lambda: c.get_candles(tk, start_time=start, end_time=end, interval="7m")
        )

    async def async_errors() -> dict[str, Any]:
        async with KalshiBook(spec["key"], base_url=url, sync=False) as c:
            return {
                "unknown_market": await araised(lambda: c.aget_market("NOPE-26JAN01-X")),
                "inverted_trades": await araised(lambda: c.alist_trades(tk, end, start)),
            }

    out["async"] = asyncio.run(async_errors())
    # Rate limit (the strict server allows one request per second per key): the SDK retries a
    # 429 after Retry-After and succeeds; with no retry left it raises RateLimitError.
    strict = spec["strict_url"]
    with KalshiBook(spec["key"], base_url=strict, max_retries=3) as c:
        began = time.monotonic()
        first = c.get_market(tk).data.ticker
        second = c.get_market(tk).data.ticker
        out["retried"] = {"tickers": [first, second], "seconds": time.monotonic() - began}
    with KalshiBook(spec["key"], base_url=strict, max_retries=1) as c:
        out["rate_limited"] = raised(lambda: c.get_market(tk))
    return out


def main() -> None:
    spec = json.load(sys.stdin)
    assert kalshibook.__version__ == spec["sdk_version"], kalshibook.__version__
    # the client refuses a key not starting with kb- before sending anything
    bad_form = raised(lambda: KalshiBook("kb_" + spec["key"][3:], base_url=spec["base_url"]))
    result = {
        "module": kalshibook.__file__,
        "bad_form": bad_form,
        "sync": sync_calls(spec),
        "async": asyncio.run(async_calls(spec)),
        "errors": error_calls(spec),
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
