"""Kalshi REST client for public market data (httpx, asyncio).

Every request waits for a token from a :class:`TokenBucket` (``settings.rest_rate`` requests/s,
``settings.rest_burst`` burst); 429, 408, 5xx and transport errors are retried with capped,
jittered exponential backoff (Kalshi sends no Retry-After) up to ``settings.rest_max_retries``;
other 4xx raise :class:`~kalshibook.errors.KalshiHTTPError`. Single-object getters return
``None`` on 404. List getters are async iterators that follow the cursor to the end. Requests are
signed when a key is given (market data does not need it).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from kalshibook.errors import FeedError, KalshiHTTPError, ProtocolError
from kalshibook.kalshi.auth import PrivateKey
from kalshibook.kalshi.client_base import KalshiClientBase
from kalshibook.kalshi.rest_decode import (
    decode_candlesticks,
    decode_event,
    decode_events_page,
    decode_exchange_schedule,
    decode_exchange_status,
    decode_historical_cutoff,
    decode_market,
    decode_markets_page,
    decode_orderbook,
    decode_series,
    decode_series_list,
    decode_trades_page,
)
from kalshibook.kalshi.rest_models import (
    Event,
    ExchangeSchedule,
    ExchangeStatus,
    HistoricalCutoff,
    Market,
    MarketCandlesticks,
    Orderbook,
    RestTrade,
    Series,
)
from kalshibook.kalshi.retry import http_status_verdict
from kalshibook.settings import KalshiSettings

__all__ = ("KalshiRest", "RestStats", "TokenBucket")

_T = TypeVar("_T")
Timestamp = int | datetime
"""Unix seconds or an aware datetime."""


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked.

    Reservation based: :meth:`reserve` takes the tokens at once (the balance may go negative) and
    returns how long the caller must wait, so concurrent callers are served in arrival order.
    ``rate <= 0`` disables limiting. The clock is injectable for tests.

    Kept over aiolimiter (``AsyncLimiter(burst, burst / rate)``, same burst and refill): it returns
    no wait time (``throttled_s``), uses the loop clock only (tests fake ours), has no off switch.
    """

    __slots__ = ("_clock", "_last", "_sleep", "_tokens", "burst", "rate")

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = float(rate)
        self.burst = max(float(burst), 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()

    @property
    def tokens(self) -> float:
        """Current balance (negative while callers are waiting)."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._last = now

    def reserve(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` now; returns the seconds to wait before using them (0 = go)."""
        if self.rate <= 0:
            return 0.0
        self._refill()
        self._tokens -= tokens
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    async def acquire(self, tokens: float = 1.0) -> float:
        """Wait for ``tokens``; returns the time waited."""
        delay = self.reserve(tokens)
        if delay > 0:
            await self._sleep(delay)
        return delay


class RestStats:
    """Counters for metrics."""

    __slots__ = (
        "http_5xx",
        "http_429",
        "http_errors",
        "rejected_items",
        "requests",
        "retries",
        "throttled_s",
        "transport_errors",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.rejected_items = 0  # list items left out as undecodable (each logged)
        self.http_429 = 0
        self.http_5xx = 0
        self.http_errors = 0
        self.transport_errors = 0
        self.throttled_s = 0.0


def _ts(v: Timestamp | None) -> int | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return int(v.timestamp())
    return int(v)


def _csv(v: str | Sequence[str] | None) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return ",".join(v)


def _seg(v: str) -> str:
    return quote(v, safe="")


class KalshiRest(KalshiClientBase):
    """Async context manager around an :class:`httpx.AsyncClient` on ``settings.rest_url``."""

    def __init__(
        self,
        settings: KalshiSettings,
        key: PrivateKey | None = None,
        *,
        key_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        bucket: TokenBucket | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(settings, key, key_id, clock, rng, sleep)
        self._transport = transport
        self.bucket = bucket or TokenBucket(settings.rest_rate, settings.rest_burst, sleep=sleep)
        self.stats = RestStats()
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> KalshiRest:
        self._client = httpx.AsyncClient(
            base_url=self.settings.rest_url,
            timeout=self.settings.rest_timeout,
            transport=self._transport,
            headers={"accept": "application/json", "user-agent": "kalshibook/0.1"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- transport ---------------------------------------------------------------------

    async def get_raw(
        self, path: str, params: Mapping[str, Any] | None = None, *, allow_404: bool = False
    ) -> bytes | None:
        """GET ``path`` (relative to the REST base), with limiting, signing and retries.

        Returns the body, or ``None`` on 404 when ``allow_404``.
        """
        return (await self._request(path, params, allow_404=allow_404))[0]

    async def _request(
        self, path: str, params: Mapping[str, Any] | None, *, allow_404: bool
    ) -> tuple[bytes | None, datetime]:
        """:meth:`get_raw`, also returning when the answered request was sent (wall clock)."""
        client = self._client
        if client is None:
            raise RuntimeError("KalshiRest must be used as 'async with KalshiRest(...)'")
        query = {k: v for k, v in (params or {}).items() if v is not None}
        backoff = self._backoff()
        attempt = 0
        while True:
            self.stats.throttled_s += await self.bucket.acquire()
            request = client.build_request("GET", path, params=query)
            if self._key is not None:
                request.headers.update(
                    self._signed_get_headers(
                        self._key,
                        # sign the path as sent (percent-encoded), without the query string
                        request.url.raw_path.split(b"?", 1)[0].decode("ascii"),
                    )
                )
            self.stats.requests += 1
            sent_at = datetime.now(UTC)
            try:
                response = await client.send(request)
            except httpx.TransportError as exc:
                self.stats.transport_errors += 1
                if attempt >= self.settings.rest_max_retries:
                    raise FeedError(
                        f"Kalshi REST GET {request.url} failed after {attempt + 1} attempts: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response.content, sent_at
                if status == 404 and allow_404:
                    return None, sent_at
                if status == 429:
                    self.stats.http_429 += 1
                elif status >= 500:
                    self.stats.http_5xx += 1
                if (
                    http_status_verdict(status) == "fatal"
                    or attempt >= self.settings.rest_max_retries
                ):
                    self.stats.http_errors += 1
                    raise KalshiHTTPError(status, response.text, str(request.url))
            attempt += 1
            self.stats.retries += 1
            await self._sleep(backoff.next())

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        body = await self.get_raw(path, params)
        assert body is not None
        return body

    async def _pages(
        self,
        path: str,
        params: Mapping[str, Any],
        decode: Callable[[bytes], tuple[Sequence[_T], str | None, int]],
    ) -> AsyncIterator[_T]:
        async for _, items in self._page_lists(path, params, decode):
            for item in items:
                yield item

    async def _page_lists(
        self,
        path: str,
        params: Mapping[str, Any],
        decode: Callable[[bytes], tuple[Sequence[_T], str | None, int]],
    ) -> AsyncIterator[tuple[datetime, Sequence[_T]]]:
        """Every page of a cursor listing, with the time its request was sent; items the decoder
        left out (its third value) are counted in ``stats.rejected_items``."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            query = dict(params)
            if cursor:
                query["cursor"] = cursor
            body, sent_at = await self._request(path, query, allow_404=False)
            assert body is not None
            items, cursor, rejected = decode(body)
            self.stats.rejected_items += rejected
            yield sent_at, items
            if not cursor:
                return
            if cursor in seen:
                raise ProtocolError(f"Kalshi repeated a pagination cursor on {path}")
            seen.add(cursor)

    # ---- markets -----------------------------------------------------------------------

    def get_market_pages(
        self,
        *,
        event_ticker: str | None = None,
        series_ticker: str | None = None,
        tickers: str | Sequence[str] | None = None,
        status: str | None = None,
        mve_filter: str | None = None,
        min_created_ts: Timestamp | None = None,
        max_created_ts: Timestamp | None = None,
        min_close_ts: Timestamp | None = None,
        max_close_ts: Timestamp | None = None,
        min_settled_ts: Timestamp | None = None,
        max_settled_ts: Timestamp | None = None,
        min_updated_ts: Timestamp | None = None,
        max_updated_ts: Timestamp | None = None,
        limit: int = 1000,
    ) -> AsyncIterator[tuple[datetime, Sequence[Market]]]:
        """The markets matching the filters, page by page, each with the time its request was
        sent: the statuses in a page are what Kalshi reported as of that time. Timestamp
        families are exclusive."""
        params = {
            "event_ticker": event_ticker,
            "series_ticker": series_ticker,
            "tickers": _csv(tickers),
            "status": status,
            "mve_filter": mve_filter,
            "min_created_ts": _ts(min_created_ts),
            "max_created_ts": _ts(max_created_ts),
            "min_close_ts": _ts(min_close_ts),
            "max_close_ts": _ts(max_close_ts),
            "min_settled_ts": _ts(min_settled_ts),
            "max_settled_ts": _ts(max_settled_ts),
            "min_updated_ts": _ts(min_updated_ts),
            "max_updated_ts": _ts(max_updated_ts),
            "limit": limit,
        }
        return self._page_lists("/markets", params, _markets_page)

    async def get_markets(self, **filters: Any) -> AsyncIterator[Market]:
        """Every market matching :meth:`get_market_pages`'s filters (all pages)."""
        async for _, page in self.get_market_pages(**filters):
            for market in page:
                yield market

    async def get_market(self, ticker: str) -> Market | None:
        body = await self.get_raw(f"/markets/{_seg(ticker)}", allow_404=True)
        return None if body is None else decode_market(body)

    def get_historical_markets(
        self,
        *,
        tickers: str | Sequence[str] | None = None,
        event_ticker: str | None = None,
        series_ticker: str | None = None,
        mve_filter: str | None = None,
        limit: int = 1000,
    ) -> AsyncIterator[Market]:
        """Markets settled before the historical cutoff (``/historical/markets``)."""
        params = {
            "tickers": _csv(tickers),
            "event_ticker": event_ticker,
            "series_ticker": series_ticker,
            "mve_filter": mve_filter,
            "limit": limit,
        }
        return self._pages("/historical/markets", params, _markets_page)

    async def get_historical_market(self, ticker: str) -> Market | None:
        body = await self.get_raw(f"/historical/markets/{_seg(ticker)}", allow_404=True)
        return None if body is None else decode_market(body)

    # ---- events and series -------------------------------------------------------------

    def get_events(
        self,
        *,
        status: str | None = None,
        series_ticker: str | None = None,
        tickers: str | Sequence[str] | None = None,
        min_close_ts: Timestamp | None = None,
        min_updated_ts: Timestamp | None = None,
        with_nested_markets: bool = True,
        with_milestones: bool | None = None,
        limit: int = 200,
    ) -> AsyncIterator[Event]:
        params = {
            "status": status,
            "series_ticker": series_ticker,
            "tickers": _csv(tickers),
            "min_close_ts": _ts(min_close_ts),
            "min_updated_ts": _ts(min_updated_ts),
            "with_nested_markets": with_nested_markets,
            "with_milestones": with_milestones,
            "limit": limit,
        }
        return self._pages("/events", params, _events_page)

    async def get_event(self, event_ticker: str, with_nested_markets: bool = True) -> Event | None:
        """The event with its markets in ``Event.markets`` (nested or top-level form)."""
        body = await self.get_raw(
            f"/events/{_seg(event_ticker)}",
            {"with_nested_markets": with_nested_markets},
            allow_404=True,
        )
        if body is None:
            return None
        event = decode_event(body)
        self.stats.rejected_items += event.rejected_markets
        return event

    async def get_series_list(
        self,
        *,
        category: str | None = None,
        tags: str | Sequence[str] | None = None,
        include_product_metadata: bool | None = None,
        include_volume: bool | None = None,
        min_updated_ts: Timestamp | None = None,
    ) -> list[Series]:
        """All series matching the filters (follows a cursor if Kalshi sends one)."""
        params = {
            "category": category,
            "tags": _csv(tags),
            "include_product_metadata": include_product_metadata,
            "include_volume": include_volume,
            "min_updated_ts": _ts(min_updated_ts),
        }
        return [s async for s in self._pages("/series", params, _series_page)]

    async def get_series(self, ticker: str, include_volume: bool | None = None) -> Series | None:
        body = await self.get_raw(
            f"/series/{_seg(ticker)}", {"include_volume": include_volume}, allow_404=True
        )
        return None if body is None else decode_series(body)

    # ---- trades, books, candles --------------------------------------------------------

    def get_trades(
        self,
        ticker: str | None = None,
        min_ts: Timestamp | None = None,
        max_ts: Timestamp | None = None,
        *,
        is_block_trade: bool | None = None,
        limit: int = 1000,
    ) -> AsyncIterator[RestTrade]:
        """Public trades (all pages; Kalshi's order is newest first, not guaranteed)."""
        params = {
            "ticker": ticker,
            "min_ts": _ts(min_ts),
            "max_ts": _ts(max_ts),
            "is_block_trade": is_block_trade,
            "limit": limit,
        }
        return self._pages("/markets/trades", params, _trades_page)

    def get_historical_trades(
        self,
        ticker: str | None = None,
        min_ts: Timestamp | None = None,
        max_ts: Timestamp | None = None,
        *,
        limit: int = 1000,
    ) -> AsyncIterator[RestTrade]:
        """Trades older than the cutoff's ``trades_created_ts``."""
        params = {"ticker": ticker, "min_ts": _ts(min_ts), "max_ts": _ts(max_ts), "limit": limit}
        return self._pages("/historical/trades", params, _trades_page)

    async def get_orderbook(self, ticker: str, depth: int = 0) -> Orderbook | None:
        body = await self.get_raw(
            f"/markets/{_seg(ticker)}/orderbook", {"depth": depth}, allow_404=True
        )
        return None if body is None else decode_orderbook(body)

    async def get_candlesticks(
        self,
        series: str,
        ticker: str,
        start_ts: Timestamp,
        end_ts: Timestamp,
        period_interval: int,
        *,
        include_latest_before_start: bool | None = None,
    ) -> MarketCandlesticks | None:
        """Candles (period 1, 60 or 1440 minutes) whose end lies in [start_ts, end_ts]."""
        body = await self.get_raw(
            f"/series/{_seg(series)}/markets/{_seg(ticker)}/candlesticks",
            {
                "start_ts": _ts(start_ts),
                "end_ts": _ts(end_ts),
                "period_interval": period_interval,
                "include_latest_before_start": include_latest_before_start,
            },
            allow_404=True,
        )
        return None if body is None else decode_candlesticks(body)

    async def get_historical_candlesticks(
        self, ticker: str, start_ts: Timestamp, end_ts: Timestamp, period_interval: int
    ) -> MarketCandlesticks | None:
        body = await self.get_raw(
            f"/historical/markets/{_seg(ticker)}/candlesticks",
            {"start_ts": _ts(start_ts), "end_ts": _ts(end_ts), "period_interval": period_interval},
            allow_404=True,
        )
        return None if body is None else decode_candlesticks(body)

    # ---- exchange ----------------------------------------------------------------------

    async def get_historical_cutoff(self) -> HistoricalCutoff:
        return decode_historical_cutoff(await self._get("/historical/cutoff"))

    async def get_exchange_status(self) -> ExchangeStatus:
        return decode_exchange_status(await self._get("/exchange/status"))

    async def get_exchange_schedule(self) -> ExchangeSchedule:
        return decode_exchange_schedule(await self._get("/exchange/schedule"))


# A page's items, its cursor, and how many of its items were left out as undecodable.


def _markets_page(body: bytes) -> tuple[Sequence[Market], str | None, int]:
    page = decode_markets_page(body)
    return page.markets, page.cursor, page.rejected


def _events_page(body: bytes) -> tuple[Sequence[Event], str | None, int]:
    page = decode_events_page(body)
    nested = sum(e.rejected_markets for e in page.events)
    return page.events, page.cursor, page.rejected + nested


def _trades_page(body: bytes) -> tuple[Sequence[RestTrade], str | None, int]:
    page = decode_trades_page(body)
    return page.trades, page.cursor, 0


def _series_page(body: bytes) -> tuple[Sequence[Series], str | None, int]:
    series, cursor = decode_series_list(body)
    return series, cursor, 0
