"""GET /v1/markets/{ticker}/candles through the real app (create_app + AsyncTestClient), real DB."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.settings import ApiSettings, CoreSettings, Settings
from kalshibook.storage.api_keys import create_key
from kalshibook.storage.candles import refresh_candles

pytestmark = [pytest.mark.db, pytest.mark.both_editions]

TICKER = "KXCANDLE-26MAR08-T50"
T0 = datetime(2026, 3, 8, 14, 0, tzinfo=UTC)  # the US spring-forward day (a 23-hour NY day)

INSERT_TRADE = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,
                           taker_outcome_side, taker_book_side, source, received_at)
VALUES (%s, %s, %s, %s, 1 - %s, %s, %s, 'bid', 'ws', now())
"""


def trade(
    conn: psycopg.Connection,
    ts: datetime,
    price: str,
    count: str,
    side: str = "yes",
    ticker: str = TICKER,
) -> None:
    p, n = Decimal(price), Decimal(count)
    conn.execute(INSERT_TRADE, (ts, uuid.uuid4(), ticker, p, p, n, side))


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[tuple[AsyncTestClient[Any], str]]:
    """A client with a 1,000-credit key, and the database URL."""
    key = create_key(db_url, name="candles tests", credits=1000).key
    settings = Settings(
        core=CoreSettings(database_url=db_url),
        api=ApiSettings(
            max_candles=10_000,
            rate_limit_per_second=1_000_000.0,
            cursor_secret="candles-tests-cursor-secret-0123456789",
        ),
    )
    async with AsyncTestClient(app=create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, db_url


async def test_a_committed_trade_is_visible_at_once(api: tuple[AsyncTestClient[Any], str]) -> None:
    client, url = api
    with psycopg.connect(url, autocommit=True) as conn:
        trade(conn, T0 + timedelta(minutes=5, seconds=1), "0.4200", "10.00", "yes")
        trade(conn, T0 + timedelta(minutes=30), "0.4500", "2.50", "no")
        trade(conn, T0 + timedelta(minutes=59, seconds=59), "0.4400", "7.50", "yes")
        conn.execute(
            "INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_ask) "
            "VALUES (%s, %s, now(), 0.41, 0.43), (%s, %s, now(), 0.43, 0.46)",
            (T0 - timedelta(hours=1), TICKER, T0 + timedelta(minutes=10), TICKER),
        )
        conn.execute(
            "INSERT INTO market.market_stats (ts, market_ticker, received_at, open_interest) "
            "VALUES (%s, %s, now(), 1520)",
            (T0 + timedelta(minutes=1), TICKER),
        )
    params = {"interval": "1h", "start": "2026-03-08T14:00:00Z", "end": "2026-03-08T16:00:00Z"}
    r = await client.get(f"/v1/markets/{TICKER}/candles", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["X-Credits-Remaining"] == "997"  # 3 credits
    body = r.json()
    assert set(body) == {
        "data",
        "next_cursor",
        "has_more",
        "request_id",
        "response_time",
        "ticker",
        "interval",
    }
    assert (body["ticker"], body["interval"], body["next_cursor"], body["has_more"]) == (
        TICKER,
        "1h",
        None,
        False,
    )
    assert body["request_id"] == r.headers["X-Request-ID"]
    [c] = body["data"]  # 15:00 has no row at all: omitted without fill
    vwap = "0.43125"  # (0.42 * 10 + 0.45 * 2.5 + 0.44 * 7.5) / 20, exact
    assert c == {
        "start": "2026-03-08T14:00:00Z",
        "end": "2026-03-08T15:00:00Z",
        "open": "0.4200",
        "high": "0.4500",
        "low": "0.4200",
        "close": "0.4400",
        "volume": "20.00",
        "vwap": vwap,
        "trade_count": 3,
        "taker_yes_volume": "17.50",
        "taker_no_volume": "2.50",
        "previous": None,
        "yes_bid_open": "0.4100",
        "yes_bid_high": "0.4300",
        "yes_bid_low": "0.4100",
        "yes_bid_close": "0.4300",
        "yes_ask_open": "0.4300",
        "yes_ask_high": "0.4600",
        "yes_ask_low": "0.4300",
        "yes_ask_close": "0.4600",
        "open_interest": "1520.00",
        "end_period_ts": int(datetime(2026, 3, 8, 15, tzinfo=UTC).timestamp()),
        "yes_bid": {
            "open_dollars": "0.4100",
            "low_dollars": "0.4100",
            "high_dollars": "0.4300",
            "close_dollars": "0.4300",
        },
        "yes_ask": {
            "open_dollars": "0.4300",
            "low_dollars": "0.4300",
            "high_dollars": "0.4600",
            "close_dollars": "0.4600",
        },
        "price": {
            "open_dollars": "0.4200",
            "low_dollars": "0.4200",
            "high_dollars": "0.4500",
            "close_dollars": "0.4400",
            "mean_dollars": vwap,
            "previous_dollars": None,
            "min_dollars": None,
            "max_dollars": None,
        },
        "volume_fp": "20.00",
        "open_interest_fp": "1520.00",
    }

    # a later trade shows up on the next request, with the carried state in the filled hour
    with psycopg.connect(url, autocommit=True) as conn:
        trade(conn, T0 + timedelta(hours=1, minutes=1), "0.5000", "1.00")
    r = await client.get(
        f"/v1/markets/{TICKER}/candles", params={**params, "interval": "60", "fill": "true"}
    )
    assert r.status_code == 200, r.text
    second = r.json()["data"][1]
    assert (second["open"], second["previous"], second["yes_bid"]["open_dollars"]) == (
        "0.5000",
        "0.4400",
        "0.4300",
    )


async def test_late_trades_are_reflected(api: tuple[AsyncTestClient[Any], str]) -> None:
    client, url = api
    with psycopg.connect(url, autocommit=True) as conn:
        trade(conn, T0, "0.3000", "1.00")
    params = {"interval": "1d", "start": "2026-02-20T00:00:00Z", "end": "2026-03-10T00:00:00Z"}
    r = await client.get(f"/v1/markets/{TICKER}/candles", params=params)
    assert [c["start"] for c in r.json()["data"]] == ["2026-03-08T05:00:00Z"]
    assert r.json()["data"][0]["end"] == "2026-03-09T04:00:00Z"  # a 23-hour New York day

    # a backfilled trade two weeks older than the newest one (older than any refresh window)
    late = datetime(2026, 2, 22, 3, 30, tzinfo=UTC)  # still 2026-02-21 in New York
    with psycopg.connect(url, autocommit=True) as conn:
        trade(conn, late, "0.2000", "4.00")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as aconn:
        refreshed = await refresh_candles(aconn, late, late + timedelta(seconds=1))
    r = await client.get(f"/v1/markets/{TICKER}/candles", params=params)
    data = r.json()["data"]
    assert [c["start"] for c in data] == ["2026-02-21T05:00:00Z", "2026-03-08T05:00:00Z"]
    assert (data[0]["close"], data[0]["volume_fp"]) == ("0.2000", "4.00")
    assert data[1]["previous"] == "0.2000"
    with psycopg.connect(url) as conn:
        license_ = conn.execute("SHOW timescaledb.license").fetchone()
    if license_ == ("apache",):
        assert refreshed == []  # plain views: nothing to refresh, already current


async def test_fill_returns_every_period_up_to_now(api: tuple[AsyncTestClient[Any], str]) -> None:
    client, url = api
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        trade(conn, now - timedelta(minutes=3), "0.6100", "1.00")
    start = (now - timedelta(minutes=5)).isoformat()
    end = (now + timedelta(hours=2)).isoformat()  # the future is never invented
    r = await client.get(
        f"/v1/markets/{TICKER}/candles",
        params={"interval": "1m", "start": start, "end": end, "fill": "true"},
    )
    data = r.json()["data"]
    assert len(data) == 6  # 5 whole minutes and the one in progress
    assert [c["volume_fp"] for c in data].count("1.00") == 1
    assert all(c["previous"] == "0.6100" for c in data[3:])
    r = await client.get(f"/v1/markets/{TICKER}/candles", params={"interval": "1m", "start": start})
    assert [c["close"] for c in r.json()["data"]] == ["0.6100"]


@pytest.mark.parametrize(
    ("params", "status", "parameter"),
    [
        ({"start": "2026-03-08T00:00:00Z"}, 400, "interval"),
        ({"interval": "5m", "start": "2026-03-08T00:00:00Z"}, 400, "interval"),
        ({"interval": "1h"}, 400, "start"),
        ({"interval": "1h", "start": "yesterday"}, 400, "start"),
        ({"interval": "1h", "start": "2026-03-08T00:00:00"}, 400, "start"),  # no offset
        (
            {"interval": "1h", "start": "2026-03-08T00:00:00Z", "end": "2026-03-07T00:00:00Z"},
            400,
            "end",
        ),
        ({"interval": "1h", "start": "2099-01-01T00:00:00Z"}, 400, "start"),
        ({"interval": "1h", "start": "2026-03-08T00:00:00Z", "fill": "maybe"}, 400, "fill"),
        # 10,001 minutes: one past the maximum
        (
            {"interval": "1m", "start": "2026-01-01T00:00:00Z", "end": "2026-01-07T22:41:00Z"},
            400,
            "end",
        ),
    ],
)
async def test_bad_parameters_are_problems_naming_the_parameter(
    api: tuple[AsyncTestClient[Any], str], params: dict[str, str], status: int, parameter: str
) -> None:
    client, url = api
    with psycopg.connect(url, autocommit=True) as conn:
        trade(conn, T0, "0.3000", "1.00")
    r = await client.get(f"/v1/markets/{TICKER}/candles", params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["parameter"] == parameter
    assert problem["status"] == status
    assert problem["detail"]


async def test_the_schema_requires_what_the_handler_requires(
    api: tuple[AsyncTestClient[Any], str],
) -> None:
    """interval and start are required in the OpenAPI document, as they are in fact; leaving one
    out is still the handler's 400 naming it (not Litestar's own message)."""
    client, _ = api
    schema = (await client.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/v1/markets/{ticker}/candles"]["get"]
    required = {p["name"]: p.get("required", False) for p in operation["parameters"]}
    assert required == {
        "ticker": True,
        "interval": True,
        "start": True,
        "end": False,
        "fill": False,
    }
    path = f"/v1/markets/{TICKER}/candles"
    for params, missing in (({"start": "2026-03-08T00:00:00Z"}, "interval"), ({}, "interval")):
        r = await client.get(path, params=params)
        assert r.status_code == 400, r.text
        assert r.json()["parameter"] == missing
        assert r.json()["detail"].startswith(f"{missing} is required")
    r = await client.get(path, params={"interval": "1h"})
    assert (r.status_code, r.json()["parameter"]) == (400, "start")
    assert r.json()["detail"].startswith("start is required")


async def test_exactly_max_candles_is_allowed(api: tuple[AsyncTestClient[Any], str]) -> None:
    client, url = api
    with psycopg.connect(url, autocommit=True) as conn:
        trade(conn, datetime(2026, 1, 3, tzinfo=UTC), "0.3000", "1.00")
    r = await client.get(
        f"/v1/markets/{TICKER}/candles",
        params={
            "interval": "1m",
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-07T22:40:00Z",
            "fill": "true",
        },
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 10_000


async def test_unknown_ticker_is_404(api: tuple[AsyncTestClient[Any], str]) -> None:
    client, url = api
    with psycopg.connect(url, autocommit=True) as conn:
        trade(conn, T0, "0.3000", "1.00", ticker="KXOTHER")
    for ticker in ("KXNOPE-1", "bad%00ticker"):
        r = await client.get(
            f"/v1/markets/{ticker}/candles",
            params={"interval": "1d", "start": "2026-03-01T00:00:00Z"},
        )
        assert r.status_code in (400, 404), r.text
        assert r.json()["parameter"] == "ticker"
    # a market known from the reference table but without any data yet is not a 404
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO market.markets (ticker, event_ticker, status, raw) "
            "VALUES ('KXNEW-1', 'KXNEW', 'active', '{}')"
        )
    r = await client.get(
        "/v1/markets/KXNEW-1/candles", params={"interval": "1d", "start": "2026-03-01T00:00:00Z"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"] == []


async def test_daily_end_period_ts_is_kalshis_label_on_both_surfaces(
    api: tuple[AsyncTestClient[Any], str],
) -> None:
    """/v1 candles carry Kalshi's fields so Kalshi code reads them unchanged: a day's
    ``end_period_ts`` is /trade-api/v2's (start + 24 h, Kalshi's recorded labelling) on the
    23-hour and the 25-hour New York day too, while ``end`` stays the day's true end."""
    client, url = api
    spring = datetime(2026, 3, 8, 5, tzinfo=UTC)  # New York midnight; the day lasts 23 hours
    fall = datetime(2025, 11, 2, 4, tzinfo=UTC)  # the day lasts 25 hours
    with psycopg.connect(url, autocommit=True) as conn:
        trade(conn, fall + timedelta(hours=20), "0.3000", "1.00")
        trade(conn, spring + timedelta(hours=9), "0.4000", "2.00")
    r = await client.get(
        f"/v1/markets/{TICKER}/candles",
        params={"interval": "1d", "start": "2025-10-30T00:00:00Z", "end": "2026-03-12T00:00:00Z"},
    )
    assert r.status_code == 200, r.text
    v1 = r.json()["data"]
    r = await client.get(
        f"/trade-api/v2/series/KXCANDLE/markets/{TICKER}/candlesticks",
        params={
            "start_ts": int(datetime(2025, 10, 30, tzinfo=UTC).timestamp()),
            "end_ts": int(datetime(2026, 3, 12, tzinfo=UTC).timestamp()),
            "period_interval": 1440,
        },
    )
    assert r.status_code == 200, r.text
    kalshi = r.json()["candlesticks"]
    assert [(c["start"], c["end"]) for c in v1] == [
        ("2025-11-02T04:00:00Z", "2025-11-03T05:00:00Z"),
        ("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"),
    ]
    labels = [int((day + timedelta(hours=24)).timestamp()) for day in (fall, spring)]
    assert [c["end_period_ts"] for c in v1] == labels
    assert [c["end_period_ts"] for c in kalshi] == labels
    assert [c["volume_fp"] for c in v1] == [c["volume_fp"] for c in kalshi] == ["1.00", "2.00"]
