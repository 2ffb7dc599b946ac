"""Runs inside the virtual environment holding ``pykalshi`` (tests/e2e/test_kalshi_compat.py):
reads a JSON spec on stdin, drives the client against kalshibook's ``/trade-api/v2`` and prints
what it got as JSON. Nothing of kalshibook is importable here."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlencode

import pykalshi
from pykalshi import CandlestickPeriod, KalshiClient
from pykalshi.exceptions import KalshiAPIError


def dump(model: Any) -> Any:
    return model.model_dump(mode="json")


def frame(df: Any) -> dict[str, Any]:
    return {"rows": len(df), "columns": [str(c) for c in df.columns]}


def main() -> None:
    spec = json.load(sys.stdin)
    out: dict[str, Any] = {"module": pykalshi.__file__}
    t, t2 = spec["ticker"], spec["other"]
    window = {"start_ts": spec["start_ts"], "end_ts": spec["end_ts"]}
    with KalshiClient(
        api_key_id=spec["key"], private_key_path=spec["pem"], api_base=spec["api_base"]
    ) as c:
        markets = c.get_markets(limit=5, fetch_all=True)
        out["markets"] = [m.ticker for m in markets]
        out["markets_status"] = [m.status.value for m in markets]
        out["markets_df"] = frame(markets.to_dataframe())
        market = c.get_market(t)
        out["market"] = dump(market.data)
        out["series"] = dump(c.get_series(market.series_ticker).data)
        out["all_series"] = [s.ticker for s in c.get_all_series(fetch_all=True)]
        events = c.get_events(limit=3, fetch_all=True)
        out["events"] = [e.event_ticker for e in events]
        out["event_markets"] = [m.ticker for m in c.get_event(market.event_ticker).get_markets()]
        trades = c.get_trades(
            ticker=t, min_ts=spec["min_ts"], max_ts=spec["max_ts"], limit=37, fetch_all=True
        )
        out["trades"] = [dump(x) for x in trades]
        out["trades_df"] = frame(trades.to_dataframe())
        out["orderbook_latest"] = dump(market.get_orderbook())
        out["orderbook_depth1"] = dump(market.get_orderbook(depth=1))
        out["orderbooks_at"] = [
            c.get(f"/markets/{t}/orderbook?{urlencode({'at': at})}") for at in spec["instants"]
        ]
        out["orderbooks"] = c.get(f"/markets/orderbooks?tickers={t},{t2}")
        for name, period in (
            ("1m", CandlestickPeriod.ONE_MINUTE),
            ("1h", CandlestickPeriod.ONE_HOUR),
        ):
            got = market.get_candlesticks(period=period, **window)
            out[f"candles_{name}"] = dump(got)
            out[f"candles_{name}_df"] = frame(got.to_dataframe())
        batch = c.get_candlesticks_batch([t, t2], period=CandlestickPeriod.ONE_MINUTE, **window)
        out["batch"] = {k: dump(v) for k, v in batch.items()}
        query = urlencode({**window, "period_interval": 1})
        out["event_candles"] = c.get(
            f"/series/{market.series_ticker}/events/{market.event_ticker}/candlesticks?{query}"
        )
        h = c.history
        out["cutoff"] = dump(h.get_cutoff())
        out["hist_market"] = dump(h.get_market(t).data)
        out["hist_markets"] = [m.ticker for m in h.get_markets(limit=4, fetch_all=True)]
        out["hist_trades"] = [x.trade_id for x in h.get_trades(ticker=t, limit=100, fetch_all=True)]
        out["hist_candles"] = [
            dump(x) for x in h.get_candlesticks(t, period=CandlestickPeriod.ONE_MINUTE, **window)
        ]
        try:
            c.get_market("NO-SUCH-MARKET")
        except KalshiAPIError as exc:
            out["not_found"] = {"class": type(exc).__name__, "status": exc.status_code}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
