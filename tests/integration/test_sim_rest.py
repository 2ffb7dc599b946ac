"""The simulator's Kalshi REST endpoints, through a plain httpx client over a real socket."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sim_support import ED_KEY_ID, KEY_ID, Signer, rest_client, running_sim

from kalshibook.kalshi.auth import signed_headers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi"
LIVE = FIXTURES / "rest_post_migration_live_samples_2026-08-24.json"


async def all_pages(
    client: httpx.AsyncClient, path: str, key: str, **params: Any
) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    cursor = ""
    pages = 0
    while True:
        r = await client.get(path, params={**params, "cursor": cursor})
        assert r.status_code == 200, r.text
        body = r.json()
        items += body[key]
        pages += 1
        cursor = body["cursor"]
        if not cursor:
            return items, pages


async def test_pagination_returns_every_market_of_5000_exactly_once() -> None:
    async with running_sim(markets=5000) as sim, rest_client(sim) as client:
        markets, pages = await all_pages(client, "/markets", "markets", limit=1000)
        tickers = [m["ticker"] for m in markets]
        assert len(tickers) == len(set(tickers))
        assert set(tickers) == set(sim.model.markets)
        assert len(tickers) >= 5000
        assert pages == -(-len(tickers) // 1000)
        # Default page size 100, and an odd size, give the same set.
        r = await client.get("/markets")
        assert len(r.json()["markets"]) == 100
        open_markets, _ = await all_pages(client, "/markets", "markets", limit=777, status="open")
        assert {m["ticker"] for m in open_markets} == {
            m.ticker for m in sim.model.market_list if m.status == "active"
        }
        assert all(m["status"] == "active" for m in open_markets)


async def test_market_filters_and_errors() -> None:
    async with running_sim(markets=200) as sim, rest_client(sim) as client:
        model = sim.model
        ev = next(e for e in model.event_list if len(e.markets) > 2 and e.status == "open")
        r = await client.get("/markets", params={"event_ticker": ev.event_ticker})
        assert [m["ticker"] for m in r.json()["markets"]] == [m.ticker for m in ev.markets]
        r = await client.get("/markets", params={"series_ticker": ev.series_ticker, "limit": 1000})
        assert {m["event_ticker"] for m in r.json()["markets"]} >= {ev.event_ticker}
        assert all(m["event_ticker"].startswith(ev.series_ticker) for m in r.json()["markets"])
        some = [m.ticker for m in ev.markets[:2]]
        r = await client.get("/markets", params={"tickers": ",".join(some)})
        assert [m["ticker"] for m in r.json()["markets"]] == some
        settled = [m.ticker for m in model.market_list if m.status == "finalized"]
        r = await client.get("/markets", params={"status": "settled", "limit": 1000})
        assert [m["ticker"] for m in r.json()["markets"]] == settled
        assert all("settlement_value_dollars" in m for m in r.json()["markets"])
        unopened = [m.ticker for m in model.market_list if m.status == "initialized"]
        r = await client.get("/markets", params={"status": "unopened"})
        assert [m["ticker"] for m in r.json()["markets"]] == unopened
        now_s = int(time.time())
        r = await client.get("/markets", params={"min_close_ts": now_s + 10**6})
        assert r.json() == {"cursor": "", "markets": []}
        r = await client.get("/markets", params={"max_close_ts": now_s, "limit": 1000})
        assert {m["ticker"] for m in r.json()["markets"]} == set(settled)
        bads: list[dict[str, str | int]] = [
            {"limit": 0},
            {"limit": 1001},
            {"limit": "x"},
            {"status": "bogus"},
            {"cursor": "!!"},
            {"min_close_ts": 1, "min_created_ts": 1},
            {"status": "settled", "min_created_ts": 1},
        ]
        for bad in bads:
            r = await client.get("/markets", params=bad)
            assert r.status_code == 400, bad
            assert r.json()["error"]["code"] == "bad_request"
        t = ev.markets[0].ticker
        r = await client.get(f"/markets/{t}")
        assert r.json()["market"]["ticker"] == t
        r = await client.get("/markets/NOPE-1")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"


async def test_events_series_and_exchange() -> None:
    async with running_sim(markets=600) as sim, rest_client(sim) as client:
        model = sim.model
        events, pages = await all_pages(client, "/events", "events", limit=40)
        assert [e["event_ticker"] for e in events] == [e.event_ticker for e in model.event_list]
        assert pages > 1
        assert any(e["series_ticker"] == "" for e in events), "events without a series"
        assert (await client.get("/events", params={"limit": 201})).status_code == 400
        nested = (
            await client.get("/events", params={"with_nested_markets": "true", "limit": 3})
        ).json()["events"]
        assert all(e["markets"] for e in nested)
        ev = model.event_list[3]
        one = (
            await client.get(f"/events/{ev.event_ticker}", params={"with_nested_markets": "true"})
        ).json()
        assert one["event"]["event_ticker"] == ev.event_ticker
        assert [m["ticker"] for m in one["event"]["markets"]] == [m.ticker for m in ev.markets]
        assert (await client.get("/events/NOPE")).status_code == 404
        open_events = (await client.get("/events", params={"status": "open"})).json()["events"]
        assert {e["event_ticker"] for e in open_events} <= {
            e.event_ticker for e in model.event_list if e.status == "open"
        }

        series = (await client.get("/series")).json()["series"]
        assert [s["ticker"] for s in series] == list(model.series)
        s0 = series[0]
        single = (
            await client.get(f"/series/{s0['ticker']}", params={"include_volume": "true"})
        ).json()["series"]
        assert single["ticker"] == s0["ticker"]
        assert "volume_fp" in single
        cat = (await client.get("/series", params={"category": s0["category"]})).json()
        assert all(s["category"] == s0["category"] for s in cat["series"])

        assert (await client.get("/exchange/status")).json()["trading_active"] is True
        cutoff = (await client.get("/historical/cutoff")).json()
        assert set(cutoff) == {
            "market_settled_ts",
            "trades_created_ts",
            "orders_updated_ts",
            "market_positions_last_updated_ts",
        }
        assert (await client.get("/nothing/here")).status_code == 404


async def test_trades_newest_first_paginated_and_filtered() -> None:
    async with running_sim(markets=30) as sim, rest_client(sim) as client:
        for _ in range(20):
            sim.step(200)
            await asyncio.sleep(0.002)
        model = sim.model
        trades, _ = await all_pages(client, "/markets/trades", "trades", limit=97)
        ids = [t["trade_id"] for t in trades]
        assert ids == [r.trade_id for r in reversed(model.trades.all())]
        times = [t["created_time"] for t in trades]
        assert times == sorted(times, reverse=True)
        t0 = trades[0]
        assert set(t0) == {
            "count_fp",
            "created_time",
            "is_block_trade",
            "no_price_dollars",
            "taker_book_side",
            "taker_outcome_side",
            "taker_side",
            "ticker",
            "trade_id",
            "yes_price_dollars",
        }
        ticker = t0["ticker"]
        mine, _ = await all_pages(client, "/markets/trades", "trades", ticker=ticker, limit=5)
        assert [t["trade_id"] for t in mine] == [
            r.trade_id for r in reversed(model.trades.all(ticker))
        ]
        first_s = model.trades.all()[0].ts_ms // 1000
        r = await client.get(
            "/markets/trades", params={"min_ts": first_s, "max_ts": first_s, "limit": 1000}
        )
        assert r.json()["trades"]
        assert all(t["created_time"] for t in r.json()["trades"])


async def test_orderbook_and_candlesticks() -> None:
    async with running_sim(markets=30) as sim, rest_client(sim) as client:
        sim.step(300)
        m = next(m for m in sim.model.market_list if len(m.yes) > 3 and len(m.no) > 3)
        body = (await client.get(f"/markets/{m.ticker}/orderbook")).json()
        book = body["orderbook_fp"]
        yes = [(Decimal(p), Decimal(s)) for p, s in book["yes_dollars"]]
        no = [(Decimal(p), Decimal(s)) for p, s in book["no_dollars"]]
        assert yes == sorted(yes), "ascending, best bid last"
        assert no == sorted(no)
        assert yes[-1][0] + no[-1][0] < 1
        assert [(int(p * 10_000), int(s * 100)) for p, s in yes] == sorted(m.yes.items())
        depth = (await client.get(f"/markets/{m.ticker}/orderbook", params={"depth": 2})).json()
        assert depth["orderbook_fp"]["yes_dollars"] == book["yes_dollars"][-2:]
        market = (await client.get(f"/markets/{m.ticker}")).json()["market"]
        assert Decimal(market["yes_bid_dollars"]) == yes[-1][0]
        assert Decimal(market["yes_ask_dollars"]) == 1 - no[-1][0]
        many = (
            await client.get("/markets/orderbooks", params={"tickers": [m.ticker, "NOPE"]})
        ).json()
        assert [b["ticker"] for b in many["orderbooks"]] == [m.ticker]

        path = f"/series/{m.series_ticker}/markets/{m.ticker}/candlesticks"
        now = int(time.time())
        r = await client.get(
            path, params={"start_ts": now - 3600, "end_ts": now + 60, "period_interval": 1}
        )
        assert r.status_code == 200, r.text
        candles = r.json()["candlesticks"]
        assert candles
        c = candles[-1]
        assert set(c) >= {"end_period_ts", "price", "volume_fp", "open_interest_fp"}
        assert c["end_period_ts"] % 60 == 0
        bad = await client.get(path, params={"start_ts": 0, "end_ts": 1, "period_interval": 5})
        assert bad.status_code == 400
        assert (await client.get(path)).status_code == 400


def test_shapes_match_live_kalshi_samples() -> None:
    sample = json.loads(LIVE.read_text())
    live_market = sample["market (GET /markets -> .markets[i])"]
    live_trade = sample["trade (GET /markets/trades -> .trades[i])"]
    live_series = sample["series (GET /series/{series_ticker} -> .series)"]
    live_event = sample["event (GET /events/{event_ticker} -> .event)"]
    from kalshibook.sim.model import Exchange
    from kalshibook.sim.records import ModelConfig
    from kalshibook.sim.rest import event_json, market_json, series_json, trade_json

    ex = Exchange(ModelConfig(markets=40))
    ex.advance(ex.now_ms + 1000, 2000)
    finalized = next(m for m in ex.market_list if m.status == "finalized")
    ours = market_json(finalized, ex)
    mve_only = {"is_provisional"}
    assert set(live_market) - mve_only <= set(ours), set(live_market) - set(ours)
    assert set(live_trade) == set(trade_json(ex.trades.all()[0]))
    assert set(live_series) <= set(series_json(next(iter(ex.series.values()))))
    assert set(live_event) <= set(event_json(ex.event_list[0], ex, False))
    # Same value formats: 4-dp dollars, 2-dp counts.
    for key in ("yes_bid_dollars", "no_ask_dollars", "last_price_dollars"):
        assert len(ours[key].split(".")[1]) == 4
    for key in ("volume_fp", "open_interest_fp", "yes_bid_size_fp"):
        assert len(ours[key].split(".")[1]) == 2


async def test_signature_required_and_checked() -> None:
    async with running_sim() as sim:
        async with httpx.AsyncClient(base_url=sim.rest_url) as anon:
            r = await anon.get("/markets")
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "authentication_error"
            # A signature for another path is refused.
            from sim_support import private_key

            key = private_key()
            wrong = signed_headers(KEY_ID, key, "GET", "/trade-api/v2/events")
            assert (await anon.get("/markets", headers=wrong)).status_code == 401
            stale = signed_headers(
                KEY_ID,
                key,
                "GET",
                "/trade-api/v2/markets",
                now_ms=int(time.time() * 1000) - 3_600_000,
            )
            assert (await anon.get("/markets", headers=stale)).status_code == 401
            unknown = signed_headers("who", key, "GET", "/trade-api/v2/markets")
            assert (await anon.get("/markets", headers=unknown)).status_code == 401
            garbage = {
                **signed_headers(KEY_ID, key, "GET", "/trade-api/v2/markets"),
                "KALSHI-ACCESS-SIGNATURE": "not base64!",
            }
            assert (await anon.get("/markets", headers=garbage)).status_code == 401
        for auth in (Signer(KEY_ID, "rsa"), Signer(ED_KEY_ID, "ed25519")):
            async with httpx.AsyncClient(base_url=sim.rest_url, auth=auth) as client:
                # The query string is not part of the signed text.
                assert (await client.get("/markets", params={"limit": 3})).status_code == 200
        assert sim.stats["auth_rejected"] == 5


async def test_no_auth_mode_accepts_unsigned() -> None:
    async with running_sim(no_auth=True) as sim, rest_client(sim, signed=False) as client:
        assert (await client.get("/markets")).status_code == 200


@pytest.mark.parametrize("burst", [1, 3])
async def test_429_burst(burst: int) -> None:
    async with running_sim() as sim, rest_client(sim) as client:
        sim.start_429_burst(burst)
        for _ in range(burst):
            r = await client.get("/exchange/status")
            assert r.status_code == 429
            assert r.json() == {"error": "too many requests"}
            assert "retry-after" not in r.headers
        assert (await client.get("/exchange/status")).status_code == 200
