"""Trades and settlements: ordering, filters, pagination completeness (also under concurrent
inserts), exact number formatting, bad input."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from api_support import (
    B45,
    B47,
    J16,
    RAIN,
    SEED,
    T0,
    api_settings,
    assert_problem,
    exchange_order,
    walk,
)
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.api.auth import create_key

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]


def rfc(ts) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def expected_trades(tickers=None, start=None, end=None) -> list[str]:
    rows = [
        t
        for t in SEED.trades
        if (tickers is None or t.ticker in tickers)
        and (start is None or t.ts >= start)
        and (end is None or t.ts < end)
    ]
    return [str(t.trade_id) for t in exchange_order(rows)]


async def test_trades_walk_every_row_once_in_order(client) -> None:
    rows = await walk(client, "/v1/trades", limit=7)
    assert [r["trade_id"] for r in rows] == expected_trades()
    assert len({r["trade_id"] for r in rows}) == len(SEED.trades)
    by_id = {str(t.trade_id): t for t in SEED.trades}
    for r in rows[:50]:
        t = by_id[r["trade_id"]]
        assert r["ticker"] == t.ticker
        assert r["yes_price_dollars"] == f"{t.yes_price:.4f}"
        assert r["no_price_dollars"] == f"{1 - t.yes_price:.4f}"
        assert r["count_fp"] == f"{t.count:.2f}"
        assert r["created_time"].endswith("Z")
        assert datetime.fromisoformat(r["created_time"]) == t.ts


async def test_trades_filters(client) -> None:
    start, end = T0 + timedelta(minutes=3), T0 + timedelta(minutes=12)
    cases = [
        ({"tickers": B45}, expected_trades({B45})),
        ({"tickers": f"{B45},{RAIN}"}, expected_trades({B45, RAIN})),
        ({"event_ticker": "KXHIGHNY-26JAN15"}, expected_trades({B45, B47})),
        ({"series_ticker": "KXHIGHNY"}, expected_trades({B45, B47, J16})),
        ({"series_ticker": "KXRAIN"}, expected_trades({RAIN})),
        ({"start": rfc(start), "end": rfc(end)}, expected_trades(start=start, end=end)),
        (
            {"start": str(int(start.timestamp())), "end": str(int(end.timestamp()))},
            expected_trades(start=start, end=end),
        ),
        (
            {"tickers": B47, "start": rfc(start)},
            expected_trades({B47}, start=start),
        ),
        ({"event_ticker": "NO-SUCH-EVENT"}, []),
    ]
    for params, expected in cases:
        rows = await walk(client, "/v1/trades", limit=13, **params)
        assert [r["trade_id"] for r in rows] == expected, params
    # the per-market route
    rows = await walk(client, f"/v1/markets/{B47}/trades", limit=9, start=rfc(start))
    assert [r["trade_id"] for r in rows] == expected_trades({B47}, start=start)


async def test_trades_bad_input(client) -> None:
    path = "/v1/trades"
    assert_problem(await client.get(path, params={"start": "yesterday"}), 400, "start")
    assert_problem(await client.get(path, params={"end": "2026-13-01T00:00:00Z"}), 400, "end")
    assert_problem(await client.get(path, params={"start": "2026-01-15T00:00:00"}), 400, "start")
    assert_problem(
        await client.get(path, params={"start": rfc(T0), "end": rfc(T0 - timedelta(1))}),
        400,
        "end",
    )
    assert_problem(await client.get(path, params={"start": rfc(T0), "end": rfc(T0)}), 400, "end")
    assert_problem(await client.get(path, params={"start": "1e400"}), 400, "start")
    assert_problem(await client.get(path, params={"limit": "1.5"}), 400, "limit")
    assert_problem(await client.get(path, params={"limit": 100_000}), 400, "limit")
    assert_problem(await client.get(path, params={"tickers": f"{B45},,{B47}"}), 400, "tickers")
    assert_problem(
        await client.get(path, params={"tickers": ",".join(f"A{i}" for i in range(101))}),
        400,
        "tickers",
    )
    assert_problem(await client.get(path, params={"cursor": "AAAA"}), 400, "cursor")
    market = f"/v1/markets/{B45}/trades"
    assert_problem(await client.get("/v1/markets/NOPE/trades"), 404, "ticker")
    assert_problem(await client.get(market, params={"start": "x"}), 400, "start")
    assert_problem(await client.get(market, params={"limit": 0}), 400, "limit")
    # a trades cursor is not a settlements cursor and vice versa
    trades_cursor = (await client.get(path, params={"limit": 1})).json()["next_cursor"]
    assert_problem(
        await client.get("/v1/settlements", params={"cursor": trades_cursor}), 400, "cursor"
    )
    # a known market with no trades in the window is an empty page, not a 404
    r = await client.get(market, params={"start": "2030-01-01T00:00:00Z"})
    assert r.status_code == 200
    assert r.json()["data"] == []


async def test_trades_refuse_what_they_would_ignore(client) -> None:
    """Kalshi's singular `ticker` is not /v1's `tickers`: a 400 naming it (and the parameters the
    route takes), not every market's trades; a parameter given twice is a 400, not the last
    value; repeated `tickers` are merged like a comma list (as on /trade-api/v2)."""
    path = "/v1/trades"
    body = assert_problem(await client.get(path, params={"ticker": B45, "limit": 1}), 400, "ticker")
    assert "did you mean 'tickers'" in body["detail"]
    for name in ("tickers", "event_ticker", "series_ticker", "start", "end", "limit", "cursor"):
        assert name in body["detail"]
    market = f"/v1/markets/{B45}/trades"
    assert_problem(await client.get(market, params={"ticker": B47}), 400, "ticker")  # path only
    assert_problem(await client.get(market, params={"tickers": B47}), 400, "tickers")
    body = assert_problem(await client.get(path, params=[("limit", 1), ("limit", 2)]), 400, "limit")
    assert "2 times" in body["detail"]
    assert_problem(
        await client.get(path, params=[("tickers", B45), ("start", rfc(T0)), ("start", rfc(T0))]),
        400,
        "start",
    )
    repeated = await walk(client, path, limit=7, tickers=[B45, f"{RAIN},{B45}"])
    assert [r["trade_id"] for r in repeated] == expected_trades({B45, RAIN})
    assert_problem(
        await client.get(path, params=[("tickers", B45), ("tickers", "")]), 400, "tickers"
    )
    too_many = [("tickers", ",".join(f"T{i}-{j}" for i in range(50))) for j in range(3)]
    assert_problem(await client.get(path, params=too_many), 400, "tickers")
    # the limit counts distinct tickers: one ticker given 101 times is one ticker
    r = await client.get(path, params=[("tickers", B45)] * 101 + [("limit", 1)])
    assert r.status_code == 200, r.text


async def test_trades_walk_with_concurrent_inserts(seeded_rw_url: str) -> None:
    """Rows inserted between pages (before and after the cursor) never cause a skip or a repeat
    of the rows that existed when the walk started."""
    key = create_key(seeded_rw_url, name="walker", credits=10**6).key
    app = create_app(api_settings(seeded_rw_url))
    original = expected_trades({B45, B47})
    rng = random.Random(7)
    seen: list[str] = []
    inserted: set[str] = set()
    async with AsyncTestClient(app=app) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        cursor = None
        with psycopg.connect(seeded_rw_url, autocommit=True) as writer:
            for _ in range(1000):
                params = {"event_ticker": "KXHIGHNY-26JAN15", "limit": 11}
                if cursor:
                    params["cursor"] = cursor
                body = (await client.get("/v1/trades", params=params)).json()
                seen.extend(r["trade_id"] for r in body["data"])
                if not body["has_more"]:
                    break
                cursor = body["next_cursor"]
                for _ in range(3):  # new trades anywhere in time, some sharing timestamps
                    tid = uuid.uuid4()
                    offset = timedelta(seconds=30 * rng.randint(0, 80))
                    writer.execute(
                        "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price,"
                        " no_price, count, source, received_at)"
                        " VALUES (%s, %s, %s, 0.5, 0.5, 1, 'rest', now())",
                        (T0 + offset, tid, rng.choice([B45, B47])),
                    )
                    inserted.add(str(tid))
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert [t for t in seen if t not in inserted] == original, "an original row was skipped"


def expected_settlements(event=None, series=None, result=None, start=None, end=None):
    rows = []
    for ticker, (res, settled, ev, se) in SEED.settlements.items():
        if event is not None and ev != event:
            continue
        if series is not None and se != series:
            continue
        if result is not None and res != result:
            continue
        if start is not None and (settled is None or settled < start):
            continue
        if end is not None and (settled is None or settled >= end):
            continue
        rows.append((settled is None, settled or T0, ticker))
    return [t for *_, t in sorted(rows)]


async def test_settlements_walk_filters_and_detail(client) -> None:
    rows = await walk(client, "/v1/settlements", limit=4)
    assert [r["ticker"] for r in rows] == expected_settlements()
    start, end = T0 + timedelta(hours=1), T0 + timedelta(days=1, seconds=1)
    for params, expected in [
        ({"result": "yes"}, expected_settlements(result="yes")),
        ({"result": "void"}, expected_settlements(result="void")),
        ({"event_ticker": "KXHIGHNY-26JAN16"}, expected_settlements(event="KXHIGHNY-26JAN16")),
        ({"series_ticker": "KXRAIN"}, expected_settlements(series="KXRAIN")),
        ({"start": rfc(start), "end": rfc(end)}, expected_settlements(start=start, end=end)),
        ({"start": rfc(start), "result": "no"}, expected_settlements(result="no", start=start)),
    ]:
        got = await walk(client, "/v1/settlements", limit=2, **params)
        assert [r["ticker"] for r in got] == expected, params

    r = await client.get(f"/v1/settlements/{RAIN}")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["result"] == "yes"
    assert data["settlement_value_dollars"] == "1.0000"
    assert data["settled_at"] == "2026-01-17T12:00:00Z"
    assert_problem(await client.get(f"/v1/settlements/{B45}"), 404, "ticker")
    assert_problem(await client.get("/v1/settlements?result=maybe"), 400, "result")
    assert_problem(await client.get("/v1/settlements?start=soon"), 400, "start")
    assert_problem(await client.get("/v1/settlements?limit=abc"), 400, "limit")
    assert_problem(
        await client.get("/v1/settlements", params={"start": rfc(end), "end": rfc(start)}),
        400,
        "end",
    )
    assert Decimal(data["settlement_value_dollars"]) == 1
