"""Candle reads for the API and the refresh of candle aggregates after late trades.

Reads go to the candle relations of migration 0002 (continuous aggregates on the Community edition,
plain views on Apache) through one fixed, parameterised query per interval joining the trades,
quotes and stats levels, plus the state before the range (from the 1m/1d aggregates on Community,
index-friendly ``ORDER BY ts DESC LIMIT 1`` look-ups of the hypertables on Apache). Numbers are
read as text. Assembly is pure: kalshibook.domain.candle_rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final, LiteralString

import msgspec
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import args_row

from kalshibook.domain.candle_rows import BucketRow, CandleRow, CarriedText, assemble_rows
from kalshibook.domain.candles import Candle, candle_from_row
from kalshibook.domain.periods import Interval, period_ceil, period_floor
from kalshibook.errors import StorageError, UnknownMarket

__all__ = (
    "CANDLE_CHAIN",
    "CandleData",
    "fetch_candle_data",
    "market_exists",
    "read_candle_rows",
    "read_candles",
    "refresh_candles",
    "refresh_window",
)

AConn = AsyncConnection[Any]

# --- reads --------------------------------------------------------------------------------------

# One statement per interval: the trades, quotes and stats relations of the level joined on the
# bucket, numbers as text (exact, and no Decimal per value: see domain.candle_rows). Fixed queries
# (the relation is never spliced into SQL at run time).
_ROWS_TEMPLATE = """
SELECT bucket, t.open::text, t.high::text, t.low::text, t.close::text, t.volume::text,
       t.notional::text, t.trade_count, t.taker_yes_volume::text, t.taker_no_volume::text,
       q.bucket IS NOT NULL,
       q.yes_bid_high::text, q.yes_bid_low::text, q.yes_bid_close::text,
       q.yes_ask_high::text, q.yes_ask_low::text, q.yes_ask_close::text,
       s.open_interest::text
FROM (SELECT bucket, open, high, low, close, volume, notional, trade_count, taker_yes_volume,
             taker_no_volume
      FROM market.candles_trades_{level}
      WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s) AS t
FULL JOIN (
      SELECT bucket, yes_bid_high, yes_bid_low, yes_bid_close, yes_ask_high,
             yes_ask_low, yes_ask_close
      FROM market.candles_quotes_{level}
      WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s) AS q
  USING (bucket)
FULL JOIN (
      SELECT bucket, open_interest
      FROM market.candles_stats_{level}
      WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s) AS s
  USING (bucket)
ORDER BY bucket
"""
ROWS_SQL: Final[dict[Interval, str]] = {
    "1m": _ROWS_TEMPLATE.format(level="1m"),
    "1h": _ROWS_TEMPLATE.format(level="1h"),
    "1d": _ROWS_TEMPLATE.format(level="1d"),
}

# Apache edition: the state before the range, the newest row before ``start`` on the
# (market_ticker, ts DESC) index. ``since`` bounds the search so that plan-time chunk exclusion
# keeps only the chunks of the last day: planning the unbounded query touches every chunk (tens of
# ms after a year of data). Only when that day has no row is the search repeated over all history
# (since = 1970).
LAST_TRADE_BEFORE: Final = """
SELECT yes_price::text FROM market.trades
WHERE market_ticker = %(ticker)s AND ts < %(start)s AND ts >= %(since)s
ORDER BY ts DESC LIMIT 1
"""
LAST_QUOTE_BEFORE: Final = """
SELECT yes_bid::text, yes_ask::text FROM market.quotes
WHERE market_ticker = %(ticker)s AND ts < %(start)s AND ts >= %(since)s
ORDER BY ts DESC LIMIT 1
"""
LAST_OPEN_INTEREST_BEFORE: Final = """
SELECT open_interest::text FROM market.market_stats
WHERE market_ticker = %(ticker)s AND ts < %(start)s AND ts >= %(since)s
  AND open_interest IS NOT NULL
ORDER BY ts DESC LIMIT 1
"""
CARRY_SEARCH_WINDOW: Final = timedelta(days=1)
_NO_LOWER_BOUND: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Community edition: the state before the range from the candle aggregates instead of the raw
# hypertables (whose old chunks are compressed, and whose plans span every chunk of the history).
# First the last 1m bucket in the two days before ``start`` (a 1m bucket below ``start`` lies
# wholly before it); only for what that leaves unknown, the last 1d bucket whose last row is before
# ``start``. Two days, not one: a New York day is at most 25 hours, so a 1d bucket that straddles
# ``start`` (and is skipped) has all its rows before ``start`` inside the 1m window. Each
# aggregate's close is its last row's value, so this is the same value the raw look-ups return.
# Two statements, not one: planning the 1d look-ups (three real-time levels each) costs several
# ms, and a market with any row in the last two days never needs them.
CARRIED_NEAR_SQL: Final = """
SELECT
  (SELECT close::text FROM market.candles_trades_1m
   WHERE market_ticker = %(ticker)s AND bucket >= %(near)s AND bucket < %(start)s
   ORDER BY bucket DESC LIMIT 1),
  q.found, q.yes_bid_close::text, q.yes_ask_close::text,
  (SELECT open_interest::text FROM market.candles_stats_1m
   WHERE market_ticker = %(ticker)s AND bucket >= %(near)s AND bucket < %(start)s
     AND open_interest_ts IS NOT NULL
   ORDER BY bucket DESC LIMIT 1)
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
  SELECT true AS found, yes_bid_close, yes_ask_close FROM market.candles_quotes_1m
  WHERE market_ticker = %(ticker)s AND bucket >= %(near)s AND bucket < %(start)s
  ORDER BY bucket DESC LIMIT 1
) AS q ON true
"""
CARRIED_FAR_SQL: Final = """
SELECT
  (SELECT close::text FROM market.candles_trades_1d
   WHERE market_ticker = %(ticker)s AND bucket < %(start)s AND last_ts < %(start)s
   ORDER BY bucket DESC LIMIT 1),
  q.found, q.yes_bid_close::text, q.yes_ask_close::text,
  (SELECT open_interest::text FROM market.candles_stats_1d
   WHERE market_ticker = %(ticker)s AND bucket < %(start)s AND open_interest_ts < %(start)s
   ORDER BY bucket DESC LIMIT 1)
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
  SELECT true AS found, yes_bid_close, yes_ask_close FROM market.candles_quotes_1d
  WHERE market_ticker = %(ticker)s AND bucket < %(start)s AND last_ts < %(start)s
  ORDER BY bucket DESC LIMIT 1
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
    """The rows one candle request needs (one per bucket with any source row + the state before
    the range), numbers as text."""

    rows: list[BucketRow]
    carried: CarriedText

    @property
    def empty(self) -> bool:
        c = self.carried
        return not self.rows and (
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


def _carried(near: tuple[Any, ...], far: tuple[Any, ...] | None) -> CarriedText:
    """The near (1m) look-up's values, each completed from the far (1d) one when missing."""
    price, q_found, bid, ask, oi = near
    if far is not None:
        price = price if price is not None else far[0]
        if not q_found:
            bid, ask = far[2], far[3]
        oi = oi if oi is not None else far[4]
    return CarriedText(last_price=price, yes_bid=bid, yes_ask=ask, open_interest=oi)


async def fetch_candle_data(
    conn: AConn, ticker: str, interval: Interval, start: datetime, end: datetime
) -> CandleData:
    """One row per bucket in ``[start, end)`` with any source row, and the state before ``start``.

    ``start`` must be a period boundary of ``interval`` (see ``period_floor``). On the Community
    edition the rows and the near carried-in look-up go in one round trip (pipeline).
    """
    params = {"ticker": ticker, "start": start, "end": end}
    carried_params = {"ticker": ticker, "start": start, "near": start - CARRIED_NEAR}
    community = await _community(conn)
    async with conn.cursor(row_factory=args_row(BucketRow)) as rows_cur, conn.cursor() as cur:
        if community:
            async with conn.pipeline():
                await rows_cur.execute(ROWS_SQL[interval], params)
                await cur.execute(CARRIED_NEAR_SQL, carried_params)
            rows = await rows_cur.fetchall()
            near = await cur.fetchone()
            assert near is not None  # one row always
            far = None
            if near[0] is None or not near[1] or near[4] is None:
                await cur.execute(CARRIED_FAR_SQL, carried_params)
                far = await cur.fetchone()
            return CandleData(rows, _carried(tuple(near), None if far is None else tuple(far)))
        await rows_cur.execute(ROWS_SQL[interval], params)
        rows = await rows_cur.fetchall()
        trade_row = await _last_before(cur, LAST_TRADE_BEFORE, ticker, start)
        quote_row = await _last_before(cur, LAST_QUOTE_BEFORE, ticker, start)
        oi_row = await _last_before(cur, LAST_OPEN_INTEREST_BEFORE, ticker, start)
    carried = CarriedText(
        last_price=trade_row[0] if trade_row else None,
        yes_bid=quote_row[0] if quote_row else None,
        yes_ask=quote_row[1] if quote_row else None,
        open_interest=oi_row[0] if oi_row else None,
    )
    return CandleData(rows, carried)


_AGGREGATES: dict[tuple[str, int, str], bool] = {}


async def _community(conn: AConn) -> bool:
    """Whether the candle relations are continuous aggregates; asked once per server and
    database (migrations create them one way or the other, once)."""
    info = conn.info
    key = (info.host, info.port, info.dbname)
    known = _AGGREGATES.get(key)
    if known is None:
        async with conn.cursor() as cur:
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


async def read_candle_rows(
    conn: AConn,
    ticker: str,
    interval: Interval,
    start: datetime,
    end: datetime,
    *,
    fill: bool,
    until: datetime | None = None,
) -> list[CandleRow]:
    """Candles of ``ticker`` for the periods starting in ``[period_floor(start), end)``, numbers
    as text (the API's path: no Decimal per value).

    Raises UnknownMarket when the market is unknown. ``until`` (normally now) stops ``fill`` from
    inventing periods that have not started yet.
    """
    first = period_floor(start, interval)
    data = await fetch_candle_data(conn, ticker, interval, first, end)
    if data.empty and not await market_exists(conn, ticker):
        raise UnknownMarket(ticker)
    return assemble_rows(
        interval, first, end, rows=data.rows, carried=data.carried, fill=fill, until=until
    )


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
    """:func:`read_candle_rows` with Decimal numbers."""
    rows = await read_candle_rows(conn, ticker, interval, start, end, fill=fill, until=until)
    return [candle_from_row(r) for r in rows]


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
