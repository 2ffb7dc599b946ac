"""What the writer writes: one row type and one :class:`TableSpec` per table, and their SQL.

Rows are :class:`~typing.NamedTuple` s whose fields are the table's columns in the COPY order
(``migrations/versions/0001_storage_model.py``). A NamedTuple *is* a tuple, so a producer may also
hand the writer a plain tuple in the same order. The writer hands rows to its COPY workers as
msgpack (numerics as their decimal text, which keeps the scale). Values:

- prices, sizes, counts: :class:`~decimal.Decimal` (exact ``numeric``), never floats;
- times: aware UTC :class:`~datetime.datetime`;
- ``trade_id``: :class:`~uuid.UUID`;
- jsonb columns (``yes_bids``, ``no_bids``, ``payload``, ``raw``, ...): the JSON *text* as
  ``bytes`` (e.g. ``msgspec.json.encode(obj)`` or :meth:`OrderBook.to_json_levels`), written as is.

Table modes:

- ``copy``: binary ``COPY`` straight into the hypertable;
- ``dedupe``: binary ``COPY`` into a per-connection TEMP staging table, then
  ``INSERT … SELECT … ON CONFLICT DO NOTHING`` in the same transaction (``trades``: WS and REST
  copies of a trade collide on ``(trade_id, ts)`` once the table's trigger has truncated ``ts`` to
  milliseconds);
- ``upsert``: ``INSERT … ON CONFLICT (key) DO UPDATE`` per row (reference tables, low volume).

Every SQL text is a named literal constant; no SQL is built from values or at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, LiteralString, NamedTuple
from uuid import UUID

__all__ = (
    "ALL_TABLES",
    "BOOK_GAPS",
    "EVENTS",
    "LIFECYCLE_EVENTS",
    "MARKETS",
    "MARKET_STATS",
    "ORDERBOOK_DELTAS",
    "ORDERBOOK_SNAPSHOTS",
    "QUOTES",
    "SERIES",
    "SETTLEMENTS",
    "TABLES",
    "TRADES",
    "BookGapRow",
    "DeltaRow",
    "EventRow",
    "LifecycleRow",
    "MarketRow",
    "MarketStatsRow",
    "QuoteRow",
    "SeriesRow",
    "SettlementRow",
    "SnapshotRow",
    "TableSpec",
    "TradeRow",
    "WriteMode",
)

WriteMode = Literal["copy", "dedupe", "upsert"]


# -- row types (field order = column order) ----------------------------------------------------


class TradeRow(NamedTuple):
    ts: datetime
    trade_id: UUID
    market_ticker: str
    yes_price: Decimal
    no_price: Decimal
    count: Decimal  # type: ignore[assignment]  # the column name; shadows tuple.count
    taker_outcome_side: str | None  # 'yes' | 'no'
    taker_book_side: str | None  # 'bid' | 'ask'
    is_block_trade: bool
    source: str  # 'ws' | 'rest'
    received_at: datetime
    exchange_seq: int  # kalshibook.domain.exchange_order (migration 0005)


class SnapshotRow(NamedTuple):
    ts: datetime
    market_ticker: str
    received_at: datetime
    source: str  # 'snapshot' | 'resync' | 'checkpoint' | 'rest'
    epoch: int
    sid: int | None
    seq: int | None
    yes_bids: bytes  # jsonb text [[price, size], ...] ascending
    no_bids: bytes


class DeltaRow(NamedTuple):
    ts: datetime
    market_ticker: str
    received_at: datetime
    side: str  # 'yes' | 'no'
    price: Decimal
    delta: Decimal  # signed, never 0
    epoch: int
    sid: int
    seq: int


class QuoteRow(NamedTuple):
    ts: datetime
    market_ticker: str
    received_at: datetime
    yes_bid: Decimal | None
    yes_bid_size: Decimal | None
    yes_ask: Decimal | None
    yes_ask_size: Decimal | None


class MarketStatsRow(NamedTuple):
    ts: datetime
    market_ticker: str
    received_at: datetime
    price: Decimal | None
    yes_bid: Decimal | None
    yes_ask: Decimal | None
    yes_bid_size: Decimal | None
    yes_ask_size: Decimal | None
    last_trade_size: Decimal | None
    volume: Decimal | None
    open_interest: Decimal | None
    dollar_volume: int | None
    dollar_open_interest: int | None


class LifecycleRow(NamedTuple):
    ts: datetime
    market_ticker: str | None
    event_ticker: str | None
    received_at: datetime
    kind: str  # 'market' | 'event' | 'event_fee'
    event_type: str
    result: str | None
    settlement_value: Decimal | None
    open_ts: datetime | None
    close_ts: datetime | None
    determination_ts: datetime | None
    settled_ts: datetime | None
    sid: int | None
    seq: int | None
    payload: bytes  # jsonb text of the raw message


class BookGapRow(NamedTuple):
    from_ts: datetime
    to_ts: datetime
    market_ticker: str
    reason: str  # 'disconnect' | 'seq_gap' | 'error_10' | 'error_25' | 'daemon_restart' | 'silence'
    sid: int | None
    detected_at: datetime


class SeriesRow(NamedTuple):
    ticker: str
    title: str | None
    category: str | None
    frequency: str | None
    tags: list[str] | None
    fee_type: str | None
    fee_multiplier: Decimal | None
    raw: bytes


class EventRow(NamedTuple):
    event_ticker: str
    series_ticker: str | None
    title: str | None
    sub_title: str | None
    category: str | None
    mutually_exclusive: bool | None
    collateral_return_type: str | None
    strike_date: datetime | None
    strike_period: str | None
    raw: bytes


class MarketRow(NamedTuple):
    ticker: str
    event_ticker: str
    series_ticker: str | None
    market_type: str | None
    title: str | None
    yes_sub_title: str | None
    no_sub_title: str | None
    status: str
    created_time: datetime | None
    open_time: datetime | None
    close_time: datetime | None
    expected_expiration_time: datetime | None
    latest_expiration_time: datetime | None
    strike_type: str | None
    floor_strike: Decimal | None
    cap_strike: Decimal | None
    functional_strike: str | None
    custom_strike: bytes | None  # jsonb text
    price_level_structure: str | None
    price_ranges: bytes | None  # jsonb text
    result: str | None
    settlement_value: Decimal | None
    raw: bytes


class SettlementRow(NamedTuple):
    market_ticker: str
    event_ticker: str | None
    series_ticker: str | None
    result: str  # 'yes' | 'no' | 'scalar' | 'void'
    settlement_value: Decimal | None
    determined_at: datetime | None
    settled_at: datetime | None
    source: str  # 'ws' | 'rest'
    confirmed: bool  # True for the REST confirmation
    raw: bytes


# -- SQL ---------------------------------------------------------------------------------------

COPY_TRADES_STAGE: Final[LiteralString] = (
    "COPY pg_temp.kalshibook_trades_stage (ts, trade_id, market_ticker, yes_price, no_price, "
    "count, taker_outcome_side, taker_book_side, is_block_trade, source, received_at, "
    "exchange_seq) FROM STDIN (FORMAT BINARY)"
)
# The staging table has the COPY's columns and no constraints (``created_time`` is derived).
CREATE_TRADES_STAGE: Final[LiteralString] = (
    "CREATE TEMP TABLE IF NOT EXISTS kalshibook_trades_stage (ts timestamptz, trade_id uuid, "
    "market_ticker text, yes_price numeric, no_price numeric, count numeric, "
    "taker_outcome_side text, taker_book_side text, is_block_trade boolean, source text, "
    "received_at timestamptz, exchange_seq bigint) ON COMMIT DELETE ROWS"
)
# The time is truncated here, not only by the table's trigger: TimescaleDB checks ON CONFLICT
# against a compressed chunk with the tuple as it arrives, before BEFORE-INSERT triggers run, so a
# REST copy (µs) of a WS trade (ms) in a compressed chunk was inserted twice (tests/integration/
# test_compression.py). ``created_time`` keeps the staged time at its full precision.
# One row per trade (a batch may hold a trade's WS and REST copies: the REST copy's time, rank and
# fields are kept, with the source and receive time of the copy that came first, as across
# batches; taker sides the REST copy lacks come from another copy of the batch, and a block trade
# flagged by any copy stays flagged). A REST copy of a stored trade sets its exchange_seq and
# created_time (REST ranks a whole millisecond and has microseconds;
# kalshibook.domain.exchange_order); any copy of a stored trade sets its is_block_trade when true
# and fills the taker sides it lacks, so those do not depend on which path stored the trade
# first: a WS frame may lack is_block_trade (added 2026-05-29; the DEMO capture of 2026-08-17 has
# none), which the router stores as false (the column is NOT NULL), and a REST copy may lack the
# flag or the sides (older responses); a copy's false never clears a true, a null never clears a
# side. A WS copy never moves a stored trade's time or rank. The merged row's source is its
# batch's first copy's, so a REST copy is looked for in the stage as well (``_REST_COPY``). A
# whole-second WS copy of a trade whose REST copy is stored is dropped before the merge
# (DROP_STAGED_TRADE_COPIES), which first fills the stored row likewise. Rows go in by market so
# that concurrent batches take the trade_extents rows (0006's trigger) in one order. Returns the
# number of trades inserted (xmax = 0: not an update of a stored trade). A trade is its trade_id:
# copies staged at different times (a WS frame without ``ts_ms`` has whole seconds,
# kalshibook.kalshi.scalars.frame_time) are one trade, the REST copy's time kept.
_REST_COPY: Final[LiteralString] = (
    # the correlated look-up only when the batch holds REST rows at all (an InitPlan, once): a
    # replay of WS rows already stored (all conflicts) must not scan the stage once per row
    "(EXCLUDED.source = 'rest' OR ((SELECT bool_or(source = 'rest') "
    "FROM pg_temp.kalshibook_trades_stage) AND EXISTS (SELECT FROM "
    "pg_temp.kalshibook_trades_stage AS s WHERE s.trade_id = EXCLUDED.trade_id "
    "AND s.source = 'rest')))"
)
"""The conflicting staged row is (or merges) a REST copy of the trade."""
MERGE_TRADES: Final[LiteralString] = (  # composed of constants only (_REST_COPY)
    "WITH merged AS (INSERT INTO market.trades AS t (ts, trade_id, market_ticker, yes_price, "  # noqa: S608
    "no_price, count, "
    "taker_outcome_side, taker_book_side, is_block_trade, source, received_at, created_time, "
    "exchange_seq) "
    "SELECT * FROM (SELECT DISTINCT ON (trade_id) "
    "date_trunc('milliseconds', ts), trade_id, market_ticker, yes_price, no_price, count, "
    "coalesce(taker_outcome_side, max(taker_outcome_side) OVER p), "
    "coalesce(taker_book_side, max(taker_book_side) OVER p), bool_or(is_block_trade) OVER p, "
    "first_value(source) OVER w, first_value(received_at) OVER w, ts, exchange_seq "
    "FROM pg_temp.kalshibook_trades_stage "
    "WINDOW w AS (PARTITION BY trade_id ORDER BY ctid), p AS (PARTITION BY trade_id) "
    "ORDER BY trade_id, source = 'rest' DESC) AS one_per_trade "
    "ORDER BY market_ticker "
    "ON CONFLICT (trade_id, ts) DO UPDATE SET "
    "exchange_seq = CASE WHEN " + _REST_COPY + " THEN EXCLUDED.exchange_seq "
    "ELSE t.exchange_seq END, "
    "created_time = CASE WHEN " + _REST_COPY + " THEN EXCLUDED.created_time "
    "ELSE t.created_time END, "
    "is_block_trade = t.is_block_trade OR EXCLUDED.is_block_trade, "
    "taker_outcome_side = coalesce(t.taker_outcome_side, EXCLUDED.taker_outcome_side), "
    "taker_book_side = coalesce(t.taker_book_side, EXCLUDED.taker_book_side) "
    "WHERE CASE WHEN " + _REST_COPY + " "
    "THEN (t.exchange_seq, t.created_time, t.is_block_trade, "
    "t.taker_outcome_side, t.taker_book_side) IS DISTINCT FROM (EXCLUDED.exchange_seq, "
    "EXCLUDED.created_time, t.is_block_trade OR EXCLUDED.is_block_trade, "
    "coalesce(t.taker_outcome_side, EXCLUDED.taker_outcome_side), "
    "coalesce(t.taker_book_side, EXCLUDED.taker_book_side)) "
    # a WS copy only fills what the stored row lacks
    "ELSE (EXCLUDED.is_block_trade AND NOT t.is_block_trade) "
    "OR (t.taker_outcome_side IS NULL AND EXCLUDED.taker_outcome_side IS NOT NULL) "
    "OR (t.taker_book_side IS NULL AND EXCLUDED.taker_book_side IS NOT NULL) END "
    "RETURNING xmax = 0 AS inserted) "
    "SELECT count(*) FILTER (WHERE inserted) FROM merged"
)
# Before the merge: one trade stored and staged at two different times. The unique key is
# (trade_id, ts), so ON CONFLICT matches copies of one millisecond only, and a WS trade frame
# without ``ts_ms`` carries whole seconds (KALSHI_API.md §2.3): its REST copy (microseconds) would
# be a second row of the same trade. Copies are looked for within TRADE_COPY_SPREAD of each other
# (Kalshi does not say whether its seconds are floored or rounded), among the staged rows' markets
# and time range, given as constants: chunk exclusion keeps the statements to those chunks, and
# a compressed chunk decompresses only those markets' batches of that range (as the merge does).
# The staged rows that may have another copy stored: every REST row (its time is the one kept),
# and WS rows on a whole second (a WS row with ``ts_ms`` is matched by ON CONFLICT).
TRADE_COPY_BOUNDS: Final[LiteralString] = (
    "SELECT min(ts) FILTER (WHERE rest), max(ts) FILTER (WHERE rest), "
    "array_agg(DISTINCT market_ticker) FILTER (WHERE rest), "
    "min(ts) FILTER (WHERE coarse), max(ts) FILTER (WHERE coarse), "
    "array_agg(DISTINCT market_ticker) FILTER (WHERE coarse) "
    "FROM (SELECT ts, market_ticker, source = 'rest' AS rest, "
    "source = 'ws' AND ts = date_trunc('second', ts) AS coarse "
    "FROM pg_temp.kalshibook_trades_stage) AS staged"
)
# A stored copy at another time moves to the REST copy's (its source and receive time stay, as
# when ON CONFLICT merges a REST copy into a stored trade). ``lo``/``hi``: the staged REST rows'
# time range widened by the spread. Only within one UTC hour: an UPDATE cannot move a row to
# another chunk, and the hour is what market.trade_extents records (its trigger runs on INSERT);
# floored whole seconds never leave the REST time's hour (should Kalshi round them up across an
# hour's end, those two copies stay two rows).
MOVE_STORED_TRADE_COPIES: Final[LiteralString] = (
    "UPDATE market.trades AS t SET ts = date_trunc('milliseconds', s.ts), created_time = s.ts, "
    "exchange_seq = s.exchange_seq "
    "FROM pg_temp.kalshibook_trades_stage AS s "
    "WHERE t.market_ticker = ANY(%(markets)s::text[]) "
    "AND t.ts >= %(lo)s::timestamptz AND t.ts <= %(hi)s::timestamptz "
    "AND s.source = 'rest' AND t.trade_id = s.trade_id AND t.market_ticker = s.market_ticker "
    "AND t.ts BETWEEN date_trunc('milliseconds', s.ts) - %(spread)s::interval "
    "AND date_trunc('milliseconds', s.ts) + %(spread)s::interval "
    "AND t.ts <> date_trunc('milliseconds', s.ts) "
    "AND date_trunc('hour', t.ts) = date_trunc('hour', s.ts) "
    # both copies stored already (before this reconciliation existed): the merge keeps that one
    "AND NOT EXISTS (SELECT 1 FROM market.trades AS u "
    "WHERE u.market_ticker = ANY(%(markets)s::text[]) "
    "AND u.ts >= %(lo)s::timestamptz AND u.ts <= %(hi)s::timestamptz "
    "AND u.trade_id = s.trade_id AND u.ts = date_trunc('milliseconds', s.ts))"
)
# A staged whole-second WS copy of a trade stored at another time is dropped; what it knew and the
# stored copy lacks (taker sides, a true block flag) is written into the stored copy first, as the
# merge does for a WS copy of the same millisecond (its time and rank never move the stored row's).
DROP_STAGED_TRADE_COPIES: Final[LiteralString] = (
    "WITH dropped AS (DELETE FROM pg_temp.kalshibook_trades_stage AS s USING market.trades AS t "
    "WHERE t.market_ticker = ANY(%(markets)s::text[]) "
    "AND t.ts >= %(lo)s::timestamptz AND t.ts <= %(hi)s::timestamptz "
    "AND s.source = 'ws' AND s.ts = date_trunc('second', s.ts) AND t.trade_id = s.trade_id "
    "AND t.ts BETWEEN s.ts - %(spread)s::interval AND s.ts + %(spread)s::interval "
    "AND t.ts <> s.ts "
    "RETURNING t.trade_id, t.ts, s.taker_outcome_side, s.taker_book_side, s.is_block_trade), "
    "known AS (SELECT trade_id, ts, max(taker_outcome_side) AS outcome, "
    "max(taker_book_side) AS book, bool_or(is_block_trade) AS block "
    "FROM dropped GROUP BY trade_id, ts) "
    "UPDATE market.trades AS t SET is_block_trade = t.is_block_trade OR k.block, "
    "taker_outcome_side = coalesce(t.taker_outcome_side, k.outcome), "
    "taker_book_side = coalesce(t.taker_book_side, k.book) "
    "FROM known AS k "
    "WHERE t.market_ticker = ANY(%(markets)s::text[]) "
    "AND t.ts >= %(lo)s::timestamptz AND t.ts <= %(hi)s::timestamptz "
    "AND t.trade_id = k.trade_id AND t.ts = k.ts "
    "AND ((k.block AND NOT t.is_block_trade) "
    "OR (t.taker_outcome_side IS NULL AND k.outcome IS NOT NULL) "
    "OR (t.taker_book_side IS NULL AND k.book IS NOT NULL))"
)
TRADE_COPY_SPREAD: Final = timedelta(seconds=1)

COPY_ORDERBOOK_SNAPSHOTS: Final[LiteralString] = (
    "COPY market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq, "
    "yes_bids, no_bids) FROM STDIN (FORMAT BINARY)"
)
COPY_ORDERBOOK_DELTAS: Final[LiteralString] = (
    "COPY market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch, "
    "sid, seq) FROM STDIN (FORMAT BINARY)"
)
COPY_QUOTES: Final[LiteralString] = (
    "COPY market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size, yes_ask, "
    "yes_ask_size) FROM STDIN (FORMAT BINARY)"
)
COPY_MARKET_STATS: Final[LiteralString] = (
    "COPY market.market_stats (ts, market_ticker, received_at, price, yes_bid, yes_ask, "
    "yes_bid_size, yes_ask_size, last_trade_size, volume, open_interest, dollar_volume, "
    "dollar_open_interest) FROM STDIN (FORMAT BINARY)"
)
COPY_LIFECYCLE_EVENTS: Final[LiteralString] = (
    "COPY market.lifecycle_events (ts, market_ticker, event_ticker, received_at, kind, "
    "event_type, result, settlement_value, open_ts, close_ts, determination_ts, settled_ts, sid, "
    "seq, payload) FROM STDIN (FORMAT BINARY)"
)
COPY_BOOK_GAPS: Final[LiteralString] = (
    "COPY market.book_gaps (from_ts, to_ts, market_ticker, reason, sid, detected_at) "
    "FROM STDIN (FORMAT BINARY)"
)

# Reference upserts. A non-null new value wins, a null never erases a known one; ``raw`` is merged
# (new keys win) so fields seen by one source (WS) and not another (REST) are all kept.
UPSERT_SERIES: Final[LiteralString] = """
INSERT INTO market.series AS t
    (ticker, title, category, frequency, tags, fee_type, fee_multiplier, raw)
VALUES (%s, %s, %s, %s, %s, %s, %s, convert_from(%s, 'UTF8')::jsonb)
ON CONFLICT (ticker) DO UPDATE SET
    title = COALESCE(EXCLUDED.title, t.title),
    category = COALESCE(EXCLUDED.category, t.category),
    frequency = COALESCE(EXCLUDED.frequency, t.frequency),
    tags = COALESCE(EXCLUDED.tags, t.tags),
    fee_type = COALESCE(EXCLUDED.fee_type, t.fee_type),
    fee_multiplier = COALESCE(EXCLUDED.fee_multiplier, t.fee_multiplier),
    raw = t.raw || EXCLUDED.raw,
    updated_at = now()
"""
UPSERT_EVENTS: Final[LiteralString] = """
INSERT INTO market.events AS t
    (event_ticker, series_ticker, title, sub_title, category, mutually_exclusive,
     collateral_return_type, strike_date, strike_period, raw)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, convert_from(%s, 'UTF8')::jsonb)
ON CONFLICT (event_ticker) DO UPDATE SET
    series_ticker = COALESCE(EXCLUDED.series_ticker, t.series_ticker),
    title = COALESCE(EXCLUDED.title, t.title),
    sub_title = COALESCE(EXCLUDED.sub_title, t.sub_title),
    category = COALESCE(EXCLUDED.category, t.category),
    mutually_exclusive = COALESCE(EXCLUDED.mutually_exclusive, t.mutually_exclusive),
    collateral_return_type = COALESCE(EXCLUDED.collateral_return_type, t.collateral_return_type),
    strike_date = COALESCE(EXCLUDED.strike_date, t.strike_date),
    strike_period = COALESCE(EXCLUDED.strike_period, t.strike_period),
    raw = t.raw || EXCLUDED.raw,
    updated_at = now()
"""
UPSERT_MARKETS: Final[LiteralString] = """
INSERT INTO market.markets AS t
    (ticker, event_ticker, series_ticker, market_type, title, yes_sub_title, no_sub_title, status,
     created_time, open_time, close_time, expected_expiration_time, latest_expiration_time,
     strike_type, floor_strike, cap_strike, functional_strike, custom_strike,
     price_level_structure, price_ranges, result, settlement_value, raw)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
        convert_from(%s, 'UTF8')::jsonb, %s, convert_from(%s, 'UTF8')::jsonb, %s, %s,
        convert_from(%s, 'UTF8')::jsonb)
ON CONFLICT (ticker) DO UPDATE SET
    event_ticker = EXCLUDED.event_ticker,
    series_ticker = COALESCE(EXCLUDED.series_ticker, t.series_ticker),
    market_type = COALESCE(EXCLUDED.market_type, t.market_type),
    title = COALESCE(EXCLUDED.title, t.title),
    yes_sub_title = COALESCE(EXCLUDED.yes_sub_title, t.yes_sub_title),
    no_sub_title = COALESCE(EXCLUDED.no_sub_title, t.no_sub_title),
    status = EXCLUDED.status,
    created_time = COALESCE(EXCLUDED.created_time, t.created_time),
    open_time = COALESCE(EXCLUDED.open_time, t.open_time),
    close_time = COALESCE(EXCLUDED.close_time, t.close_time),
    expected_expiration_time = COALESCE(EXCLUDED.expected_expiration_time,
                                        t.expected_expiration_time),
    latest_expiration_time = COALESCE(EXCLUDED.latest_expiration_time, t.latest_expiration_time),
    strike_type = COALESCE(EXCLUDED.strike_type, t.strike_type),
    floor_strike = COALESCE(EXCLUDED.floor_strike, t.floor_strike),
    cap_strike = COALESCE(EXCLUDED.cap_strike, t.cap_strike),
    functional_strike = COALESCE(EXCLUDED.functional_strike, t.functional_strike),
    custom_strike = COALESCE(EXCLUDED.custom_strike, t.custom_strike),
    price_level_structure = COALESCE(EXCLUDED.price_level_structure, t.price_level_structure),
    price_ranges = COALESCE(EXCLUDED.price_ranges, t.price_ranges),
    result = COALESCE(EXCLUDED.result, t.result),
    settlement_value = COALESCE(EXCLUDED.settlement_value, t.settlement_value),
    raw = t.raw || EXCLUDED.raw,
    updated_at = now()
"""
# Settlements: the WS lifecycle row comes first (confirmed = false); the REST confirmation
# (confirmed = true) overwrites result, value and source. A WS row never overrides a confirmed one;
# times only fill in. Confirmation keeps REST's raw market; WS payloads are merged.
UPSERT_SETTLEMENTS: Final[LiteralString] = """
INSERT INTO market.settlements AS t
    (market_ticker, event_ticker, series_ticker, result, settlement_value, determined_at,
     settled_at, source, confirmed, raw)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, convert_from(%s, 'UTF8')::jsonb)
ON CONFLICT (market_ticker) DO UPDATE SET
    event_ticker = COALESCE(EXCLUDED.event_ticker, t.event_ticker),
    series_ticker = COALESCE(EXCLUDED.series_ticker, t.series_ticker),
    result = CASE WHEN t.confirmed AND NOT EXCLUDED.confirmed THEN t.result
                  ELSE EXCLUDED.result END,
    settlement_value = CASE WHEN t.confirmed AND NOT EXCLUDED.confirmed THEN t.settlement_value
                            ELSE COALESCE(EXCLUDED.settlement_value, t.settlement_value) END,
    determined_at = COALESCE(EXCLUDED.determined_at, t.determined_at),
    settled_at = COALESCE(EXCLUDED.settled_at, t.settled_at),
    source = CASE WHEN t.confirmed AND NOT EXCLUDED.confirmed THEN t.source
                  ELSE EXCLUDED.source END,
    confirmed = t.confirmed OR EXCLUDED.confirmed,
    raw = CASE WHEN EXCLUDED.confirmed THEN EXCLUDED.raw
               WHEN t.confirmed THEN t.raw
               ELSE t.raw || EXCLUDED.raw END,
    updated_at = now()
"""


# -- specs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableSpec:
    """How one table is written. ``columns`` are the row type's fields, in order."""

    name: str
    """Table name in schema ``market``; also the writer's queue key."""
    row_type: type[tuple[Any, ...]]
    pg_types: tuple[str, ...]
    """PostgreSQL type per column, for ``Copy.set_types`` (binary COPY applies no casts)."""
    mode: WriteMode
    write_sql: LiteralString
    """``copy``/``dedupe``: the COPY statement; ``upsert``: the parametrised upsert."""
    stage_sql: LiteralString | None = None
    """``dedupe``: creates the TEMP staging table (once per connection)."""
    merge_sql: LiteralString | None = None
    """``dedupe``: moves the staged rows into the table, skipping duplicates."""
    copies_at_other_times: bool = False
    """``dedupe``: one row's copies may be staged and stored at different times (trades); the
    COPY worker reconciles them before the merge (TRADE_COPY_BOUNDS)."""
    keeps_extents: bool = False
    """``copy``: the transaction also widens ``market.delta_extents`` to its rows (0009,
    :mod:`kalshibook.storage.extents`)."""

    @property
    def columns(self) -> tuple[str, ...]:
        fields: tuple[str, ...] = self.row_type._fields  # type: ignore[attr-defined]
        return fields

    @property
    def jsonb_columns(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.pg_types) if t == "jsonb")


_ALIASES: Final = {"ts": "timestamptz", "num": "numeric"}


def _types(spec: str) -> tuple[str, ...]:
    """``"ts text num"`` -> ``("timestamptz", "text", "numeric")``."""
    return tuple(_ALIASES.get(t, t) for t in spec.split())


TRADES: Final = TableSpec(
    name="trades",
    row_type=TradeRow,
    pg_types=_types("ts uuid text num num num text text bool text ts int8"),
    mode="dedupe",
    write_sql=COPY_TRADES_STAGE,
    stage_sql=CREATE_TRADES_STAGE,
    merge_sql=MERGE_TRADES,
    copies_at_other_times=True,
)
ORDERBOOK_SNAPSHOTS: Final = TableSpec(
    name="orderbook_snapshots",
    row_type=SnapshotRow,
    pg_types=_types("ts text ts text int8 int4 int8 jsonb jsonb"),
    mode="copy",
    write_sql=COPY_ORDERBOOK_SNAPSHOTS,
)
ORDERBOOK_DELTAS: Final = TableSpec(
    name="orderbook_deltas",
    row_type=DeltaRow,
    pg_types=_types("ts text ts text num num int8 int4 int8"),
    mode="copy",
    write_sql=COPY_ORDERBOOK_DELTAS,
    keeps_extents=True,
)
QUOTES: Final = TableSpec(
    name="quotes",
    row_type=QuoteRow,
    pg_types=_types("ts text ts num num num num"),
    mode="copy",
    write_sql=COPY_QUOTES,
)
MARKET_STATS: Final = TableSpec(
    name="market_stats",
    row_type=MarketStatsRow,
    pg_types=_types("ts text ts num num num num num num num num int8 int8"),
    mode="copy",
    write_sql=COPY_MARKET_STATS,
)
LIFECYCLE_EVENTS: Final = TableSpec(
    name="lifecycle_events",
    row_type=LifecycleRow,
    pg_types=_types("ts text text ts text text text num ts ts ts ts int4 int8 jsonb"),
    mode="copy",
    write_sql=COPY_LIFECYCLE_EVENTS,
)
BOOK_GAPS: Final = TableSpec(
    name="book_gaps",
    row_type=BookGapRow,
    pg_types=_types("ts ts text text int4 ts"),
    mode="copy",
    write_sql=COPY_BOOK_GAPS,
)
SERIES: Final = TableSpec(
    name="series",
    row_type=SeriesRow,
    pg_types=_types("text text text text text[] text num jsonb"),
    mode="upsert",
    write_sql=UPSERT_SERIES,
)
EVENTS: Final = TableSpec(
    name="events",
    row_type=EventRow,
    pg_types=_types("text text text text text bool text ts text jsonb"),
    mode="upsert",
    write_sql=UPSERT_EVENTS,
)
MARKETS: Final = TableSpec(
    name="markets",
    row_type=MarketRow,
    pg_types=_types(
        "text text text text text text text text ts ts ts ts ts "
        "text num num text jsonb text jsonb text num jsonb"
    ),
    mode="upsert",
    write_sql=UPSERT_MARKETS,
)
SETTLEMENTS: Final = TableSpec(
    name="settlements",
    row_type=SettlementRow,
    pg_types=_types("text text text text num ts ts text bool jsonb"),
    mode="upsert",
    write_sql=UPSERT_SETTLEMENTS,
)

ALL_TABLES: Final[tuple[TableSpec, ...]] = (
    ORDERBOOK_DELTAS,
    QUOTES,
    TRADES,
    MARKET_STATS,
    ORDERBOOK_SNAPSHOTS,
    LIFECYCLE_EVENTS,
    BOOK_GAPS,
    SERIES,
    EVENTS,
    MARKETS,
    SETTLEMENTS,
)
TABLES: Final[dict[str, TableSpec]] = {spec.name: spec for spec in ALL_TABLES}
