"""SQL of the history backfill (migration 0007): Kalshi's candlesticks and per-market progress."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, NamedTuple

from psycopg import AsyncConnection

__all__ = (
    "KalshiCandleRow",
    "Progress",
    "read_progress",
    "save_candles",
    "save_progress",
)


class KalshiCandleRow(NamedTuple):
    market_ticker: str
    period_minutes: int
    end_ts: datetime
    price_open: Decimal | None
    price_high: Decimal | None
    price_low: Decimal | None
    price_close: Decimal | None
    price_mean: Decimal | None
    price_previous: Decimal | None
    yes_bid_open: Decimal | None
    yes_bid_high: Decimal | None
    yes_bid_low: Decimal | None
    yes_bid_close: Decimal | None
    yes_ask_open: Decimal | None
    yes_ask_high: Decimal | None
    yes_ask_low: Decimal | None
    yes_ask_close: Decimal | None
    volume: Decimal
    open_interest: Decimal | None


class Progress(NamedTuple):
    market_ticker: str
    trades_from: datetime | None
    trades_through: datetime | None
    trades_loaded: int
    trades_complete: bool
    candles_through: datetime | None


UPSERT_KALSHI_CANDLE: Final = (
    "INSERT INTO market.kalshi_candles (market_ticker, period_minutes, end_ts, price_open, "
    "price_high, price_low, price_close, price_mean, price_previous, yes_bid_open, yes_bid_high, "
    "yes_bid_low, yes_bid_close, yes_ask_open, yes_ask_high, yes_ask_low, yes_ask_close, volume, "
    "open_interest) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s, %s) ON CONFLICT (market_ticker, period_minutes, end_ts) DO UPDATE SET "
    "price_open = EXCLUDED.price_open, price_high = EXCLUDED.price_high, "
    "price_low = EXCLUDED.price_low, price_close = EXCLUDED.price_close, "
    "price_mean = EXCLUDED.price_mean, price_previous = EXCLUDED.price_previous, "
    "yes_bid_open = EXCLUDED.yes_bid_open, yes_bid_high = EXCLUDED.yes_bid_high, "
    "yes_bid_low = EXCLUDED.yes_bid_low, yes_bid_close = EXCLUDED.yes_bid_close, "
    "yes_ask_open = EXCLUDED.yes_ask_open, yes_ask_high = EXCLUDED.yes_ask_high, "
    "yes_ask_low = EXCLUDED.yes_ask_low, yes_ask_close = EXCLUDED.yes_ask_close, "
    "volume = EXCLUDED.volume, open_interest = EXCLUDED.open_interest, "
    "fetched_at = now()"
)

SELECT_PROGRESS: Final = (
    "SELECT market_ticker, trades_from, trades_through, trades_loaded, trades_complete, "
    "candles_through FROM market.backfill_progress WHERE market_ticker = ANY(%s)"
)

UPSERT_PROGRESS: Final = (
    "INSERT INTO market.backfill_progress (market_ticker, trades_from, trades_through, "
    "trades_loaded, trades_complete, candles_through) VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (market_ticker) DO UPDATE SET trades_from = EXCLUDED.trades_from, "
    "trades_through = EXCLUDED.trades_through, trades_loaded = EXCLUDED.trades_loaded, "
    "trades_complete = EXCLUDED.trades_complete, candles_through = EXCLUDED.candles_through, "
    "updated_at = now()"
)


async def save_candles(conn: AsyncConnection[Any], rows: Sequence[KalshiCandleRow]) -> None:
    """Upsert Kalshi's candles (a later fetch of a period replaces the earlier one)."""
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(UPSERT_KALSHI_CANDLE, rows)


async def read_progress(conn: AsyncConnection[Any], tickers: Sequence[str]) -> dict[str, Progress]:
    cur = await conn.execute(SELECT_PROGRESS, (list(tickers),))
    return {r[0]: Progress(*r) for r in await cur.fetchall()}


async def save_progress(conn: AsyncConnection[Any], p: Progress) -> None:
    await conn.execute(UPSERT_PROGRESS, tuple(p))
