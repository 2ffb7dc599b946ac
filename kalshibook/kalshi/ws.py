"""Kalshi WebSocket client (asyncio I/O).

One multiplexed, signed connection at a time. Usage::

    ws = KalshiWebSocket(settings.kalshi, key)
    async with contextlib.aclosing(ws.connect_forever()) as sessions:
        async for session in sessions:               # one iteration per (re)connection
            sids = await session.subscribe(["ticker", "trade"])   # resubscribe every time
            async for item in session:               # data plane; ends after a Disconnected
                ...

The session of one connection (control plane, data plane, backpressure) is
:class:`~kalshibook.kalshi.ws_session.WsSession` (re-exported here with its item types); this module
signs, connects and reconnects.

Liveness: websockets answers Kalshi's pings and sends its own (``ping_interval``). A watchdog
closes a connection on which nothing at all (frames, pings, pongs) arrived for
``settings.ws_silence_timeout`` seconds. ``connect_forever`` reconnects with capped, jittered
exponential backoff (reset once a connection has delivered a frame) and raises
:class:`~kalshibook.errors.FatalFeedError` when the exchange rejects us for good (401/403).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kalshibook.errors import FatalFeedError, FeedDisconnected
from kalshibook.kalshi.auth import WS_PATH, PrivateKey
from kalshibook.kalshi.client_base import KalshiClientBase
from kalshibook.kalshi.retry import classify
from kalshibook.kalshi.ws_decode import DecodeStats
from kalshibook.kalshi.ws_frames import Ok, SubscriptionInfo
from kalshibook.kalshi.ws_session import DataItem, Disconnected, UpdateAction, WsSession, WsStats
from kalshibook.kalshi.wsconn import FeedConnection
from kalshibook.settings import KalshiSettings

__all__ = ("DataItem", "Disconnected", "KalshiWebSocket", "WsSession", "WsStats")

log = logging.getLogger(__name__)


async def _ws_connect(url: str, **options: Any) -> FeedConnection:
    conn = await connect(url, **options)
    assert isinstance(conn, FeedConnection)  # create_connection=FeedConnection
    return conn


class KalshiWebSocket(KalshiClientBase):
    """Connection manager: signs each handshake, (re)connects, and fronts the current session."""

    def __init__(
        self,
        settings: KalshiSettings,
        key: PrivateKey | None = None,
        *,
        clock: Callable[[], float] = time.time,
        key_id: str | None = None,
        queue_size: int = 10_000,
        command_timeout: float = 10.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        decode_stats: DecodeStats | None = None,
        connect_options: Mapping[str, Any] | None = None,
        connector: Callable[..., Awaitable[FeedConnection]] | None = None,
    ) -> None:
        super().__init__(settings, key, key_id, clock, rng, sleep)
        self._queue_size = queue_size
        self._command_timeout = command_timeout
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._connect_options = dict(connect_options or {})
        self._connector = connector or _ws_connect
        self.stats = WsStats(decode_stats)
        self.epoch = 0
        self.session: WsSession | None = None

    def handshake_headers(self) -> dict[str, str]:
        """Signed ``KALSHI-ACCESS-*`` headers for a new upgrade (empty without a key)."""
        if self._key is None:
            return {}
        path = urlsplit(self.settings.ws_url).path or WS_PATH
        return self._signed_get_headers(self._key, path)

    async def connect(self) -> WsSession:
        """Open one connection (no retry). 401/403 raise :class:`FatalFeedError`."""
        options: dict[str, Any] = {
            "additional_headers": self.handshake_headers(),
            "open_timeout": self._open_timeout,
            "ping_interval": self._ping_interval,
            "ping_timeout": 20.0,
            "close_timeout": 2.0,
            "max_size": 2**24,
            "create_connection": FeedConnection,
        }
        options.update(self._connect_options)
        try:
            conn = await self._connector(self.settings.ws_url, **options)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise FatalFeedError(
                    f"Kalshi rejected the WebSocket credentials (HTTP {status}); check "
                    "KALSHIBOOK_KALSHI_KEY_ID, the private key and the environment (demo/prod)"
                ) from exc
            raise
        self.epoch += 1
        self.stats.connects += 1
        session = WsSession(
            conn,
            epoch=self.epoch,
            stats=self.stats,
            clock=self._clock,
            queue_size=self._queue_size,
            command_timeout=self._command_timeout,
            silence_timeout=self.settings.ws_silence_timeout,
        )
        session._start()
        self.session = session
        log.info("kalshi ws: connected to %s (session %d)", self.settings.ws_url, self.epoch)
        return session

    async def connect_forever(self) -> AsyncIterator[WsSession]:
        """Yield a fresh session after every (re)connection; close it when the body moves on.

        Retryable failures back off (capped, jittered); fatal ones raise :class:`FatalFeedError`.
        Wrap in :func:`contextlib.aclosing` so an early exit closes the last session.
        """
        backoff = self._backoff()
        while True:
            try:
                session = await self.connect()
            except Exception as exc:  # classified below: retry or fatal
                if classify(exc) == "fatal":
                    if isinstance(exc, FatalFeedError):
                        raise
                    raise FatalFeedError(f"Kalshi WebSocket connect failed: {exc}") from exc
                self.stats.connect_failures += 1
                delay = backoff.next()
                log.warning("kalshi ws: connect failed (%s); retrying in %.2f s", exc, delay)
                await self._sleep(delay)
                continue
            try:
                yield session
            finally:
                await session.close()
                if self.session is session:
                    self.session = None
            if session.frames_received > 0:
                backoff.reset()
            delay = backoff.next()
            log.info("kalshi ws: reconnecting in %.2f s", delay)
            await self._sleep(delay)

    # ---- delegation to the current session ---------------------------------------------

    def _current(self) -> WsSession:
        if self.session is None or self.session.closed:
            raise FeedDisconnected("Kalshi WebSocket is not connected")
        return self.session

    async def subscribe(
        self, channels: Sequence[str], market_tickers: Sequence[str] | None = None, **opts: Any
    ) -> dict[str, int]:
        return await self._current().subscribe(channels, market_tickers, **opts)

    async def unsubscribe(self, sids: Sequence[int]) -> None:
        await self._current().unsubscribe(sids)

    async def update_subscription(
        self,
        sid: int,
        action: UpdateAction,
        market_tickers: Sequence[str] | None = None,
        **opts: Any,
    ) -> Ok | None:
        return await self._current().update_subscription(sid, action, market_tickers, **opts)

    async def list_subscriptions(self) -> tuple[SubscriptionInfo, ...]:
        return await self._current().list_subscriptions()

    def __aiter__(self) -> WsSession:
        return self._current()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def __aenter__(self) -> KalshiWebSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
