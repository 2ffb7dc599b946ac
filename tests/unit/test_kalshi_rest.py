"""REST client: token bucket, paging, retries, signing (kalshibook.kalshi.rest).

httpx.MockTransport stands in for the network edge; nothing leaves the process.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from kalshibook.errors import ConfigError, FeedError, KalshiHTTPError, ProtocolError
from kalshibook.kalshi import auth
from kalshibook.kalshi.rest import KalshiRest, TokenBucket
from kalshibook.settings import KalshiSettings

BASE = "https://api.test/trade-api/v2"


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


# ---------------------------------------------------------------------------------------------
# Token bucket
# ---------------------------------------------------------------------------------------------


def test_bucket_burst_then_rate() -> None:
    clock = FakeClock()
    b = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [b.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.reserve() == pytest.approx(0.5)
    assert b.reserve() == pytest.approx(1.0)  # queued behind the previous reservation
    clock.t += 1.0
    assert b.tokens == pytest.approx(0.0)
    clock.t += 10.0
    assert b.tokens == pytest.approx(3.0)  # refill capped at burst


async def test_bucket_acquire_sleeps_for_the_debt() -> None:
    clock = FakeClock()
    b = TokenBucket(rate=4.0, burst=1, clock=clock, sleep=clock.sleep)
    assert await b.acquire() == 0.0
    waits = [await b.acquire() for _ in range(4)]
    assert waits == pytest.approx([0.25] * 4)  # the fake sleep advances the clock
    assert clock.slept == pytest.approx([0.25] * 4)


def test_bucket_rate_zero_is_unlimited() -> None:
    b = TokenBucket(rate=0, burst=1, clock=FakeClock())
    assert all(b.reserve() == 0.0 for _ in range(100))


def test_bucket_sustained_rate() -> None:
    clock = FakeClock()
    b = TokenBucket(rate=15.0, burst=20, clock=clock, sleep=clock.sleep)
    total_wait = sum(b.reserve() for _ in range(20 + 150))
    assert total_wait > 0
    # 150 requests beyond the burst need 10 s at 15/s: the last one waits 10 s.
    assert b.reserve() == pytest.approx(151 / 15.0)


# ---------------------------------------------------------------------------------------------
# Client against a mock transport
# ---------------------------------------------------------------------------------------------


def make_rest(
    handler: Callable[[httpx.Request], httpx.Response],
    clock: FakeClock,
    *,
    key: auth.PrivateKey | None = None,
    **settings: Any,
) -> KalshiRest:
    s = KalshiSettings(
        rest_url=BASE,
        key_id="kid" if key else "",
        rest_max_retries=3,
        rest_rate=0,
        reconnect_initial=0.5,
        reconnect_max=4.0,
        **settings,
    )
    return KalshiRest(
        s,
        key,
        transport=httpx.MockTransport(handler),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(0),
    )


def market(ticker: str) -> dict[str, Any]:
    return {"ticker": ticker, "yes_bid_dollars": "0.4200", "volume_fp": "12.50"}


async def test_get_markets_follows_cursor_to_the_end() -> None:
    seen: list[httpx.URL] = []
    pages = {
        None: {"markets": [market("A"), market("B")], "cursor": "c1"},
        "c1": {"markets": [market("C")], "cursor": "c2"},
        "c2": {"markets": [], "cursor": ""},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        assert request.url.path == "/trade-api/v2/markets"
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    clock = FakeClock()
    async with make_rest(handler, clock) as rest:
        got = [
            mk
            async for mk in rest.get_markets(
                status="open",
                tickers=["A", "B", "C"],
                min_close_ts=datetime(2026, 1, 1, tzinfo=UTC),
                max_close_ts=1800000000,
            )
        ]
    assert [mk.ticker for mk in got] == ["A", "B", "C"]
    assert got[0].yes_bid_dollars == Decimal("0.42")
    assert got[0].raw == market("A")
    first = seen[0].params
    assert first["status"] == "open"
    assert first["tickers"] == "A,B,C"
    assert first["min_close_ts"] == "1767225600"
    assert first["max_close_ts"] == "1800000000"
    assert first["limit"] == "1000"
    assert "event_ticker" not in first
    assert "cursor" not in first
    assert [u.params.get("cursor") for u in seen] == [None, "c1", "c2"]
    assert rest.stats.requests == 3
    assert rest.stats.retries == 0


async def test_repeated_cursor_is_a_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"trades": [], "cursor": "same"})

    async with make_rest(handler, FakeClock()) as rest:
        with pytest.raises(ProtocolError, match="cursor"):
            _ = [t async for t in rest.get_trades("A")]


async def test_429_and_5xx_are_retried_with_backoff() -> None:
    statuses = iter([429, 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status != 200:
            return httpx.Response(status, json={"error": "too many requests"})
        return httpx.Response(200, json={"market": market("A")})

    clock = FakeClock()
    async with make_rest(handler, clock) as rest:
        mk = await rest.get_market("A")
    assert mk is not None
    assert mk.ticker == "A"
    assert rest.stats.requests == 3
    assert rest.stats.retries == 2
    assert rest.stats.http_429 == 1
    assert rest.stats.http_5xx == 1
    assert len(clock.slept) == 2
    assert 0.25 <= clock.slept[0] <= 0.5
    assert 0.5 <= clock.slept[1] <= 1.0


async def test_retries_exhausted_raise_http_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    clock = FakeClock()
    async with make_rest(handler, clock) as rest:
        with pytest.raises(KalshiHTTPError) as info:
            await rest.get_historical_cutoff()
    assert info.value.http_status == 502
    assert "bad gateway" in info.value.body
    assert rest.stats.requests == 4  # 1 + rest_max_retries
    assert all(d <= 4.0 for d in clock.slept)


async def test_other_4xx_fail_immediately() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": "bad_request", "message": "bad limit"})

    clock = FakeClock()
    async with make_rest(handler, clock) as rest:
        with pytest.raises(KalshiHTTPError, match="400"):
            _ = [m async for m in rest.get_markets(limit=5000)]
    assert rest.stats.requests == 1
    assert clock.slept == []


async def test_404_on_single_getters_is_none() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"code": "not_found", "message": "no such market"})

    async with make_rest(handler, FakeClock()) as rest:
        assert await rest.get_market("NOPE") is None
        assert await rest.get_event("NOPE") is None
        assert await rest.get_series("NOPE") is None
        assert await rest.get_orderbook("NOPE") is None
        assert await rest.get_candlesticks("S", "NOPE", 0, 1, 60) is None
        with pytest.raises(KalshiHTTPError):
            await rest.get_exchange_status()


async def test_transport_errors_are_retried_then_raised() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        if calls == 2:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={"series": {"ticker": "S", "fee_multiplier": 1}})

    async with make_rest(handler, FakeClock()) as rest:
        s = await rest.get_series("S")
    assert s is not None
    assert s.fee_multiplier == Decimal(1)
    assert rest.stats.transport_errors == 2

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with make_rest(broken, FakeClock()) as rest:
        with pytest.raises(FeedError, match="ConnectError"):
            await rest.get_series("S")


async def test_requests_are_signed_when_a_key_is_given(tmp_path: Path) -> None:
    private_pem, public_pem = auth.generate_key_pair("ed25519")
    (tmp_path / "k.pem").write_bytes(private_pem)
    key = auth.load_private_key(tmp_path / "k.pem")
    public = auth.load_public_key(public_pem)
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json={"trades": [], "cursor": ""})

    clock = FakeClock(1703123456.789)
    async with make_rest(handler, clock, key=key) as rest:
        _ = [t async for t in rest.get_trades("A", min_ts=1, max_ts=2)]
    (req,) = captured
    assert req.url.path == "/trade-api/v2/markets/trades"
    assert req.url.params["ticker"] == "A"
    assert req.headers["KALSHI-ACCESS-KEY"] == "kid"
    assert req.headers["KALSHI-ACCESS-TIMESTAMP"] == "1703123456789"
    assert auth.verify(
        public,
        req.headers["KALSHI-ACCESS-SIGNATURE"],
        1703123456789,
        "GET",
        "/trade-api/v2/markets/trades",  # signed without the query string
    )


async def test_unsigned_without_key() -> None:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json={"orderbook_fp": {"yes_dollars": [["0.42", "1.00"]]}})

    async with make_rest(handler, FakeClock()) as rest:
        book = await rest.get_orderbook("A.B", depth=5)
    assert book is not None
    assert book.yes == ((Decimal("0.42"), Decimal(1)),)
    assert book.no == ()
    assert "KALSHI-ACCESS-SIGNATURE" not in captured[0].headers
    assert captured[0].url.params["depth"] == "5"


async def test_events_series_candles_cutoff() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/trade-api/v2")
        if path == "/events":
            assert request.url.params["with_nested_markets"] == "true"
            return httpx.Response(
                200,
                json={"events": [{"event_ticker": "E", "markets": [market("A")]}], "cursor": ""},
            )
        if path == "/events/E":
            return httpx.Response(
                200, json={"event": {"event_ticker": "E"}, "markets": [market("A")]}
            )
        if path == "/series":
            return httpx.Response(200, json={"series": [{"ticker": "S1"}, {"ticker": "S2"}]})
        if path == "/series/S/markets/A/candlesticks":
            assert request.url.params["period_interval"] == "60"
            return httpx.Response(
                200, json={"ticker": "A", "candlesticks": [{"end_period_ts": 3600}]}
            )
        if path == "/historical/cutoff":
            return httpx.Response(200, json={"trades_created_ts": "2026-06-25T00:00:00Z"})
        return httpx.Response(404)

    async with make_rest(handler, FakeClock()) as rest:
        events = [e async for e in rest.get_events(status="open")]
        assert events[0].markets is not None
        assert events[0].markets[0].ticker == "A"
        ev = await rest.get_event("E")
        assert ev is not None
        assert ev.markets is not None
        assert ev.markets[0].ticker == "A"
        assert [s.ticker for s in await rest.get_series_list()] == ["S1", "S2"]
        candles = await rest.get_candlesticks("S", "A", 0, 7200, 60)
        assert candles is not None
        assert candles.candlesticks[0].end_period_ts == 3600
        cutoff = await rest.get_historical_cutoff()
        assert cutoff.trades_created_ts == datetime(2026, 6, 25, tzinfo=UTC)


async def test_rate_limiter_is_applied_per_request() -> None:
    clock = FakeClock()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"market": market("A")})

    s = KalshiSettings(rest_url=BASE, rest_rate=2.0, rest_burst=1)
    rest = KalshiRest(
        s,
        transport=httpx.MockTransport(handler),
        bucket=TokenBucket(2.0, 1, clock=clock, sleep=clock.sleep),
        sleep=clock.sleep,
    )
    async with rest:
        for _ in range(3):
            await rest.get_market("A")
    assert clock.slept == pytest.approx([0.5, 0.5])
    assert rest.stats.throttled_s == pytest.approx(1.0)


async def test_naive_datetime_rejected_and_key_needs_id(tmp_path: Path) -> None:
    async with make_rest(lambda r: httpx.Response(200, json={}), FakeClock()) as rest:
        with pytest.raises(ValueError, match="aware"):
            _ = [t async for t in rest.get_trades(min_ts=datetime(2026, 1, 1))]  # noqa: DTZ001
    private_pem, _ = auth.generate_key_pair("ed25519")
    (tmp_path / "k.pem").write_bytes(private_pem)
    with pytest.raises(ConfigError, match="KEY_ID"):
        KalshiRest(KalshiSettings(key_id=""), auth.load_private_key(tmp_path / "k.pem"))


async def test_must_be_entered() -> None:
    rest = KalshiRest(KalshiSettings())
    with pytest.raises(RuntimeError):
        await rest.get_market("A")


def test_body_decoding_of_fixture_shape() -> None:
    # the page decoder used by the client accepts Kalshi's bytes directly
    from kalshibook.kalshi.rest_decode import decode_trades_page

    body = json.dumps(
        {
            "trades": [
                {"trade_id": "t", "ticker": "A", "count_fp": "1.00", "yes_price_dollars": "0.2"}
            ],
            "cursor": None,
        }
    ).encode()
    page = decode_trades_page(body)
    assert page.cursor is None
    assert page.trades[0].no_price_dollars == Decimal("0.8")
