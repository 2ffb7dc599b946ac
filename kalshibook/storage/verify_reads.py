"""Reads of ``kalshibook verify``: Kalshi's stored candles and kalshibook's own, per market."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from psycopg import AsyncConnection

__all__ = ("OUR_CANDLES", "read_kalshi_candles", "read_our_candles", "verify_tickers")

AConn = AsyncConnection[Any]

TICKERS: Final = (
    "SELECT DISTINCT market_ticker FROM market.kalshi_candles "
    "WHERE (%(tickers)s::text[] IS NULL OR market_ticker = ANY(%(tickers)s)) ORDER BY 1"
)

KALSHI_CANDLES: Final = (
    "SELECT period_minutes, end_ts, volume, price_open, price_high, price_low, price_close, "
    "price_mean, open_interest FROM market.kalshi_candles WHERE market_ticker = %(ticker)s "
    "AND (%(start)s::timestamptz IS NULL OR end_ts > %(start)s) "
    "AND (%(end)s::timestamptz IS NULL OR end_ts <= %(end)s) ORDER BY period_minutes, end_ts"
)


OURS_1M: Final = (
    "SELECT t.bucket, t.volume, t.open, t.high, t.low, t.close, t.notional, s.open_interest "
    "FROM market.candles_trades_1m t LEFT JOIN market.candles_stats_1m s "
    "ON s.market_ticker = t.market_ticker AND s.bucket = t.bucket "
    "WHERE t.market_ticker = %(ticker)s AND t.bucket >= %(start)s AND t.bucket < %(end)s"
)
OURS_1H: Final = (
    "SELECT t.bucket, t.volume, t.open, t.high, t.low, t.close, t.notional, s.open_interest "
    "FROM market.candles_trades_1h t LEFT JOIN market.candles_stats_1h s "
    "ON s.market_ticker = t.market_ticker AND s.bucket = t.bucket "
    "WHERE t.market_ticker = %(ticker)s AND t.bucket >= %(start)s AND t.bucket < %(end)s"
)
OURS_1D: Final = (
    "SELECT t.bucket, t.volume, t.open, t.high, t.low, t.close, t.notional, s.open_interest "
    "FROM market.candles_trades_1d t LEFT JOIN market.candles_stats_1d s "
    "ON s.market_ticker = t.market_ticker AND s.bucket = t.bucket "
    "WHERE t.market_ticker = %(ticker)s AND t.bucket >= %(start)s AND t.bucket < %(end)s"
)

OUR_CANDLES: Final = {1: OURS_1M, 60: OURS_1H, 1440: OURS_1D}
"""Period (minutes) -> kalshibook's trade candles (and open interest) of a market in a range."""


async def verify_tickers(conn: AConn, tickers: list[str] | None) -> list[str]:
    cur = await conn.execute(TICKERS, {"tickers": tickers})
    return [r[0] for r in await cur.fetchall()]


async def read_kalshi_candles(
    conn: AConn, ticker: str, start: datetime | None, end: datetime | None
) -> list[tuple[Any, ...]]:
    cur = await conn.execute(KALSHI_CANDLES, {"ticker": ticker, "start": start, "end": end})
    return list(await cur.fetchall())


async def read_our_candles(
    conn: AConn, ticker: str, period_minutes: int, start: datetime, end: datetime
) -> dict[datetime, tuple[Decimal, ...]]:
    """Bucket start -> (volume, open, high, low, close, notional, open_interest)."""
    cur = await conn.execute(
        OUR_CANDLES[period_minutes], {"ticker": ticker, "start": start, "end": end}
    )
    return {r[0]: tuple(r[1:]) for r in await cur.fetchall()}
