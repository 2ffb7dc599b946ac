"""Candle reads for the API: the rows of a range and the state before it (numbers as text).

Reads go to the candle relations of migration 0002 (continuous aggregates on the Community
edition, plain views on Apache): one parameterised statement per interval returning one row per
bucket of the level's trades, quotes and stats relations, plus the state before the range (from
the 1m/1d aggregates on Community, index-friendly ``ORDER BY ts DESC LIMIT 1`` look-ups of the
hypertables on Apache). Assembly is pure: kalshibook.domain.candle_rows.

Community edition, below the watermark. A real-time continuous aggregate is a UNION of its
materialisation (``bucket < watermark``) and the aggregation of its source above the watermark,
and every query of it plans both, through the whole 1m → 1h → 1d chain: several ms of planning per
relation, most of a request. What lies below the watermark is exactly the materialisation's rows,
so the read asks the watermarks first (one short statement) and then reads the materialisation
hypertables directly for ``[start, min(end, watermark))`` and the aggregate itself only for
``[watermark, end)`` when the range reaches past it: the same rows for a fraction of the planning.
The hypertables' names come from TimescaleDB's catalog (quoted identifiers, never request input),
looked up once per database and again if a migration replaced them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import msgspec
from psycopg import AsyncConnection, AsyncCursor, errors, sql
from psycopg.rows import args_row

from kalshibook.domain.candle_rows import (
    CandleRow,
    CarriedText,
    QuoteBucketText,
    StatsBucketText,
    TradeBucketText,
    assemble_rows,
)
from kalshibook.domain.candles import Candle, candle_from_row
from kalshibook.domain.periods import Interval, period_floor
from kalshibook.errors import UnknownMarket

__all__ = (
    "CandleData",
    "fetch_candle_data",
    "market_exists",
    "read_candle_rows",
    "read_candles",
    "warm_candle_reads",
)

AConn = AsyncConnection[Any]
T = TypeVar("T")

# Three statements per interval, one per source relation of the level (trades, quotes, stats),
# each one row per bucket with any row, numbers as text (exact, and no Decimal per value: see
# domain.candle_rows), in one pipeline; assembly joins them on the bucket. Not one statement
# grouping a UNION ALL of the three by bucket (as before): at 10M trades that statement's sort and
# 17-aggregate GroupAggregate were 3.6 of its 6.2 ms for a day of 1m candles (EXPLAIN ANALYZE,
# buffers hot), and its rows carried every other source's columns as NULLs; nor a FULL JOIN: a
# full join of real-time aggregates planned one side as a merge over a re-evaluated aggregate
# (seconds on a year of data). The bucket comes as integer microseconds since the epoch (exact:
# timestamptz has microsecond resolution), cheaper to decode and to place than a datetime per row.
# {relation}: the level's aggregate, or its materialisation.
TRADE_ROWS_TEMPLATE: Final = """
SELECT (extract(epoch FROM bucket) * 1000000)::bigint, open::text, high::text, low::text,
       close::text, volume::text, notional::text, trade_count, taker_yes_volume::text,
       taker_no_volume::text
FROM {relation}
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
"""
QUOTE_ROWS_TEMPLATE: Final = """
SELECT (extract(epoch FROM bucket) * 1000000)::bigint, yes_bid_high::text, yes_bid_low::text,
       yes_bid_close::text, yes_ask_high::text, yes_ask_low::text, yes_ask_close::text
FROM {relation}
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
"""
STATS_ROWS_TEMPLATE: Final = """
SELECT (extract(epoch FROM bucket) * 1000000)::bigint, open_interest::text
FROM {relation}
WHERE market_ticker = %(ticker)s AND bucket >= %(start)s AND bucket < %(end)s
"""
ROWS_TEMPLATES: Final = (TRADE_ROWS_TEMPLATE, QUOTE_ROWS_TEMPLATE, STATS_ROWS_TEMPLATE)
"""The rows statements in the order of ``_SOURCES``."""
_ROW_TYPES: Final = (TradeBucketText, QuoteBucketText, StatsBucketText)

# Community edition: the state before the range from the candle aggregates instead of the raw
# hypertables (whose old chunks are compressed, and whose plans span every chunk of the history).
# First the last 1m bucket in the two days before ``start`` (a 1m bucket below ``start`` lies
# wholly before it); only for what that leaves unknown, the last 1d bucket whose last row is before
# ``start``. Two days, not one: a New York day is at most 25 hours, so a 1d bucket that straddles
# ``start`` (and is skipped) has all its rows before ``start`` inside the 1m window. Each
# aggregate's close is its last row's value, so this is the same value the raw look-ups return.
# Two statements, not one: planning the 1d look-ups (three real-time levels each) costs several
# ms, and a market with any row in the last two days never needs them.
CARRIED_NEAR_TEMPLATE: Final = """
SELECT
  (SELECT close::text FROM {trades}
   WHERE market_ticker = %(ticker)s AND bucket >= %(near)s AND bucket < %(start)s
   ORDER BY bucket DESC LIMIT 1),
  q.found, q.yes_bid_close::text, q.yes_ask_close::text,
  (SELECT open_interest::text FROM {stats}
   WHERE market_ticker = %(ticker)s AND bucket >= %(near)s AND bucket < %(start)s
     AND open_interest_ts IS NOT NULL
   ORDER BY bucket DESC LIMIT 1)
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
  SELECT true AS found, yes_bid_close, yes_ask_close FROM {quotes}
  WHERE market_ticker = %(ticker)s AND bucket >= %(near)s AND bucket < %(start)s
  ORDER BY bucket DESC LIMIT 1
) AS q ON true
"""
CARRIED_FAR_TEMPLATE: Final = """
SELECT
  (SELECT close::text FROM {trades}
   WHERE market_ticker = %(ticker)s AND bucket < %(start)s AND last_ts < %(start)s
   ORDER BY bucket DESC LIMIT 1),
  q.found, q.yes_bid_close::text, q.yes_ask_close::text,
  (SELECT open_interest::text FROM {stats}
   WHERE market_ticker = %(ticker)s AND bucket < %(start)s AND open_interest_ts < %(start)s
   ORDER BY bucket DESC LIMIT 1)
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
  SELECT true AS found, yes_bid_close, yes_ask_close FROM {quotes}
  WHERE market_ticker = %(ticker)s AND bucket < %(start)s AND last_ts < %(start)s
  ORDER BY bucket DESC LIMIT 1
) AS q ON true
"""
CARRIED_NEAR: Final = timedelta(days=2)

_SOURCES: Final = ("trades", "quotes", "stats")


def _relations(interval: Interval) -> dict[str, sql.Identifier]:
    return {s: sql.Identifier("market", f"candles_{s}_{interval}") for s in _SOURCES}


def _rows_sql(relations: dict[str, sql.Identifier]) -> tuple[sql.Composed, ...]:
    """The rows statements (trades, quotes, stats) over these relations."""
    return tuple(
        sql.SQL(t).format(relation=relations[s])
        for s, t in zip(_SOURCES, ROWS_TEMPLATES, strict=True)
    )


# The same statements over the candle relations (aggregates or views), fixed.
ROWS_SQL: Final[dict[Interval, tuple[sql.Composed, ...]]] = {
    i: _rows_sql(_relations(i)) for i in ("1m", "1h", "1d")
}
CARRIED_NEAR_SQL: Final = sql.SQL(CARRIED_NEAR_TEMPLATE).format(**_relations("1m"))
CARRIED_FAR_SQL: Final = sql.SQL(CARRIED_FAR_TEMPLATE).format(**_relations("1d"))

# Apache edition: the state before the range, the newest row before ``start`` on the
# (market_ticker, ts DESC) index. ``since`` bounds the search so that plan-time chunk exclusion
# keeps only the chunks of the last day: planning the unbounded query touches every chunk (tens of
# ms after a year of data). Only when that day has no row is the search repeated over all history
# (since = 1970).
LAST_TRADE_BEFORE: Final = """
SELECT yes_price::text FROM market.trades
WHERE market_ticker = %(ticker)s AND ts < %(start)s AND ts >= %(since)s
ORDER BY ts DESC, exchange_seq DESC LIMIT 1
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
LAST_BEFORE: Final = (LAST_TRADE_BEFORE, LAST_QUOTE_BEFORE, LAST_OPEN_INTEREST_BEFORE)
CARRY_SEARCH_WINDOW: Final = timedelta(days=1)
_NO_LOWER_BOUND: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Community edition: the candle reads' planner settings, for this read's transaction only (the
# third argument of set_config: SET LOCAL). No parallel workers: one market's buckets are at most
# max_candles rows from a few chunks, yet the planner picked a two-worker Gather for a day of 1m
# candles, and starting the workers cost ~25 ms of a 30 ms statement (10M trades, 2 CPUs);
# serially it took ~4 ms. No hash aggregation: the aggregates' live part (above the watermark)
# groups raw rows by bucket, which arrive in bucket order from the (market_ticker, ts) indexes;
# the setting was measured when one statement also grouped the three relations' rows (a
# HashAggregate and a sort of its output cost ~1 ms of ~4.5 server-side for a day of 1m at 10M
# trades), and is kept for the live part's grouping. Generic plans: the API's
# connections force custom plans (for the trades pages' optional filters), so every execution of
# a prepared candle statement was planned again, over the materialisations' chunks; these
# statements have no optional filter, and TimescaleDB excludes the chunks at executor start-up
# instead. Interleaved at 10M trades: a read of 30 days of 1h 11.8 -> 8.6 ms p50, a year of 1d
# 10.2 -> 8.2, a day of 1m 14.1 -> 12.9. The statements read under these settings are prepared
# at their first execution on a connection (``prepare=True``), not at psycopg's 5th: an unprepared
# (unnamed) statement is planned again at every execution, and under force_generic_plan that is a
# generic plan over every chunk of the relations, ~25-35 ms at 10M trades, so a new pooled
# connection's first five candle reads of each kind took 30-50 ms each, against ~8-12 once
# prepared (bench/bench_candles.py's cold p99). Now only its first read of each kind plans, and
# the API's pools make that read before handing the connection out (warm_candle_reads).
READ_PLANS: Final = """
SELECT set_config('max_parallel_workers_per_gather', '0', true),
       set_config('enable_hashagg', 'off', true),
       set_config('plan_cache_mode', 'force_generic_plan', true)
"""

# The candle aggregates' materialisation hypertables (Community edition; none on Apache).
MATERIALISATIONS: Final = """
SELECT c.user_view_name, c.mat_hypertable_id, h.schema_name, h.table_name
FROM _timescaledb_catalog.continuous_agg AS c
JOIN _timescaledb_catalog.hypertable AS h ON h.id = c.mat_hypertable_id
WHERE c.user_view_schema = 'market'
"""
# Whether the candle relations exist at all (a database not yet migrated has none).
CANDLE_RELATIONS_EXIST: Final = "SELECT to_regclass('market.candles_trades_1d') IS NOT NULL"
# Each aggregate's watermark, as its real-time view computes it (COALESCE to -infinity for a
# never refreshed aggregate), held inside what Python's datetime represents: below 1970 there is
# no source row, so 1970 reads the same rows as -infinity.
WATERMARKS: Final = """
SELECT id, greatest(least(
         coalesce(_timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark(id)),
                  '-infinity'),
         '9999-01-01 00:00+00'), '1970-01-01 00:00+00')
FROM unnest(%(ids)s::int[]) AS id
"""
# Whether a market without candle data in or before a range exists at all: listed, or with any
# trade, book, quote or stats row. Trades and books by their read extents (migration 0006), index
# look-ups. Quotes and stats have no extents, and an EXISTS over their hypertables plans every
# chunk of the history: ~750 ms of planning per unknown ticker after a year of daily chunks at
# 10M trades. On the Community edition they are asked of the 1d aggregates' materialisations (two
# chunks a year) and of the hypertables only from the 1d watermark on (``since``: the chunks after
# it, excluded at planning), which together hold every row the candles show; a row written below
# the watermark and not yet refreshed shows in neither the candles nor here until
# `kalshibook refresh-candles` (or the policy) has run. The Apache edition's candle relations are
# views of the hypertables, so it asks them.
# {quotes}/{stats}: the 1d aggregates' materialisations, or the hypertables (since = 1970).
MARKET_EXISTS_TEMPLATE: Final = """
SELECT EXISTS (SELECT 1 FROM market.markets WHERE ticker = %(ticker)s)
    OR EXISTS (SELECT 1 FROM market.trade_extents WHERE market_ticker = %(ticker)s)
    OR EXISTS (SELECT 1 FROM market.book_extents WHERE market_ticker = %(ticker)s)
    OR EXISTS (SELECT 1 FROM {quotes} WHERE market_ticker = %(ticker)s)
    OR EXISTS (SELECT 1 FROM {stats} WHERE market_ticker = %(ticker)s)
    OR EXISTS (SELECT 1 FROM market.quotes
               WHERE market_ticker = %(ticker)s AND ts >= %(since)s)
    OR EXISTS (SELECT 1 FROM market.market_stats
               WHERE market_ticker = %(ticker)s AND ts >= %(since)s)
"""
MARKET_EXISTS_SQL: Final = sql.SQL(MARKET_EXISTS_TEMPLATE).format(
    quotes=sql.Identifier("market", "quotes"), stats=sql.Identifier("market", "market_stats")
)


class _Direct(msgspec.Struct, frozen=True):
    """One database's materialisations: the statements reading them and their aggregates' ids."""

    ids: dict[Interval, list[int]]
    rows_sql: dict[Interval, tuple[sql.Composed, ...]]
    near_sql: sql.Composed
    far_sql: sql.Composed
    exists_sql: sql.Composed


class CandleData(msgspec.Struct, frozen=True):
    """The rows one candle request needs (each source's rows, one per bucket with any row of that
    source, + the state before the range), numbers as text."""

    trades: list[TradeBucketText]
    quotes: list[QuoteBucketText]
    stats: list[StatsBucketText]
    carried: CarriedText

    def assemble(
        self,
        interval: Interval,
        start: datetime,
        end: datetime,
        *,
        fill: bool = False,
        until: datetime | None = None,
    ) -> list[CandleRow]:
        """The candles of these rows (:func:`~kalshibook.domain.candle_rows.assemble_rows`)."""
        return assemble_rows(
            interval,
            start,
            end,
            trades=self.trades,
            quotes=self.quotes,
            stats=self.stats,
            carried=self.carried,
            fill=fill,
            until=until,
        )

    @property
    def buckets(self) -> set[int]:
        """The buckets (microseconds since the epoch) with a row of any source."""
        return {r.bucket_us for rows in (self.trades, self.quotes, self.stats) for r in rows}

    @property
    def empty(self) -> bool:
        c = self.carried
        return not (self.trades or self.quotes or self.stats) and (
            c.last_price is None
            and c.yes_bid is None
            and c.yes_ask is None
            and c.open_interest is None
        )


_DbKey = tuple[str, int, str]
# None: the candle relations are plain views (Apache edition).
_DIRECT: dict[_DbKey, _Direct | None] = {}


def _db_key(conn: AConn) -> _DbKey:
    info = conn.info
    return (info.host, info.port, info.dbname)


async def _direct(conn: AConn) -> _Direct | None:
    """The materialisations of this database's candle aggregates, or None when the candle
    relations are plain views; looked up once per server and database."""
    key = _db_key(conn)
    if key in _DIRECT:
        return _DIRECT[key]
    async with conn.cursor() as cur:
        await cur.execute(MATERIALISATIONS)
        found = {str(r[0]): (int(r[1]), str(r[2]), str(r[3])) for r in await cur.fetchall()}
    direct: _Direct | None = None
    levels: tuple[Interval, ...] = ("1m", "1h", "1d")
    names = {i: [f"candles_{s}_{i}" for s in _SOURCES] for i in levels}
    if all(n in found for i in levels for n in names[i]):
        tables = {
            i: {s: sql.Identifier(*found[n][1:]) for s, n in zip(_SOURCES, names[i], strict=True)}
            for i in levels
        }
        direct = _Direct(
            ids={i: [found[n][0] for n in names[i]] for i in levels},
            rows_sql={i: _rows_sql(tables[i]) for i in levels},
            near_sql=sql.SQL(CARRIED_NEAR_TEMPLATE).format(**tables["1m"]),
            far_sql=sql.SQL(CARRIED_FAR_TEMPLATE).format(**tables["1d"]),
            exists_sql=sql.SQL(MARKET_EXISTS_TEMPLATE).format(
                quotes=tables["1d"]["quotes"], stats=tables["1d"]["stats"]
            ),
        )
    if direct is None:
        async with conn.cursor() as cur:
            await cur.execute(CANDLE_RELATIONS_EXIST)
            row = await cur.fetchone()
        if row is None or not row[0]:
            return None  # not migrated yet: ask again next time (the pools' warm-up comes first)
    _DIRECT[key] = direct
    return direct


def _carried(near: tuple[Any, ...], far: tuple[Any, ...] | None) -> CarriedText:
    """The near (1m) look-up's values, each completed from the far (1d) one when missing."""
    price, q_found, bid, ask, oi = near
    if far is not None:
        price = price if price is not None else far[0]
        if not q_found:
            bid, ask = far[2], far[3]
        oi = oi if oi is not None else far[4]
    return CarriedText(last_price=price, yes_bid=bid, yes_ask=ask, open_interest=oi)


async def _fetch_community(
    conn: AConn, direct: _Direct, ticker: str, interval: Interval, start: datetime, end: datetime
) -> CandleData:
    ids = direct.ids
    carried_params = {"ticker": ticker, "start": start, "near": start - CARRIED_NEAR}
    # One pipeline: BEGIN, the planner setting and the watermarks go in one round trip, the rows
    # (below the level's watermark from its materialisations, above it from the aggregates) and
    # the carried-in state in the next, COMMIT in the last.
    async with conn.pipeline(), conn.transaction(), AsyncExitStack() as stack:
        cur = await stack.enter_async_context(conn.cursor())
        await conn.execute(READ_PLANS)
        watermark_ids = sorted({*ids["1m"], *ids[interval], *ids["1d"]})
        await cur.execute(WATERMARKS, {"ids": watermark_ids}, prepare=True)
        marks: dict[int, datetime] = {int(r[0]): r[1] for r in await cur.fetchall()}
        level_mark, minute_mark, day_mark = (
            min(marks[i] for i in ids[lv]) for lv in (interval, "1m", "1d")
        )
        parts: list[tuple[tuple[sql.Composed, ...], dict[str, Any]]] = []
        if start < level_mark:
            below = {"ticker": ticker, "start": start, "end": min(end, level_mark)}
            parts.append((direct.rows_sql[interval], below))
        if end > level_mark:
            above = {"ticker": ticker, "start": max(start, level_mark), "end": end}
            parts.append((ROWS_SQL[interval], above))
        pending: list[AsyncCursor[Any]] = []
        for statements, params in parts:
            for statement, row_type in zip(statements, _ROW_TYPES, strict=True):
                rows_cur = conn.cursor(row_factory=args_row(row_type), binary=True)
                await stack.enter_async_context(rows_cur)
                await rows_cur.execute(statement, params, prepare=True)
                pending.append(rows_cur)
        near_sql = direct.near_sql if start <= minute_mark else CARRIED_NEAR_SQL
        await cur.execute(near_sql, carried_params, prepare=True)
        sources: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        for k, rows_cur in enumerate(pending):
            sources[k % len(sources)].extend(await rows_cur.fetchall())
        near = await cur.fetchone()
        assert near is not None  # one row always
        far = None
        if near[0] is None or not near[1] or near[4] is None:
            # every 1d bucket before ``start`` is materialised when ``start`` <= the watermark
            far_sql = direct.far_sql if start <= day_mark else CARRIED_FAR_SQL
            await cur.execute(far_sql, carried_params, prepare=True)
            far = await cur.fetchone()
    carried = _carried(tuple(near), None if far is None else tuple(far))
    return CandleData(*sources, carried)


WARM_TICKER: Final = ""
"""The ticker :func:`warm_candle_reads` reads: no market has it, so the reads find nothing."""
WARM_LIMITS: Final = """
SELECT set_config('lock_timeout', '100ms', false), set_config('statement_timeout', '1s', false)
"""
"""The warm-up's bounds (session-wide while it runs, then reset to the connection's own): a pool
hands a new connection out only once it is warmed, so requests waiting for the pool wait for the
warm-up too. It waits at most 100 ms for any lock (a migration, a chunk being compressed, an
``ACCESS EXCLUSIVE`` on a raw hypertable, which the aggregates' live part reads) and 1 s for any
one statement (its plans take 15-95 ms each at 10M trades, and grow with the chunks), then gives
up: that connection's first reads plan as they did without the warm-up."""
RESET_LIMITS: Final = "RESET lock_timeout; RESET statement_timeout"


async def warm_candle_reads(conn: AConn, now: datetime) -> None:
    """Prepare on ``conn`` the Community edition's candle statements a request around ``now``
    uses (their generic plans), reading nothing; nothing on the Apache edition.

    A connection's first candle read of each kind builds its statements' generic plans: ~15-95 ms
    per kind at 10M trades (the 1m rows' plan spans every chunk of the three 1m
    materialisations), ~170 ms in all, paid by whichever request comes first on each new pooled
    connection (and the pool replaces every connection after its ``max_lifetime``). The API's
    pools run this when they make a connection (psycopg_pool's ``configure``), so that cost is
    the pool's, off the requests' path. One range per interval reaching from before the
    watermarks to after ``now`` prepares the materialisation and aggregate rows statements and the
    carried-in look-ups on the materialisations; one range after every watermark, the look-ups on
    the aggregates. A level never refreshed (its watermark at 1970) has nothing below it to
    prepare: its first read does it, as before."""

    async def warm(direct: _Direct) -> None:
        for interval in ("1m", "1h", "1d"):
            start = period_floor(now - CARRIED_NEAR, interval)
            await _fetch_community(conn, direct, WARM_TICKER, interval, start, now + CARRIED_NEAR)
        later = period_floor(now + 2 * CARRIED_NEAR, "1d")
        await _fetch_community(conn, direct, WARM_TICKER, "1d", later, later + CARRIED_NEAR)

    await conn.execute(WARM_LIMITS)
    try:
        await _with_direct(conn, warm)
    finally:
        await conn.execute(RESET_LIMITS)


async def _with_direct(conn: AConn, read: Callable[[_Direct], Awaitable[T]]) -> T | None:
    """``read(materialisations)`` on the Community edition; None on Apache (plain views). When
    a migration replaced the aggregates (their materialisations and ids are gone), they are
    looked up again and ``read`` runs once more."""
    direct = await _direct(conn)
    if direct is None:
        return None
    try:
        return await read(direct)
    except (errors.UndefinedTable, errors.InvalidParameterValue):
        _DIRECT.pop(_db_key(conn), None)
        direct = await _direct(conn)
        return None if direct is None else await read(direct)


async def fetch_candle_data(
    conn: AConn, ticker: str, interval: Interval, start: datetime, end: datetime
) -> CandleData:
    """Each source's rows (one per bucket with a row of that source) in ``[start, end)``, and the
    state before ``start``.

    ``start`` must be a period boundary of ``interval`` (see ``period_floor``).
    """

    async def read(direct: _Direct) -> CandleData:
        return await _fetch_community(conn, direct, ticker, interval, start, end)

    found = await _with_direct(conn, read)
    if found is not None:
        return found
    params = {"ticker": ticker, "start": start, "end": end}
    last_day = {"ticker": ticker, "start": start, "since": start - CARRY_SEARCH_WINDOW}
    # One pipeline: the three rows statements and the look-ups over the last day in one round
    # trip; a look-up that finds nothing there is asked again over all history.
    async with conn.pipeline(), conn.transaction(), AsyncExitStack() as stack:
        rows_curs: list[AsyncCursor[Any]] = []
        for statement, row_type in zip(ROWS_SQL[interval], _ROW_TYPES, strict=True):
            rows_cur = conn.cursor(row_factory=args_row(row_type))
            await stack.enter_async_context(rows_cur)
            await rows_cur.execute(statement, params)
            rows_curs.append(rows_cur)
        look_curs: list[AsyncCursor[Any]] = []
        for query in LAST_BEFORE:
            cur = await stack.enter_async_context(conn.cursor())
            await cur.execute(query, last_day)
            look_curs.append(cur)
        trades, quotes, stats = [await c.fetchall() for c in rows_curs]
        before: list[tuple[Any, ...] | None] = []
        for query, cur in zip(LAST_BEFORE, look_curs, strict=True):
            row = await cur.fetchone()
            if row is None:
                await cur.execute(query, {**last_day, "since": _NO_LOWER_BOUND})
                row = await cur.fetchone()
            before.append(None if row is None else tuple(row))
    trade_row, quote_row, oi_row = before
    carried = CarriedText(
        last_price=trade_row[0] if trade_row else None,
        yes_bid=quote_row[0] if quote_row else None,
        yes_ask=quote_row[1] if quote_row else None,
        open_interest=oi_row[0] if oi_row else None,
    )
    return CandleData(trades, quotes, stats, carried)


async def market_exists(conn: AConn, ticker: str) -> bool:
    """True when the market is in ``market.markets`` or has any trade, book, quote or stats row
    (see MARKET_EXISTS_TEMPLATE for rows not yet refreshed into the Community aggregates)."""
    direct = await _direct(conn)
    async with conn.cursor() as cur:
        if direct is None:
            await cur.execute(MARKET_EXISTS_SQL, {"ticker": ticker, "since": _NO_LOWER_BOUND})
        else:
            ids = [direct.ids["1d"][k] for k, s in enumerate(_SOURCES) if s != "trades"]
            await cur.execute(WATERMARKS, {"ids": ids})
            since = min(r[1] for r in await cur.fetchall())
            await cur.execute(direct.exists_sql, {"ticker": ticker, "since": since})
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
    return data.assemble(interval, first, end, fill=fill, until=until)


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
