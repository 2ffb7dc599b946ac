"""The seed API (the kalshibook SDK's routes) on the seeded database: the same rows as /v1 in the
SDK's shapes, the book against the independent reference, its error shape and codes, credit
headers. The published SDK itself is driven against a live server in tests/e2e/test_seed_sdk.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from api_support import (
    B45,
    B47,
    RAIN,
    SEED,
    T0,
    api_settings,
    key_credits,
    reference_book,
    walk,
)
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.api.auth import create_key

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

D = Decimal


def cents(dollars: Any) -> Decimal:
    return D(str(dollars)) * 100


def rfc(ts: datetime) -> str:
    return ts.isoformat()


def seed_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert body["request_id"] == r.headers["x-request-id"]
    return body


async def seed_walk(client: Any, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        r = await client.post(path, json={**body, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["data"]) <= body["limit"]
        rows.extend(page["data"])
        if not page["has_more"]:
            return rows
        cursor = page["next_cursor"]
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("offset", [0, 45, 61, 100, 125, 150, 200])
async def test_orderbook_is_the_reference_book_in_cents(client: Any, offset: int) -> None:
    at = T0 + timedelta(seconds=offset, milliseconds=300)
    r = await client.post("/orderbook", json={"market_ticker": B45, "timestamp": rfc(at)})
    assert r.status_code == 200, r.text
    assert r.headers["x-credits-cost"] == "5"
    assert int(r.headers["x-credits-remaining"]) > 0
    body = r.json()
    ref = reference_book(SEED, SEED.snapshots, SEED.deltas, at)
    assert ref is not None
    snap, book, applied = ref
    assert datetime.fromisoformat(body["timestamp"]) == at
    assert datetime.fromisoformat(body["snapshot_basis"]) == snap.ts
    assert body["deltas_applied"] == len(applied)
    for side in ("yes", "no"):
        want = sorted(((p * 100, q) for p, q in book[side].items()), reverse=True)
        got = [(D(str(lv["price"])), D(str(lv["quantity"]))) for lv in body[side]]
        assert got == want
        # whole values are JSON integers, others the exact decimal
        for lv in body[side]:
            assert isinstance(lv["price"], int) == (D(str(lv["price"])) % 1 == 0)
    depth = await client.post(
        "/orderbook", json={"market_ticker": B45, "timestamp": rfc(at), "depth": 1}
    )
    assert depth.json()["yes"] == body["yes"][:1]


async def test_deltas_and_trades_are_v1_rows(client: Any) -> None:
    start, end = T0, T0 + timedelta(seconds=200)
    window = {"start_time": rfc(start), "end_time": rfc(end), "limit": 7}
    seed = await seed_walk(client, "/deltas", {"market_ticker": B45, **window})
    v1 = await walk(client, f"/v1/markets/{B45}/deltas", 7, start=rfc(start), end=rfc(end))
    assert len(seed) == len(v1) == len(SEED.deltas)
    for a, b in zip(seed, v1, strict=True):
        assert a["market_ticker"] == B45
        assert (a["ts"], a["seq"], a["side"]) == (b["ts"], b["seq"], b["side"])
        assert D(str(a["price_cents"])) == cents(b["price_dollars"])
        assert D(str(a["delta_amount"])) == D(b["delta_fp"])
    assert any(isinstance(a["delta_amount"], float) for a in seed)  # fractional sizes exist

    window = {"start_time": rfc(T0), "end_time": rfc(T0 + timedelta(hours=1)), "limit": 9}
    seed = await seed_walk(client, "/trades", {"market_ticker": B47, **window})
    v1 = await walk(client, f"/v1/markets/{B47}/trades", 9, start=window["start_time"])
    assert len(seed) == len(v1) == sum(t.ticker == B47 for t in SEED.trades)
    for a, b in zip(seed, v1, strict=True):
        assert a["trade_id"] == b["trade_id"]
        assert datetime.fromisoformat(a["ts"]) == datetime.fromisoformat(b["created_time"])
        assert D(str(a["yes_price"])) == cents(b["yes_price_dollars"])
        assert D(str(a["no_price"])) == cents(b["no_price_dollars"])
        assert D(str(a["count"])) == D(b["count_fp"])
        assert a["taker_side"] == b["taker_outcome_side"]


async def test_reference_and_settlements(client: Any) -> None:
    r = await client.get("/markets")
    assert r.headers["x-credits-cost"] == "1"
    markets = r.json()["data"]
    assert [m["ticker"] for m in markets] == sorted(SEED.markets)
    by = {m["ticker"]: m for m in markets}
    assert by[B45]["category"] == "Climate and Weather"  # the series' (the event has none)
    assert by[B45]["status"] == "active"

    detail = (await client.get(f"/markets/{B45}")).json()["data"]
    assert detail["snapshot_count"] == len(SEED.snapshots)
    assert detail["delta_count"] == len(SEED.deltas)
    b45_trades = [t.ts for t in SEED.trades if t.ticker == B45]
    book_ts = [s.ts for s in SEED.snapshots] + [d.ts for d in SEED.deltas]
    assert datetime.fromisoformat(detail["first_data_at"]) == min(b45_trades + book_ts)
    assert datetime.fromisoformat(detail["last_data_at"]) == max(b45_trades + book_ts)
    assert detail["strike_price"] == 44
    assert detail["metadata"]["ticker"] == B45

    events = (await client.get("/events")).json()["data"]
    assert [e["event_ticker"] for e in events] == sorted(SEED.events)
    ev = {e["event_ticker"]: e for e in events}
    assert ev["KXHIGHNY-26JAN15"]["market_count"] == 2
    assert ev["KXHIGHNY-26JAN15"]["status"] == "open"  # active beats finalized
    assert ev["KXRAIN-26JAN"]["status"] == "closed"
    assert ev["KXHIGHNY-26JAN16"]["status"] == "unopened"
    one = (await client.get("/events/KXHIGHNY-26JAN15")).json()["data"]
    assert [m["ticker"] for m in one["markets"]] == [B45, B47]
    filtered = (await client.get("/events", params={"status": "closed"})).json()["data"]
    assert [e["event_ticker"] for e in filtered] == ["KXRAIN-26JAN"]

    seed = (await client.get("/settlements")).json()["data"]
    v1 = await walk(client, "/v1/settlements", 1000)
    assert [s["market_ticker"] for s in seed] == [s["ticker"] for s in v1]
    yes = (await client.get("/settlements", params={"result": "yes"})).json()["data"]
    assert {s["market_ticker"] for s in yes} == {
        t for t, (res, *_) in SEED.settlements.items() if res == "yes"
    }
    rain = (await client.get(f"/settlements/{RAIN}")).json()["data"]
    assert rain["settlement_value"] == 100
    assert rain["result"] == "yes"


async def test_candles_are_v1_trade_periods(client: Any) -> None:
    params = {"start_time": rfc(T0), "end_time": rfc(T0 + timedelta(hours=2)), "interval": "1m"}
    r = await client.get(f"/candles/{B45}", params=params)
    assert r.headers["x-credits-cost"] == "3"
    seed = r.json()["data"]
    v1 = (
        await client.get(
            f"/v1/markets/{B45}/candles",
            params={"start": params["start_time"], "end": params["end_time"], "interval": "1m"},
        )
    ).json()["data"]
    traded = [c for c in v1 if c["trade_count"] > 0]
    assert len(seed) == len(traded) > 0
    for a, b in zip(seed, traded, strict=True):
        assert a["bucket"] == b["start"]
        for f in ("open", "high", "low", "close"):
            assert D(str(a[f])) == cents(b[f])
        assert D(str(a["volume"])) == D(b["volume"])
        assert a["trade_count"] == b["trade_count"]


async def test_errors_in_the_seed_shape(client: Any, seeded_url: str) -> None:
    at = rfc(T0 + timedelta(seconds=10))
    seed_error(
        await client.post("/orderbook", json={"market_ticker": "NOPE", "timestamp": at}),
        404,
        "market_not_found",
    )
    early = rfc(T0 - timedelta(seconds=1))
    seed_error(
        await client.post("/orderbook", json={"market_ticker": B45, "timestamp": early}),
        404,
        "no_data_available",
    )
    seed_error(
        await client.post("/orderbook", json={"market_ticker": B45, "timestamp": "yesterday"}),
        422,
        "invalid_timestamp",
    )
    seed_error(await client.post("/orderbook", json={"timestamp": at}), 422, "validation_error")
    seed_error(
        await client.post("/orderbook", json={"market_ticker": "A\u0000B", "timestamp": at}),
        422,
        "validation_error",
    )
    bad_range = {"market_ticker": B45, "start_time": at, "end_time": rfc(T0), "limit": 5}
    seed_error(await client.post("/trades", json=bad_range), 422, "invalid_timestamp")
    big = {**bad_range, "end_time": rfc(T0 + timedelta(days=1)), "limit": 10**6}
    seed_error(await client.post("/deltas", json=big), 422, "validation_error")
    seed_error(await client.get("/markets/NOPE"), 404, "market_not_found")
    seed_error(await client.get("/events/NOPE"), 404, "event_not_found")
    seed_error(await client.get(f"/settlements/{B45}"), 404, "settlement_not_found")
    seed_error(
        await client.get("/candles/NOPE", params={"start_time": at}), 404, "market_not_found"
    )
    seed_error(
        await client.get(f"/candles/{B45}", params={"start_time": at, "interval": "7m"}),
        422,
        "validation_error",
    )

    del client.headers["Authorization"]
    body = seed_error(await client.get("/markets"), 401, "invalid_api_key")
    assert "kb-" in body["error"]["message"]
    v1 = await client.get("/v1/markets")  # /v1 keeps problem+json
    assert v1.status_code == 401
    assert v1.headers["content-type"].startswith("application/problem+json")

    poor = create_key(seeded_url, name="poor", credits=6)
    client.headers["Authorization"] = f"Bearer {poor.key}"
    ok = await client.post("/orderbook", json={"market_ticker": B45, "timestamp": at})
    assert ok.headers["x-credits-remaining"] == "1"
    out = await client.post("/orderbook", json={"market_ticker": B45, "timestamp": at})
    seed_error(out, 429, "credits_exhausted")
    assert "retry-after" not in out.headers  # not retryable: the SDK raises at once
    assert out.headers["x-credits-remaining"] == "1"


async def test_every_charged_response_says_its_cost(seeded_url: str) -> None:
    """X-Credits-Cost and X-Credits-Remaining on every charged response of the seed's routes,
    errors included (a 404 and a 400 are charged); none on a refused request (not charged)."""
    issued = create_key(seeded_url, name="costs", credits=100)
    app = create_app(api_settings(seeded_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        r = await c.get("/markets")
        seed_error(r, 401, "invalid_api_key")
        assert "x-credits-cost" not in r.headers
        c.headers["Authorization"] = f"Bearer {issued.key}"
        at = rfc(T0 + timedelta(seconds=10))
        calls = [
            (c.get("/markets/NOPE"), 404, "1", "99"),
            (c.post("/orderbook", content=b"{bad"), 400, "5", "94"),
            (c.post("/orderbook", json={"market_ticker": B45, "timestamp": "x"}), 422, "5", "89"),
            (c.get("/markets", params={"limit": 1}), 200, "1", "88"),
            (c.post("/orderbook", json={"market_ticker": B45, "timestamp": at}), 200, "5", "83"),
        ]
        for call, status, cost, remaining in calls:
            r = await call
            assert r.status_code == status, r.text
            assert (r.headers.get("x-credits-cost"), r.headers["x-credits-remaining"]) == (
                cost,
                remaining,
            ), r.request.url
    assert key_credits(seeded_url, issued.prefix) == 83


async def test_rate_limit_has_retry_after(seeded_url: str, module_key: str) -> None:
    app = create_app(api_settings(seeded_url, rate_limit_per_second=0.5))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {module_key}"
        assert (await c.get("/markets")).status_code == 200
        r = await c.get("/markets")
        seed_error(r, 429, "rate_limit_exceeded")
        assert int(r.headers["retry-after"]) >= 1


async def test_keys_of_both_forms_work_on_both_surfaces(client: Any, seeded_url: str) -> None:
    issued = create_key(seeded_url, name="new form", credits=100)
    assert issued.key.startswith(f"kb-{issued.prefix}-")  # what the SDK accepts
    secret = issued.key[len("kb-") + len(issued.prefix) + 1 :]
    old_form = f"kb_{issued.prefix}_{secret}"  # how keys were written before
    for key in (issued.key, old_form):
        client.headers["Authorization"] = f"Bearer {key}"
        assert (await client.get("/markets")).status_code == 200
        assert (await client.get("/v1/markets")).status_code == 200
    client.headers["Authorization"] = f"Bearer kb-{issued.prefix}_{secret}"  # mixed: not a key
    seed_error(await client.get("/markets"), 401, "invalid_api_key")
