"""Candle reads for the API and the refresh of candle aggregates after late trades.

Reads go to the candle relations of migration 0002 (continuous aggregates on the Community edition,
plain views on Apache) through fixed, parameterised queries chosen by interval, plus three
index-friendly look-ups of the state before the range (``ORDER BY ts DESC LIMIT 1`` on the
``(market_ticker, ts DESC)`` index of each hypertable). Assembly is pure: kalshibook.domain.candles.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final, LiteralString

import msgspec
from psycopg import AsyncConnection, AsyncCursor

from kalshibook.domain.candles import (
    Candle,
    CarriedIn,
    Interval,
    QuoteBucket,
    StatsBucket,
    TradeBucket,
    assemble,
    period_ceil,
    period_floor,
)
from kalshibook.errors import StorageError, UnknownMarket

__all__ = (
    "CANDLE_CHAIN",
    "CandleData",
    "fetch_candle_data",
    "market_exists",
    "read_candles",
    "refresh_candles",
    "refresh_window",
)

AConn = AsyncConnection[Any]

# --- reads --------------------------------------------------------------------------------------

# One fixed query per source and interval (the relation is never spliced into SQL).
TRADES_SQL: Final[dict[Interval, LiteralString]] = {
    "1m": """
SELECT bucket, open, high, low, close, volume, notional, trade_count,
       taker_yes_volume, taker_no_volume
FROM market.candles_trades_1m
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
""",
    "1h": """
SELECT bucket, open, high, low, close, volume, notional, trade_count,
       taker_yes_volume, taker_no_volume
FROM market.candles_trades_1h
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
""",
    "1d": """
SELECT bucket, open, high, low, close, volume, notional, trade_count,
       taker_yes_volume, taker_no_volume
FROM market.candles_trades_1d
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
""",
}
QUOTES_SQL: Final[dict[Interval, LiteralString]] = {
    "1m": """
SELECT bucket, yes_bid_high, yes_bid_low, yes_bid_close, yes_ask_high, yes_ask_low, yes_ask_close
FROM market.candles_quotes_1m
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
""",
    "1h": """
SELECT bucket, yes_bid_high, yes_bid_low, yes_bid_close, yes_ask_high, yes_ask_low, yes_ask_close
FROM market.candles_quotes_1h
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
""",
    "1d": """
SELECT bucket, yes_bid_high, yes_bid_low, yes_bid_close, yes_ask_high, yes_ask_low, yes_ask_close
FROM market.candles_quotes_1d
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
""",
}
STATS_SQL: Final[dict[Interval, LiteralString]] = {
    "1m": """
SELECT bucket, open_interest
FROM market.candles_stats_1m
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
""",
    "1h": """
SELECT bucket, open_interest
FROM market.candles_stats_1h
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
""",
    "1d": """
SELECT bucket, open_interest
FROM market.candles_stats_1d
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
ORDER BY bucket
""",
}

# The state before the range: the newest row before ``start``, on the (market_ticker, ts DESC)
# index. ``since`` bounds the search so that plan-time chunk exclusion keeps only the chunks of the
# last day: planning the unbounded query touches every chunk (tens of ms after a year of data).
# Only when that day has no row is the search repeated over all history (since = 1970).
LAST_TRADE_BEFORE: Final = """
SELECT yes_price FROM market.trades
WHERE market_ticker = %(ticker)s AND ts < %(start)s AND ts >= %(since)s
ORDER BY ts DESC, exchange_seq DESC LIMIT 1
"""
LAST_QUOTE_BEFORE: Final = """
SELECT yes_bid, yes_ask FROM market.quotes
WHERE market_ticker = %(ticker)s AND ts < %(start)s AND ts >= %(since)s
ORDER BY ts DESC LIMIT 1
"""
LAST_OPEN_INTEREST_BEFORE: Final = """
SELECT open_interest FROM market.market_stats
WHERE market_ticker = %(ticker)s AND ts < %(start)s AND ts >= %(since)s
  AND open_interest IS NOT NULL
ORDER BY ts DESC LIMIT 1
"""
CARRY_SEARCH_WINDOW: Final = timedelta(days=1)
_NO_LOWER_BOUND: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Community edition: the state before the range from the candle aggregates instead of the raw
# hypertables (whose old chunks are compressed, and whose plans span every chunk of the history):
# the last 1m bucket in the two days before ``start`` (a 1m bucket below ``start`` lies wholly
# before it), else the last 1d bucket whose last row is before ``start``. Two days, not one: a
# New York day is at most 25 hours, so a 1d bucket that straddles ``start`` (and is skipped) has
# all its rows before ``start`` inside the 1m window. Each aggregate's close is its last row's
# value, so this is the same value the raw look-ups return. One statement, one round trip.
CARRIED_FROM_AGGREGATES: Final = """
SELECT
  coalesce(
    (SELECT close FROM market.candles_trades_1m
     WHERE market_ticker = %(ticker)s AND bucket >= %(near)s AND bucket < %(start)s
     ORDER BY bucket DESC LIMIT 1),
    (SELECT close FROM market.candles_trades_1d
     WHERE market_ticker = %(ticker)s AND bucket < %(start)s AND last_ts < %(start)s
     ORDER BY bucket DESC LIMIT 1)),
  q.yes_bid_close, q.yes_ask_close,
  coalesce(
    (SELECT open_interest FROM market.candles_stats_1m
     WHERE market_ticker = %(ticker)s AND bucket >= %(near)s AND bucket < %(start)s
       AND open_interest_ts IS NOT NULL
     ORDER BY bucket DESC LIMIT 1),
    (SELECT open_interest FROM market.candles_stats_1d
     WHERE market_ticker = %(ticker)s AND bucket < %(start)s AND open_interest_ts < %(start)s
     ORDER BY bucket DESC LIMIT 1))
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
  SELECT yes_bid_close, yes_ask_close FROM (
    (SELECT 1 AS pri, yes_bid_close, yes_ask_close FROM market.candles_quotes_1m
     WHERE market_ticker = %(ticker)s AND bucket >= %(near)s AND bucket < %(start)s
     ORDER BY bucket DESC LIMIT 1)
    UNION ALL
    (SELECT 2, yes_bid_close, yes_ask_close FROM market.candles_quotes_1d
     WHERE market_ticker = %(ticker)s AND bucket < %(start)s AND last_ts < %(start)s
     ORDER BY bucket DESC LIMIT 1)
  ) AS both_levels
  ORDER BY pri LIMIT 1
) AS q ON true
"""
CARRIED_NEAR: Final = timedelta(days=2)
# Whether this database's candle relations are continuous aggregates (Community edition) or plain
# views (Apache): decided by the relations themselves, not by the server's licence.
CANDLES_ARE_AGGREGATES: Final = """
SELECT EXISTS (SELECT FROM timescaledb_information.continuous_aggregates
               WHERE view_schema = 'market' AND view_name = 'candles_trades_1m')
"""
MARKET_EXISTS: Final = """
SELECT EXISTS (SELECT 1 FROM market.markets WHERE ticker = %(ticker)s)
    OR EXISTS (SELECT 1 FROM market.trades WHERE market_ticker = %(ticker)s)
    OR EXISTS (SELECT 1 FROM market.quotes WHERE market_ticker = %(ticker)s)
    OR EXISTS (SELECT 1 FROM market.market_stats WHERE market_ticker = %(ticker)s)
"""


class CandleData(msgspec.Struct, frozen=True):
    """The rows one candle request needs (aggregates of the range + the state before it)."""

    trades: list[TradeBucket]
    quotes: list[QuoteBucket]
    stats: list[StatsBucket]
    carried: CarriedIn

    @property
    def empty(self) -> bool:
        c = self.carried
        return not (self.trades or self.quotes or self.stats) and (
            c.last_price is None
            and c.yes_bid is None
            and c.yes_ask is None
            and c.open_interest is None
        )


async def _last_before(
    cur: AsyncCursor[Any], query: LiteralString, ticker: str, start: datetime
) -> tuple[Any, ...] | None:
    """The newest row before ``start``: the last day first, then all of history."""
    for since in (start - CARRY_SEARCH_WINDOW, _NO_LOWER_BOUND):
        await cur.execute(query, {"ticker": ticker, "start": start, "since": since})
        row = await cur.fetchone()
        if row is not None:
            return tuple(row)
    return None


async def fetch_candle_data(
    conn: AConn, ticker: str, interval: Interval, start: datetime, end: datetime
) -> CandleData:
    """Aggregate rows with bucket in ``[start, end)`` and the state before ``start``.

    ``start`` must be a period boundary of ``interval`` (see ``period_floor``).
    """
    params = {"ticker": ticker, "start": start, "end": end}
    async with conn.cursor() as cur:
        await cur.execute(TRADES_SQL[interval], params)
        trades = [
            TradeBucket(
                bucket=r[0],
                open=r[1],
                high=r[2],
                low=r[3],
                close=r[4],
                volume=r[5],
                notional=r[6],
                trade_count=int(r[7]),
                taker_yes_volume=r[8],
                taker_no_volume=r[9],
            )
            for r in await cur.fetchall()
        ]
        await cur.execute(QUOTES_SQL[interval], params)
        quotes = [
            QuoteBucket(
                bucket=r[0],
                yes_bid_high=r[1],
                yes_bid_low=r[2],
                yes_bid_close=r[3],
                yes_ask_high=r[4],
                yes_ask_low=r[5],
                yes_ask_close=r[6],
            )
            for r in await cur.fetchall()
        ]
        await cur.execute(STATS_SQL[interval], params)
        stats = [StatsBucket(bucket=r[0], open_interest=r[1]) for r in await cur.fetchall()]

        if await _community(conn, cur):
            await cur.execute(
                CARRIED_FROM_AGGREGATES,
                {"ticker": ticker, "start": start, "near": start - CARRIED_NEAR},
            )
            row = await cur.fetchone()
            assert row is not None  # one row always
            last_price, yes_bid, yes_ask, open_interest = row
            carried = CarriedIn(
                last_price=last_price, yes_bid=yes_bid, yes_ask=yes_ask, open_interest=open_interest
            )
        else:
            trade_row = await _last_before(cur, LAST_TRADE_BEFORE, ticker, start)
            quote_row = await _last_before(cur, LAST_QUOTE_BEFORE, ticker, start)
            oi_row = await _last_before(cur, LAST_OPEN_INTEREST_BEFORE, ticker, start)
            carried = CarriedIn(
                last_price=trade_row[0] if trade_row else None,
                yes_bid=quote_row[0] if quote_row else None,
                yes_ask=quote_row[1] if quote_row else None,
                open_interest=oi_row[0] if oi_row else None,
            )
    return CandleData(trades, quotes, stats, carried)


_AGGREGATES: dict[tuple[str, int, str], bool] = {}


async def _community(conn: AConn, cur: AsyncCursor[Any]) -> bool:
    """Whether the candle relations are continuous aggregates; asked once per server and
    database (migrations create them one way or the other, once)."""
    info = conn.info
    key = (info.host, info.port, info.dbname)
    known = _AGGREGATES.get(key)
    if known is None:
        await cur.execute(CANDLES_ARE_AGGREGATES)
        row = await cur.fetchone()
        known = _AGGREGATES[key] = bool(row and row[0])
    return known


async def market_exists(conn: AConn, ticker: str) -> bool:
    """True when the market is in ``market.markets`` or has any trade, quote or stats row."""
    async with conn.cursor() as cur:
        await cur.execute(MARKET_EXISTS, {"ticker": ticker})
        row = await cur.fetchone()
    return bool(row and row[0])


async def read_candles(
    conn: AConn,
    ticker: str,
    interval: Interval,
    start: datetime,
    end: datetime,
    *,
    fill: bool,
    until: datetime | None = None,
) -> list[Candle]:
    """Candles of ``ticker`` for the periods starting in ``[period_floor(start), end)``.

    Raises UnknownMarket when the market is unknown. ``until`` (normally now) stops ``fill`` from
    inventing periods that have not started yet.
    """
    first = period_floor(start, interval)
    data = await fetch_candle_data(conn, ticker, interval, first, end)
    if data.empty and not await market_exists(conn, ticker):
        raise UnknownMarket(ticker)
    return assemble(
        interval,
        first,
        end,
        trades=data.trades,
        quotes=data.quotes,
        stats=data.stats,
        carried=data.carried,
        fill=fill,
        until=until,
    )


# --- refresh ------------------------------------------------------------------------------------

# Chain order: each level after the one it is built from (1d reads 1h reads 1m).
CANDLE_CHAIN: Final[tuple[tuple[str, Interval], ...]] = (
    ("market.candles_trades_1m", "1m"),
    ("market.candles_quotes_1m", "1m"),
    ("market.candles_stats_1m", "1m"),
    ("market.candles_trades_1h", "1h"),
    ("market.candles_quotes_1h", "1h"),
    ("market.candles_stats_1h", "1h"),
    ("market.candles_trades_1d", "1d"),
    ("market.candles_quotes_1d", "1d"),
    ("market.candles_stats_1d", "1d"),
)

CONTINUOUS_AGGREGATES: Final = """
SELECT view_schema || '.' || view_name FROM timescaledb_information.continuous_aggregates
WHERE view_schema = 'market'
"""
# The database's clock, the one the refresh policies use.
DB_NOW: Final = "SELECT now()"
REFRESH: Final = "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)"


def refresh_window(
    start: datetime, end: datetime, level: Interval, now: datetime
) -> tuple[datetime, datetime] | None:
    """The window ``refresh_candles`` gives the ``level`` aggregates, or None when there is none.

    - Every level gets the same window, ``[start, end)`` widened to New York midnights (which are
      also whole UTC hours and minutes): the 1h level then only reads 1m rows that were refreshed
      just before it, and the 1d level 1h rows, even for hours/days only partly inside
      ``[start, end)``. A refresh only recomputes what changed since the last refresh (docs:
      Refresh continuous aggregates, "Manually refresh"), so the wider windows cost little.
    - The window never reaches into the bucket still in progress at ``now``: materialising it
      would move the cagg's watermark to that bucket's end, and real-time aggregation only adds
      raw data *after* the watermark, so the bucket would then show the rows of the refresh time
      until a policy re-materialises it (up to a day for 1d). TimescaleDB docs, "Troubleshoot
      continuous aggregates: watermark is in the future"; timescale/timescaledb#3877.
    """
    lo = period_floor(start, "1d")
    hi = min(period_ceil(end, "1d"), period_floor(now, level))
    return (lo, hi) if lo < hi else None


async def refresh_candles(conn: AConn, start: datetime, end: datetime) -> list[str]:
    """Re-materialise every candle continuous aggregate over ``[start, end)``, in chain order.

    Windows are aligned as :func:`refresh_window` says (a refresh only recomputes buckets lying
    entirely inside its window, and never the bucket in progress: real-time aggregation serves
    that one). On the Apache edition the candle relations are plain views, always current:
    nothing to do. ``conn`` must be in autocommit mode (``refresh_continuous_aggregate`` runs
    several transactions and refuses a transaction block). Returns the relations refreshed (a
    level whose window lies inside its bucket in progress is skipped).
    """
    if end <= start:
        raise ValueError("refresh window is empty: end must be after start")
    if not conn.autocommit:
        raise StorageError("refresh_candles needs an autocommit connection")
    async with conn.cursor() as cur:
        await cur.execute(CONTINUOUS_AGGREGATES)
        caggs = {str(r[0]) for r in await cur.fetchall()}
        done: list[str] = []
        if not caggs:
            return done
        await cur.execute(DB_NOW)
        row = await cur.fetchone()
        assert row is not None
        now: datetime = row[0]
        for name, level in CANDLE_CHAIN:
            if name not in caggs:
                continue
            window = refresh_window(start, end, level, now)
            if window is None:
                continue
            await cur.execute(REFRESH, (name, *window))
            done.append(name)
    return done
