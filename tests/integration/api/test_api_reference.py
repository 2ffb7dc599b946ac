"""Series, events, markets: contents, filters, pagination, 404s and bad input (real database)."""

from __future__ import annotations

import base64
import re

import pytest
from api_support import B45, B47, J16, ORPHAN, RAIN, SEED, assert_problem, walk

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]


async def test_series_walk_and_detail(client) -> None:
    rows = await walk(client, "/v1/series", limit=5)
    assert [r["ticker"] for r in rows] == sorted(SEED.series)
    assert rows[0]["fee_multiplier"] == "1.5"
    only = await walk(client, "/v1/series", limit=50, category="Other")
    assert {r["ticker"] for r in only} == {s for s in SEED.series if not s.startswith("KX")}

    r = await client.get("/v1/series/KXHIGHNY")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"data", "next_cursor", "has_more", "request_id", "response_time"}
    assert body["data"]["ticker"] == "KXHIGHNY"
    assert [e["event_ticker"] for e in body["data"]["events"]] == [
        "KXHIGHNY-26JAN15",
        "KXHIGHNY-26JAN16",
    ]
    assert_problem(await client.get("/v1/series/NOPE"), 404, "ticker")


async def test_events_filters_and_detail(client) -> None:
    rows = await walk(client, "/v1/events", limit=2)
    assert [r["event_ticker"] for r in rows] == sorted(SEED.events)
    rows = await walk(client, "/v1/events", limit=2, series_ticker="KXHIGHNY")
    assert [r["event_ticker"] for r in rows] == ["KXHIGHNY-26JAN15", "KXHIGHNY-26JAN16"]
    # status: events with a market in that status (open -> active)
    rows = await walk(client, "/v1/events", limit=10, status="open")
    assert [r["event_ticker"] for r in rows] == ["KXHIGHNY-26JAN15"]
    rows = await walk(client, "/v1/events", limit=10, status="settled")
    assert [r["event_ticker"] for r in rows] == ["KXHIGHNY-26JAN15"]
    rows = await walk(client, "/v1/events", limit=10, status="paused")
    assert [r["event_ticker"] for r in rows] == ["ORPHAN-EV"]

    r = await client.get("/v1/events/KXHIGHNY-26JAN15")
    assert r.status_code == 200
    assert [m["ticker"] for m in r.json()["data"]["markets"]] == [B45, B47]
    assert_problem(await client.get("/v1/events/NOPE-EV"), 404, "event_ticker")
    assert_problem(await client.get("/v1/events?status=bogus"), 400, "status")


async def test_markets_filters_and_detail(client) -> None:
    rows = await walk(client, "/v1/markets", limit=2)
    assert [r["ticker"] for r in rows] == sorted(SEED.markets)
    by = {
        "event_ticker": ("KXHIGHNY-26JAN15", [B45, B47]),
        "series_ticker": ("KXHIGHNY", [B45, B47, J16]),  # J16 only through its event's series
    }
    for param, (value, expected) in by.items():
        rows = await walk(client, "/v1/markets", limit=2, **{param: value})
        assert [r["ticker"] for r in rows] == expected, param
    for status, expected in {
        "open": [B45],
        "active": [B45],
        "settled": [B47],
        "finalized": [B47],
        "unopened": [J16],
        "closed": [RAIN],
        "paused": [ORPHAN],
        "determined": [],
    }.items():
        rows = await walk(client, "/v1/markets", limit=3, status=status)
        assert [r["ticker"] for r in rows] == expected, status
    rows = await walk(client, "/v1/markets", limit=3, series_ticker="KXHIGHNY", status="open")
    assert [r["ticker"] for r in rows] == [B45]

    r = await client.get(f"/v1/markets/{B45}")
    assert r.status_code == 200
    m = r.json()["data"]
    assert m["ticker"] == B45
    assert m["status"] == "active"
    assert m["floor_strike"] == "44"
    assert m["cap_strike"] == "45.5"
    assert m["price_ranges"] == [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}]
    assert_problem(await client.get("/v1/markets/NO-SUCH-MARKET"), 404, "ticker")


@pytest.mark.parametrize("path", ["/v1/series", "/v1/events", "/v1/markets"])
async def test_bad_input_on_lists(client, path: str) -> None:
    assert_problem(await client.get(path, params={"limit": "abc"}), 400, "limit")
    assert_problem(await client.get(path, params={"limit": 0}), 400, "limit")
    assert_problem(await client.get(path, params={"limit": 1001}), 400, "limit")
    assert_problem(await client.get(path, params={"limit": -5}), 400, "limit")
    assert_problem(await client.get(path, params={"cursor": "not-a-cursor"}), 400, "cursor")
    assert_problem(await client.get(path, params={"cursor": ""}), 400, "cursor")
    # a real cursor, tampered
    r = await client.get(path, params={"limit": 1})
    cursor = r.json()["next_cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[len(raw) // 2] ^= 0x01
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert_problem(await client.get(path, params={"cursor": tampered}), 400, "cursor")
    # a cursor of another endpoint
    other = "/v1/series" if path != "/v1/series" else "/v1/events"
    foreign = (await client.get(other, params={"limit": 1})).json()["next_cursor"]
    assert_problem(await client.get(path, params={"cursor": foreign}), 400, "cursor")
    if path != "/v1/series":
        assert_problem(await client.get(path, params={"status": "bogus"}), 400, "status")


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/v1/series/KX%00BAD", {}, "ticker"),
        ("/v1/events/KX%00BAD", {}, "event_ticker"),
        ("/v1/markets/KX%00BAD", {}, "ticker"),
        ("/v1/markets", {"event_ticker": "KX\x00BAD"}, "event_ticker"),
        ("/v1/events", {"series_ticker": "KX\x01"}, "series_ticker"),
        ("/v1/series", {"category": "Eco\x00nomics"}, "category"),
        ("/v1/trades", {"tickers": "A,B\x00"}, "tickers"),
        ("/v1/markets/KX%00BAD/orderbook", {"at": "2026-03-01T00:00:00Z"}, "ticker"),
        ("/v1/markets/KX%00BAD/deltas", {}, "ticker"),
        ("/v1/settlements/KX%00BAD", {}, "ticker"),
        ("/v1/markets/KX%00BAD/trades", {}, "ticker"),
    ],
)
async def test_control_characters_are_bad_input_on_every_endpoint(
    client, path: str, params: dict[str, str], parameter: str
) -> None:
    """PostgreSQL text cannot hold NUL: a NUL (or any control character) in a parameter is a
    400 naming it, never a 500."""
    assert_problem(await client.get(path, params=params), 400, parameter)


def v1_routes(client) -> list[tuple[str, set[str]]]:
    """Every /v1 route as ``(a concrete path, the query parameters its schema lists)``."""
    values = {"ticker": B45, "event_ticker": "KXHIGHNY-26JAN15", "table": "trades"}
    schema = client.app.openapi_schema.to_schema()
    routes = []
    for template, item in schema["paths"].items():
        if template.startswith("/v1/"):
            path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
            params = item["get"].get("parameters", [])
            routes.append((path, {p["name"] for p in params if p["in"] == "query"}))
    return routes


async def test_every_v1_route_takes_only_its_own_query_parameters(client) -> None:
    """A query parameter a /v1 route does not take is a 400 naming it and listing those it
    takes (not silently ignored); one given twice is a 400 naming it (not its last value)."""
    routes = v1_routes(client)
    assert len(routes) >= 17
    for path, taken in routes:
        body = assert_problem(await client.get(path, params={"bogus": "1"}), 400, "bogus")
        assert all(name in body["detail"] for name in taken), (path, body)
        if "limit" in taken:
            twice = await client.get(path, params=[("limit", "1"), ("limit", "2")])
            assert_problem(twice, 400, "limit")
    for path, params, parameter in [
        ("/v1/events", {"category": "Nope"}, "category"),
        ("/v1/markets", {"tickers": f"{B45},{B47}"}, "tickers"),
        (f"/v1/markets/{B45}/orderbook", {"ticker": B47}, "ticker"),
        ("/v1/status", {"verbose": "true"}, "verbose"),
        ("/v1/series", {"Limit": "1"}, "Limit"),  # names are case-sensitive
    ]:
        assert_problem(await client.get(path, params=params), 400, parameter)
    body = assert_problem(
        await client.get(f"/v1/markets/{B45}", params={"ticker": B47}), 400, "ticker"
    )
    assert "takes no query parameters" in body["detail"]


async def test_other_routes_keep_their_own_query_rules(client) -> None:
    """The check is /v1's: the documents, ops, the seed's and Kalshi's routes are unchanged."""
    for path in (
        "/schema/openapi.json",
        "/schema/swagger",
        "/health",
        "/metrics",
        "/markets",
        "/trade-api/v2/markets",
    ):
        r = await client.get(path, params={"bogus": "1", "limit": "3"})
        assert r.status_code == 200, (path, r.text)
    for query in ("limit=1&", "&limit=1", ""):  # empty pairs are no parameters
        r = await client.get(f"/v1/markets?{query}")
        assert r.status_code == 200, (query, r.text)


async def test_series_and_event_children_are_paginated(client) -> None:
    """``/v1/series/{t}`` and ``/v1/events/{t}`` embed one page of children (issue 16, point 2):
    walking ``next_cursor`` with ``limit=1`` yields every child once, in order, the parent each
    time; a cursor of one parent's children is refused by the other endpoint."""
    seed = SEED
    cases = [
        (
            "/v1/series/KXHIGHNY",
            "events",
            "event_ticker",
            sorted(e for e, series in seed.events.items() if series == "KXHIGHNY"),
        ),
        (
            "/v1/events/KXHIGHNY-26JAN15",
            "markets",
            "ticker",
            sorted(t for t, (e, _, _) in seed.markets.items() if e == "KXHIGHNY-26JAN15"),
        ),
    ]
    cursors = {}
    for path, children, key, expected in cases:
        assert len(expected) >= 2
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            body = (await client.get(path, params=params)).json()
            assert len(body["data"][children]) <= 1
            seen += [c[key] for c in body["data"][children]]
            assert body["has_more"] == (body["next_cursor"] is not None)
            if not body["has_more"]:
                break
            cursor = cursors[path] = body["next_cursor"]
        assert seen == expected
        full = (await client.get(path)).json()
        assert [c[key] for c in full["data"][children]] == expected
        assert full["has_more"] is False
        assert_problem(await client.get(path, params={"limit": 0}), 400, "limit")
    (series_path, *_), (event_path, *_) = cases
    assert_problem(
        await client.get(event_path, params={"cursor": cursors[series_path]}), 400, "cursor"
    )
