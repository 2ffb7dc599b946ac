"""The simulator's generated history, historical partition and multi-market candlesticks
(issue #19), over a real socket, against the recorded Kalshi shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from sim_support import rest_client, running_sim

from kalshibook.sim.server import SimServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi"
HISTORY = {"history_hours": 1.0, "history_rate": 20.0, "lifetime": 900.0, "markets": 10}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())["response"]


async def pages(client: httpx.AsyncClient, path: str, key: str, **params: Any) -> list[Any]:
    out: list[Any] = []
    cursor = ""
    while True:
        r = await client.get(path, params={**params, "cursor": cursor})
        assert r.status_code == 200, r.text
        out += r.json()[key]
        cursor = r.json()["cursor"]
        if not cursor:
            return out


def cutoff_ms(sim: SimServer) -> int:
    return sim.model.cutoff_ms // 1000 * 1000


async def test_history_is_split_at_the_cutoff() -> None:
    async with running_sim(**HISTORY) as sim, rest_client(sim) as client:
        ex = sim.model
        cut = cutoff_ms(sim)
        # Markets were created, traded and settled before the simulator started listening.
        settled_before = [
            m for m in ex.market_list if m.event.settled_ms and m.event.settled_ms < cut
        ]
        assert settled_before
        assert ex.config.start_ms < cut < ex.now_ms
        r = await client.get("/historical/cutoff")
        body = r.json()
        assert set(body) == {
            "market_settled_ts",
            "trades_created_ts",
            "orders_updated_ts",
            "market_positions_last_updated_ts",
        }
        live = {m["ticker"] for m in await pages(client, "/markets", "markets", limit=1000)}
        hist = {m["ticker"] for m in await pages(client, "/historical/markets", "markets", limit=7)}
        assert hist == {m.ticker for m in settled_before}
        assert live == set(ex.markets) - hist
        one = next(iter(hist))
        assert (await client.get(f"/markets/{one}")).status_code == 404
        r = await client.get(f"/historical/markets/{one}")
        assert r.json()["market"]["ticker"] == one
        assert (await client.get(f"/historical/markets/{next(iter(live))}")).status_code == 404
        # Trades: live and historical together are every trade exactly once.
        live_t = await pages(client, "/markets/trades", "trades", limit=1000)
        hist_t = await pages(client, "/historical/trades", "trades", limit=1000)
        truth = ex.trades.records()
        assert len(truth) > 1000
        assert [t["trade_id"] for t in reversed(hist_t)] == [
            t.trade_id for t in truth if t.ts_ms < cut
        ]
        assert [t["trade_id"] for t in reversed(live_t)] == [
            t.trade_id for t in truth if t.ts_ms >= cut
        ]
        assert hist_t
        assert live_t


async def test_candlestick_endpoints_shapes() -> None:
    async with running_sim(**HISTORY) as sim, rest_client(sim) as client:
        ex = sim.model
        cut = cutoff_ms(sim)
        start = ex.config.start_ms // 1000
        end = ex.now_ms // 1000
        ev = next(
            e
            for e in ex.event_list
            if e.series_ticker and len(e.markets) > 1 and e.status == "open"
        )
        tickers = [m.ticker for m in ev.markets]
        q = {"start_ts": start, "end_ts": end, "period_interval": 1}
        single = [
            (
                await client.get(f"/series/{ev.series_ticker}/markets/{t}/candlesticks", params=q)
            ).json()["candlesticks"]
            for t in tickers
        ]
        batch = (
            await client.get(
                "/markets/candlesticks", params={**q, "market_tickers": ",".join(tickers)}
            )
        ).json()
        event = (
            await client.get(
                f"/series/{ev.series_ticker}/events/{ev.event_ticker}/candlesticks", params=q
            )
        ).json()
        assert [m["market_ticker"] for m in batch["markets"]] == tickers
        assert [m["candlesticks"] for m in batch["markets"]] == single
        assert event["market_tickers"] == tickers
        assert event["market_candlesticks"] == single
        assert event["adjusted_end_ts"] is None
        assert sum(len(c) for c in single) > 0
        # Same keys as Kalshi's recorded batch and event answers.
        rec_batch = fixture("rest_batch_candlesticks_daily_prod_2026-01-12.json")
        assert set(batch) == set(rec_batch)
        assert set(batch["markets"][0]) == set(rec_batch["markets"][0])
        rec_event = fixture("rest_event_candlesticks_daily_prod_2026-01-15.json")
        assert set(event) == set(rec_event)
        rec_candle = rec_event["market_candlesticks"][0][0]
        # (the 2026-01 recording predates the ``_fp`` suffixes of volume and open interest)
        assert {k.removesuffix("_fp") for k in single[0][0]} <= set(rec_candle)
        rec_price = {k for k in rec_candle["price"] if k.endswith("_dollars")}
        assert rec_price <= set(single[0][0]["price"])
        # Volume of the candles = the traded volume in them.
        lo = single[0][0]["end_period_ts"] * 1000 - 60_000
        hi = single[0][-1]["end_period_ts"] * 1000
        traded = sum(t.size for t in ex.trades.all(tickers[0]) if lo <= t.ts_ms < hi)
        assert sum(round(float(c["volume_fp"]) * 100) for c in single[0]) == traded
        # Historical markets: only the historical candle endpoint, with its own names.
        old = next(
            m
            for m in ex.market_list
            if m.event.settled_ms and m.event.settled_ms < cut and ex.trades.all(m.ticker)
        )
        r = await client.get(
            f"/series/{old.event.series_ticker}/markets/{old.ticker}/candlesticks", params=q
        )
        assert r.status_code == 404
        r = await client.get(f"/historical/markets/{old.ticker}/candlesticks", params=q)
        hc = r.json()["candlesticks"]
        assert sum(round(float(c["volume"]) * 100) for c in hc) == sum(
            t.size for t in ex.trades.all(old.ticker)
        )
        assert {"end_period_ts", "volume", "open_interest", "price"} <= set(hc[0])
        assert set(hc[0]["price"]) == {"open", "low", "high", "close", "mean", "previous"}
        # Errors are Kalshi-shaped 400s.
        r = await client.get("/markets/candlesticks", params=q)
        assert r.status_code == 400
        r = await client.get(
            "/markets/candlesticks",
            params={**q, "market_tickers": ",".join(["X"] * 101)},
        )
        assert r.status_code == 400
