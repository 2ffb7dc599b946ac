"""The Kalshi-compatible routes (``/trade-api/v2``) on the seeded database: Kalshi's recorded
shapes (tests/fixtures/kalshi), the same rows as ``/v1`` in Kalshi's order, the book of ``/v1``,
Kalshi's error body, keys in ``KALSHI-ACCESS-KEY`` and per-ticker credits. pykalshi itself is
driven against a live server in tests/e2e/test_kalshi_compat.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_support import (
    B45,
    B47,
    RAIN,
    SEED,
    T0,
    api_settings,
    key_credits,
    walk,
)
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.api.auth import create_key
from kalshibook.api.kalshi_compat.schemas import EXTENSIONS

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "kalshi"
KALSHI = "/trade-api/v2"


def fixture(name: str) -> Any:
    body = json.loads((FIXTURES / name).read_text("utf-8"))
    return body.get("response", body)


LIVE = fixture("rest_post_migration_live_samples_2026-08-24.json")
LIVE_MARKET = LIVE["market (GET /markets -> .markets[i])"]
LIVE_TRADE = LIVE["trade (GET /markets/trades -> .trades[i])"]
LIVE_SERIES = LIVE["series (GET /series/{series_ticker} -> .series)"]
LIVE_EVENT = LIVE["event (GET /events/{event_ticker} -> .event)"]
DOCUMENTED_MARKET = {"floor_strike": 0.5, "cap_strike": 0.5, "functional_strike": ""}
"""Market keys of Kalshi's OpenAPI (KALSHI_API.md §3.2) that no recorded market carries."""


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def assert_like(
    ours: dict[str, Any], kalshi: dict[str, Any], *, extensions: frozenset[str]
) -> None:
    """Every key we send is one Kalshi sends, with the same JSON type (null never sent)."""
    for key, value in ours.items():
        assert value is not None, f"{key} sent as null (Kalshi omits keys without a value)"
        if key in extensions:
            continue
        assert key in kalshi, f"{key} is not a Kalshi key"
        if kalshi[key] is not None:
            assert json_type(value) == json_type(kalshi[key]), key


def kalshi_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


async def kwalk(client: Any, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(10_000):
        r = await client.get(f"{KALSHI}{path}", params={**params, "cursor": cursor})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {key, "cursor"}
        rows.extend(body[key])
        cursor = body["cursor"]
        if cursor == "":
            return rows
    raise AssertionError("pagination did not end")


async def test_markets_are_v1_markets_in_kalshi_shape(client: Any) -> None:
    v1 = await walk(client, "/v1/markets", 1000)
    ours = await kwalk(client, "/markets", "markets", limit=2)
    assert [m["ticker"] for m in ours] == [m["ticker"] for m in v1]
    single = fixture("rest_get_market_single_prod_2026-01-12.json")["market"]
    kalshi_keys = {**DOCUMENTED_MARKET, **LIVE_MARKET, **single}
    for m, w in zip(ours, v1, strict=True):
        assert_like(m, kalshi_keys, extensions=EXTENSIONS)
        assert (m["event_ticker"], m["status"]) == (w["event_ticker"], w["status"])
        assert m["result"] == (w["result"] or "")
        assert m["floor_strike"] == 44
        assert m["cap_strike"] == 45.5
    one = (await client.get(f"{KALSHI}/markets/{B45}")).json()
    assert set(one) == {"market"}
    assert one["market"]["ticker"] == B45
    settled = await kwalk(client, "/markets", "markets", status="settled")
    assert {m["ticker"] for m in settled} == {
        w["ticker"] for w in v1 if w["status"] in ("finalized", "determined", "settled")
    }
    picked = await kwalk(client, "/markets", "markets", tickers=f"{RAIN},{B45},NOPE")
    assert [m["ticker"] for m in picked] == sorted([B45, RAIN])


async def test_a_settled_market_says_when_it_settled(client: Any, seeded_url: str) -> None:
    """``settlement_ts`` (KALSHI_API.md §3.2): what a client compares with the cutoff's
    ``market_settled_ts`` to route by market; absent until the market settles."""
    with psycopg.connect(seeded_url) as conn:
        row = conn.execute(
            "SELECT settled_at FROM market.settlements WHERE market_ticker = %s", (B47,)
        ).fetchone()
    assert row is not None
    assert row[0] is not None
    for path in (f"{KALSHI}/markets/{B47}", f"{KALSHI}/historical/markets/{B47}"):
        r = await client.get(path)
        assert r.status_code == 200, r.text
        assert datetime.fromisoformat(r.json()["market"]["settlement_ts"]) == row[0]
    r = await client.get(f"{KALSHI}/markets/{B45}")
    assert "settlement_ts" not in r.json()["market"]
    r = await client.get(f"{KALSHI}/markets", params={"event_ticker": "KXHIGHNY-26JAN15"})
    got = {m["ticker"]: m.get("settlement_ts") for m in r.json()["markets"]}
    assert got[B45] is None
    assert got[B47] is not None


async def test_series_and_events_in_kalshi_shape(client: Any) -> None:
    series = (await client.get(f"{KALSHI}/series")).json()
    assert series["cursor"] == ""
    assert [s["ticker"] for s in series["series"]] == sorted(SEED.series)
    for s in series["series"]:
        assert_like(s, LIVE_SERIES | {"last_updated_ts": ""}, extensions=frozenset())
        assert s["fee_multiplier"] == 1.5
    one = (await client.get(f"{KALSHI}/series/KXHIGHNY")).json()["series"]
    assert one["ticker"] == "KXHIGHNY"
    assert one["tags"] == ["Weather"]
    events = await kwalk(client, "/events", "events", limit=3)
    assert [e["event_ticker"] for e in events] == sorted(SEED.events)
    listed = fixture("rest_get_events_list_prod_2026-01.json")["events"][0]
    for e in events:
        assert_like(e, listed | LIVE_EVENT, extensions=frozenset())
    r = (await client.get(f"{KALSHI}/events/KXHIGHNY-26JAN15")).json()
    assert set(r) == set(fixture("rest_get_event_with_markets_prod_2026-01-12.json"))
    assert [m["ticker"] for m in r["markets"]] == sorted([B45, B47])
    assert "markets" not in r["event"]
    nested = (
        await client.get(f"{KALSHI}/events/KXHIGHNY-26JAN15", params={"with_nested_markets": "1"})
    ).json()
    assert [m["ticker"] for m in nested["event"]["markets"]] == sorted([B45, B47])


async def test_trades_newest_first_and_the_same_rows_as_v1(client: Any) -> None:
    v1 = await walk(client, f"/v1/markets/{B45}/trades", 1000)
    ours = await kwalk(client, "/markets/trades", "trades", ticker=B45, limit=7)
    assert [t["trade_id"] for t in ours] == [t["trade_id"] for t in reversed(v1)]
    fixture_trade = fixture("rest_get_markets_trades_prod_2026-01-12.json")["trades"][0]
    for t, w in zip(ours, reversed(v1), strict=True):
        assert_like(t, fixture_trade | LIVE_TRADE, extensions=frozenset())
        assert set(t) == set(LIVE_TRADE)  # every key of the 2026 trade, no more
        assert t["created_time"].endswith("Z")
        assert datetime.fromisoformat(t["created_time"]) == datetime.fromisoformat(
            w["created_time"]
        )
        assert (t["yes_price_dollars"], t["count_fp"]) == (w["yes_price_dollars"], w["count_fp"])
        assert t["taker_side"] == t["taker_outcome_side"] == w["taker_outcome_side"]
    everything = await kwalk(client, "/markets/trades", "trades", limit=1000)
    assert len(everything) == len(SEED.trades)
    stamps = [datetime.fromisoformat(t["created_time"]) for t in everything]
    assert stamps == sorted(stamps, reverse=True)
    # min_ts / max_ts: both inclusive, whole seconds
    lo, hi = T0 + timedelta(seconds=60), T0 + timedelta(seconds=120)
    window = await kwalk(
        client,
        "/markets/trades",
        "trades",
        ticker=B45,
        min_ts=int(lo.timestamp()),
        max_ts=int(hi.timestamp()),
    )
    want = [
        w["trade_id"]
        for w in reversed(v1)
        if lo <= datetime.fromisoformat(w["created_time"]) < hi + timedelta(seconds=1)
    ]
    assert [t["trade_id"] for t in window] == want
    assert want
    hist = await kwalk(client, "/historical/trades", "trades", ticker=B45, limit=1000)
    assert hist == ours


async def test_orderbook_is_v1s_book(client: Any) -> None:
    for offset in (0, 61, 150):
        at = (T0 + timedelta(seconds=offset, milliseconds=300)).isoformat()
        v1 = (await client.get(f"/v1/markets/{B45}/orderbook", params={"at": at})).json()["data"]
        r = await client.get(f"{KALSHI}/markets/{B45}/orderbook", params={"at": at})
        assert r.status_code == 200, r.text
        book = r.json()
        assert set(book) == {"orderbook_fp"}
        assert book["orderbook_fp"]["yes_dollars"] == v1["yes_bids"]
        assert book["orderbook_fp"]["no_dollars"] == v1["no_bids"]
        prices = [p for p, _ in book["orderbook_fp"]["yes_dollars"]]
        assert prices == sorted(prices, key=float)  # ascending, best bid last
        top = await client.get(f"{KALSHI}/markets/{B45}/orderbook", params={"at": at, "depth": 1})
        assert top.json()["orderbook_fp"]["yes_dollars"] == v1["yes_bids"][-1:]
    many = await client.get(
        f"{KALSHI}/markets/orderbooks", params=[("tickers", B45), ("tickers", B47)]
    )
    assert many.status_code == 200, many.text
    books = many.json()["orderbooks"]
    assert [b["ticker"] for b in books] == [B45, B47]
    latest = (await client.get(f"{KALSHI}/markets/{B45}/orderbook")).json()
    assert books[0]["orderbook_fp"] == latest["orderbook_fp"]
    assert books[1]["orderbook_fp"] == {"yes_dollars": [], "no_dollars": []}  # no book recorded


CANDLE_KEYS = {"end_period_ts", "yes_bid", "yes_ask", "price", "volume_fp", "open_interest_fp"}
OHLC_KEYS = {"open_dollars", "low_dollars", "high_dollars", "close_dollars"}
PRICE_KEYS = OHLC_KEYS | {"mean_dollars", "previous_dollars", "min_dollars", "max_dollars"}
HIST_OHLC = {"open", "low", "high", "close"}


async def test_candles_send_every_key_null_when_empty(client: Any) -> None:
    """Kalshi's candlestick fields are all nullable and always sent (KALSHI_API.md §3.6): code
    written against it reads ``c["price"]["close_dollars"]`` on a candle without trades."""
    start = int(T0.timestamp())
    params = {"start_ts": start, "end_ts": start + 86_400, "period_interval": 1}
    r = await client.get(f"{KALSHI}/series/KXHIGHNY/markets/{B45}/candlesticks", params=params)
    assert r.status_code == 200, r.text
    candles = r.json()["candlesticks"]
    assert candles
    for c in candles:
        assert set(c) == CANDLE_KEYS
        assert set(c["yes_bid"]) == set(c["yes_ask"]) == OHLC_KEYS
        assert set(c["price"]) == PRICE_KEYS
        assert c["price"]["min_dollars"] is None
    r = await client.get(f"{KALSHI}/historical/markets/{B45}/candlesticks", params=params)
    assert r.status_code == 200, r.text
    for h in r.json()["candlesticks"]:
        assert set(h) == {"end_period_ts", "yes_bid", "yes_ask", "price", "volume", "open_interest"}
        assert set(h["yes_bid"]) == set(h["yes_ask"]) == HIST_OHLC
        assert set(h["price"]) == HIST_OHLC | {"mean", "previous"}


async def test_kalshi_errors_and_limits(client: Any) -> None:
    kalshi_error(await client.get(f"{KALSHI}/markets/NOPE"), 404, "not_found")
    kalshi_error(await client.get(f"{KALSHI}/markets/NOPE/orderbook"), 404, "not_found")
    kalshi_error(await client.get(f"{KALSHI}/events/NOPE"), 404, "not_found")
    kalshi_error(await client.get(f"{KALSHI}/series/NOPE"), 404, "not_found")
    kalshi_error(
        await client.get(f"{KALSHI}/markets/trades", params={"limit": 1001}), 400, "bad_request"
    )
    kalshi_error(
        await client.get(f"{KALSHI}/markets/trades", params={"cursor": "garbage"}),
        400,
        "bad_request",
    )
    kalshi_error(await client.get(f"{KALSHI}/events", params={"limit": 201}), 400, "bad_request")
    body = kalshi_error(
        await client.get(f"{KALSHI}/markets", params={"min_close_ts": 1}), 400, "bad_request"
    )
    assert "min_close_ts" in body["error"]["message"]
    many = ",".join(f"T{i}" for i in range(101))
    kalshi_error(
        await client.get(f"{KALSHI}/markets/orderbooks", params={"tickers": many}),
        400,
        "bad_request",
    )
    kalshi_error(
        await client.get(f"{KALSHI}/markets/{B45}/orderbook", params={"depth": 101}),
        400,
        "bad_request",
    )
    kalshi_error(
        await client.get(f"{KALSHI}/markets/{B45}/orderbook", params={"at": "yesterday"}),
        400,
        "bad_request",
    )
    sticks = f"{KALSHI}/series/KXHIGHNY/markets/{B45}/candlesticks"
    start = int(T0.timestamp())
    for params in (
        {"start_ts": start, "end_ts": start + 60},
        {"start_ts": start, "end_ts": start + 60, "period_interval": 5},
        {"start_ts": start, "end_ts": start - 60, "period_interval": 1},
        {"start_ts": start, "end_ts": start + 60 * 10_001, "period_interval": 1},
    ):
        kalshi_error(await client.get(sticks, params=params), 400, "bad_request")
    # an endpoint kalshibook does not serve, or a wrong method: still Kalshi's shape
    body = kalshi_error(await client.get(f"{KALSHI}/portfolio/balance"), 404, "not_found")
    assert "/trade-api/v2/portfolio/balance" in body["error"]["message"]
    kalshi_error(await client.delete(f"{KALSHI}/markets"), 405, "method_not_allowed")
    # /v1 keeps problem+json
    r = await client.get("/v1/markets/NOPE")
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.get("/v1/nowhere")
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_rate_limited_is_kalshis_429(seeded_url: str) -> None:
    """Kalshi answers a rate-limited request with ``{"error": "too many requests"}``."""
    key = create_key(seeded_url, name="kalshi-429", credits=1000)
    app = create_app(api_settings(seeded_url, rate_limit_per_second=1.0))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        headers = {"KALSHI-ACCESS-KEY": key.key}
        statuses = [(await c.get(f"{KALSHI}/markets/{B45}", headers=headers)) for _ in range(10)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    body = limited[0].json()
    assert body["error"] == "too many requests"
    assert set(body) == {"error", "request_id"}
    assert "retry-after" in limited[0].headers


async def test_kalshi_access_key_and_per_ticker_credits(seeded_url: str) -> None:
    key = create_key(seeded_url, name="kalshi", credits=100)
    app = create_app(api_settings(seeded_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        missing = kalshi_error(await c.get(f"{KALSHI}/markets"), 401, "unauthorized")
        assert "KALSHI-ACCESS-KEY" in missing["error"]["message"]
        r = await c.get(f"{KALSHI}/markets", headers={"KALSHI-ACCESS-KEY": "not-a-key"})
        malformed = kalshi_error(r, 401, "unauthorized")
        assert malformed["error"]["message"].startswith("malformed KALSHI-ACCESS-KEY header")
        signed = {
            "KALSHI-ACCESS-KEY": key.key,
            "KALSHI-ACCESS-SIGNATURE": "c2lnbmF0dXJl",
            "KALSHI-ACCESS-TIMESTAMP": "1768000000000",
        }
        r = await c.get(f"{KALSHI}/markets/{B45}", headers=signed)
        assert r.status_code == 200, r.text
        assert r.headers["x-credits-remaining"] == "99"
        r = await c.get(
            f"{KALSHI}/markets/orderbooks",
            params={"tickers": f"{B45},{B47},{B45}"},
            headers={"Authorization": f"Bearer {key.key}"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-credits-remaining"] == str(99 - 2 * 5)  # 5 per distinct ticker
        r = await c.get(
            f"{KALSHI}/markets/candlesticks",
            params={
                "market_tickers": ",".join([B45, B47, RAIN]),
                "start_ts": int(T0.timestamp()),
                "end_ts": int(T0.timestamp()) + 3600,
                "period_interval": 60,
            },
            headers=signed,
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-credits-remaining"] == str(89 - 3 * 3)
        broke = create_key(seeded_url, name="kalshi, empty", credits=0)
        r = await c.get(f"{KALSHI}/markets", headers={"KALSHI-ACCESS-KEY": broke.key})
        kalshi_error(r, 402, "insufficient_credits")


async def test_a_failed_batch_costs_the_single_price(seeded_url: str) -> None:
    """A batch is charged per ticker before any ticker is read; one that fails (400, 404) gets
    back all but one ticker's price, costing the endpoint's single price (as on /v1); a key that
    cannot pay the whole batch gets a 402 before any read, and pays nothing."""
    key = create_key(seeded_url, name="kalshi batches", credits=1000)
    unknown = ",".join(f"NOPE{i}" for i in range(100))
    start = int(T0.timestamp())
    books, sticks = f"{KALSHI}/markets/orderbooks", f"{KALSHI}/markets/candlesticks"
    app = create_app(api_settings(seeded_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        c.headers["KALSHI-ACCESS-KEY"] = key.key
        failures = [
            (books, {"tickers": unknown}, 404, 5),  # the first ticker is unknown
            (books, {"tickers": f"{B45},NOPE"}, 404, 5),  # the second one
            (books, {"tickers": unknown, "depth": 500}, 400, 5),
            (sticks, {"market_tickers": unknown, "period_interval": 7}, 400, 3),
            (
                sticks,
                {"market_tickers": unknown, "start_ts": start, "end_ts": start + 3600,
                 "period_interval": 60},
                404,
                3,
            ),
        ]  # fmt: skip
        balance = 1000
        for path, params, status, price in failures:
            r = await c.get(path, params=params)
            kalshi_error(r, status, "not_found" if status == 404 else "bad_request")
            balance -= price
            assert r.headers["x-credits-remaining"] == str(balance), (params, r.headers)
            assert key_credits(seeded_url, key.prefix) == balance, params
        r = await c.get(books, params={"tickers": f"{B45},{B47}"})  # success: 5 per ticker
        assert r.status_code == 200, r.text
        assert r.headers["x-credits-remaining"] == str(balance - 10)

        # 13 credits: less than a 100-ticker batch: 402 before any read, nothing spent
        low = create_key(seeded_url, name="kalshi batches, 13 credits", credits=13)
        c.headers["KALSHI-ACCESS-KEY"] = low.key
        for params in ({"tickers": unknown, "depth": 500}, {"tickers": unknown}):
            r = await c.get(books, params=params)
            body = kalshi_error(r, 402, "insufficient_credits")
            assert "500" in body["error"]["message"], body
            assert key_credits(seeded_url, low.prefix) == 13
        r = await c.get(books, params={"tickers": f"{B45},{B47}"})  # 10: within its credits
        assert r.status_code == 200, r.text
        assert key_credits(seeded_url, low.prefix) == 3
