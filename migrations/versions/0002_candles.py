"""Candles: 1m → 1h → 1d relations over trades, quotes and market_stats (ARCHITECTURE.md §3).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Nine relations in schema ``market``, one per source and interval, chained 1m → 1h → 1d:

``candles_trades_{1m,1h,1d}`` (source ``market.trades``)
    ``bucket, market_ticker, open, high, low, close`` (``yes_price``), ``volume`` (sum of
    ``count``), ``notional`` (sum of ``yes_price * count``; VWAP = notional / volume),
    ``trade_count``, ``taker_yes_volume``, ``taker_no_volume`` (by ``taker_outcome_side``),
    ``first_ts``, ``last_ts`` (times of the first and last trade).
``candles_quotes_{1m,1h,1d}`` (source ``market.quotes``; every quote row is the full top of book)
    ``bucket, market_ticker, yes_bid_open, yes_bid_high, yes_bid_low, yes_bid_close`` and the same
    for ``yes_ask``, ``quote_count``, ``first_ts``, ``last_ts``. These are the quotes *inside*
    the bucket: ``*_open``/``*_close`` are the first/last quote's value (NULL when that side of the
    book was empty), high/low ignore NULLs. The API's bid/ask open is the state carried in from
    before the period, added at read time (kalshibook.domain.candles).
``candles_stats_{1m,1h,1d}`` (source ``market.market_stats``)
    ``bucket, market_ticker, open_interest, open_interest_ts, volume, volume_ts, stats_count,
    last_ts``: the last non-NULL ``open_interest`` / cumulative ``volume`` reported in the bucket
    with its time (``last(x, CASE WHEN x IS NULL THEN NULL ELSE ts END)``: first/last skip rows whose
    ordering key is NULL).

1m and 1h buckets are UTC; 1d buckets are America/New_York midnights (Kalshi's daily candles), 23 or
25 hours long on DST days, so the 1d level is the top of the chain. It is built on the 1h level:
New York midnight is always a whole UTC hour, so every 1h bucket lies inside one New York day.
Hierarchical levels aggregate the lower level's columns (``first(open, first_ts)``,
``last(close, last_ts)``, ``max(high)``, ``sum(volume)``, ...), which gives the same result as
aggregating the raw rows once. Rows of one market with the very same ``ts`` have no order, so
first/last may pick any one of them.

Editions (``current_setting('timescaledb.license')``):
- ``timescale`` (Community): continuous aggregates ``WITH NO DATA`` (WITH DATA cannot run inside the
  migration's transaction) and ``timescaledb.materialized_only = false`` (real-time: the tail that
  is not materialised yet is computed on read), plus one refresh policy per level (see POLICIES).
- ``apache``: plain views with the same names, columns and SELECT bodies, computed on read.
Both headers wrap the very same body constants below, so the two editions cannot drift apart.

Late rows older than a policy's window (e.g. after a long REST backfill) are folded in by
``kalshibook refresh-candles --start … --end …`` (kalshibook.storage.candles.refresh_candles).
On the Community edition that command must also be run once, from the first row, when this
migration is applied to a database that already holds trades/quotes/stats: a real-time cagg shows
materialised rows below its watermark and raw rows above it, so once the first policy run has
moved the watermark to "now", history that no refresh covered is not shown (``upgrade`` logs a
warning with the exact command).
"""

from __future__ import annotations

import logging

from alembic import op
from sqlalchemy import text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = "market"
COMMUNITY = "timescale"
APACHE = "apache"

# --- continuous-aggregate rules these bodies follow (TimescaleDB 2.19, Community edition) --------
# Checked by tests/unit/test_candles_migration_sql.py; sources are TimescaleDB's docs and the query
# validation in tsl/src/continuous_aggs/common.c (cagg_validate_query, caggtimebucket_validate) and
# create.c (mattablecolumninfo_addentry).
# - One hypertable or one continuous aggregate in FROM; no window functions, DISTINCT, LIMIT, CTE,
#   subquery, set operation or grouping sets (cagg_query_supported). Aggregates in finalized caggs
#   (the only format since 2.7) are not restricted further; plain first/last/min/max/sum/count are
#   used anyway, so rolling a level up is exact.
# - GROUP BY holds exactly one time_bucket, on the time dimension column of the source: ``ts`` for
#   a hypertable, the parent's ``bucket`` for a cagg on a cagg ("use the time-bucketed column from
#   the existing continuous aggregate as your time column", docs: Hierarchical continuous
#   aggregates). ``bucket`` is the first column at every level, so it is the same attribute in the
#   parent's view and in its materialisation hypertable, which is what the check compares.
# - Every function and operator must be IMMUTABLE ("only immutable functions supported in
#   continuous aggregate view"), time_bucket with a time zone name included (all checked on the
#   server, through the Apache views, by tests/integration/test_candles_migration.py).
# - Hierarchical levels (docs: Hierarchical continuous aggregates, "Restrictions"; common.c): the
#   bucket must be >= and a multiple of the parent's (1 h = 60 x 1 min; 1 day = 24 x 1 h, a day
#   counted as 24 h); a fixed-width bucket may not sit on a variable-width one, the reverse is
#   allowed; origins and offsets must be equal (all default here). A bucket with a time zone counts
#   as variable-width ("Historically, we treat all buckets with timezones as variable"), so the New
#   York day must be the top level; the parent needs no time zone (there is no time-zone equality
#   check), and 1h UTC buckets nest in New York days since New York's UTC offsets are whole hours.
# - Real-time aggregation recurses through the stack as long as every level is real-time (docs:
#   Hierarchical continuous aggregates, "Use real-time aggregation ..."): all levels are
#   materialized_only = false.

# --- trades -------------------------------------------------------------------------------------

TRADES_1M = """
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket,
       market_ticker,
       first(yes_price, ts) AS open,
       max(yes_price) AS high,
       min(yes_price) AS low,
       last(yes_price, ts) AS close,
       sum(count) AS volume,
       sum(yes_price * count) AS notional,
       count(*) AS trade_count,
       sum(CASE WHEN taker_outcome_side = 'yes' THEN count ELSE 0 END) AS taker_yes_volume,
       sum(CASE WHEN taker_outcome_side = 'no' THEN count ELSE 0 END) AS taker_no_volume,
       min(ts) AS first_ts,
       max(ts) AS last_ts
FROM market.trades
GROUP BY 1, 2
"""

# {bucket} is the time_bucket call of the level; {source} the level below.
_TRADES_ROLLUP = """
SELECT {bucket} AS bucket,
       market_ticker,
       first(open, first_ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, last_ts) AS close,
       sum(volume) AS volume,
       sum(notional) AS notional,
       sum(trade_count)::bigint AS trade_count,
       sum(taker_yes_volume) AS taker_yes_volume,
       sum(taker_no_volume) AS taker_no_volume,
       min(first_ts) AS first_ts,
       max(last_ts) AS last_ts
FROM {source}
GROUP BY 1, 2
"""

# --- quotes -------------------------------------------------------------------------------------

QUOTES_1M = """
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket,
       market_ticker,
       first(yes_bid, ts) AS yes_bid_open,
       max(yes_bid) AS yes_bid_high,
       min(yes_bid) AS yes_bid_low,
       last(yes_bid, ts) AS yes_bid_close,
       first(yes_ask, ts) AS yes_ask_open,
       max(yes_ask) AS yes_ask_high,
       min(yes_ask) AS yes_ask_low,
       last(yes_ask, ts) AS yes_ask_close,
       count(*) AS quote_count,
       min(ts) AS first_ts,
       max(ts) AS last_ts
FROM market.quotes
GROUP BY 1, 2
"""

_QUOTES_ROLLUP = """
SELECT {bucket} AS bucket,
       market_ticker,
       first(yes_bid_open, first_ts) AS yes_bid_open,
       max(yes_bid_high) AS yes_bid_high,
       min(yes_bid_low) AS yes_bid_low,
       last(yes_bid_close, last_ts) AS yes_bid_close,
       first(yes_ask_open, first_ts) AS yes_ask_open,
       max(yes_ask_high) AS yes_ask_high,
       min(yes_ask_low) AS yes_ask_low,
       last(yes_ask_close, last_ts) AS yes_ask_close,
       sum(quote_count)::bigint AS quote_count,
       min(first_ts) AS first_ts,
       max(last_ts) AS last_ts
FROM {source}
GROUP BY 1, 2
"""

# --- market_stats -------------------------------------------------------------------------------

STATS_1M = """
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket,
       market_ticker,
       last(open_interest, CASE WHEN open_interest IS NULL THEN NULL ELSE ts END) AS open_interest,
       max(CASE WHEN open_interest IS NULL THEN NULL ELSE ts END) AS open_interest_ts,
       last(volume, CASE WHEN volume IS NULL THEN NULL ELSE ts END) AS volume,
       max(CASE WHEN volume IS NULL THEN NULL ELSE ts END) AS volume_ts,
       count(*) AS stats_count,
       max(ts) AS last_ts
FROM market.market_stats
GROUP BY 1, 2
"""

_STATS_ROLLUP = """
SELECT {bucket} AS bucket,
       market_ticker,
       last(open_interest, open_interest_ts) AS open_interest,
       max(open_interest_ts) AS open_interest_ts,
       last(volume, volume_ts) AS volume,
       max(volume_ts) AS volume_ts,
       sum(stats_count)::bigint AS stats_count,
       max(last_ts) AS last_ts
FROM {source}
GROUP BY 1, 2
"""

HOUR_BUCKET = "time_bucket(INTERVAL '1 hour', bucket)"
NY_DAY_BUCKET = "time_bucket(INTERVAL '1 day', bucket, 'America/New_York')"

TRADES_1H = _TRADES_ROLLUP.format(bucket=HOUR_BUCKET, source="market.candles_trades_1m")
TRADES_1D = _TRADES_ROLLUP.format(bucket=NY_DAY_BUCKET, source="market.candles_trades_1h")
QUOTES_1H = _QUOTES_ROLLUP.format(bucket=HOUR_BUCKET, source="market.candles_quotes_1m")
QUOTES_1D = _QUOTES_ROLLUP.format(bucket=NY_DAY_BUCKET, source="market.candles_quotes_1h")
STATS_1H = _STATS_ROLLUP.format(bucket=HOUR_BUCKET, source="market.candles_stats_1m")
STATS_1D = _STATS_ROLLUP.format(bucket=NY_DAY_BUCKET, source="market.candles_stats_1h")

# Creation order: every relation after the one it reads. Dropped in reverse.
CANDLE_RELATIONS: tuple[tuple[str, str, str], ...] = (
    # (name, level, SELECT body)
    ("candles_trades_1m", "1m", TRADES_1M),
    ("candles_trades_1h", "1h", TRADES_1H),
    ("candles_trades_1d", "1d", TRADES_1D),
    ("candles_quotes_1m", "1m", QUOTES_1M),
    ("candles_quotes_1h", "1h", QUOTES_1H),
    ("candles_quotes_1d", "1d", QUOTES_1D),
    ("candles_stats_1m", "1m", STATS_1M),
    ("candles_stats_1h", "1h", STATS_1H),
    ("candles_stats_1d", "1d", STATS_1D),
)

# Refresh policies (Community only): level -> (start_offset, end_offset, schedule_interval).
# - 1m: every minute, the last 3 hours up to the last finished minute. The window covers
#   180 buckets, so trades the collector backfills from REST after a WS reconnect (minutes, rarely
#   an hour or two) are re-materialised by the policy itself; anything older is the job of
#   `kalshibook refresh-candles`. end_offset = one bucket: the minute being written is served in
#   real time from the hypertable instead of being re-materialised every minute.
# - 1h: every 15 minutes, the last 2 days up to 15 minutes ago (47+ buckets). The 15 minutes lag
#   lets the 1m policy (every minute, lag 1 minute) finish the hour's minutes first, so an hour is
#   materialised from complete 1m rows; 2 days cover the 1m window many times over, so every
#   invalidation the 1m level writes into its materialisation is picked up.
# - 1d: every hour, the last 7 days up to 3 hours ago (4+ New York days even with DST). A day is
#   materialised once its last hour has been materialised by the 1h policy (lag 15 min + one
#   schedule of 15 min < 3 h); the 7-day start re-folds a week of late invalidations.
# In every level the unmaterialised tail is served in real time (materialized_only = false).
# TimescaleDB's checks (tsl/src/bgw_policy/continuous_aggregate_api.c, validate_window_size):
# start_offset > end_offset, and end_offset + 2 x bucket width <= start_offset ("policy refresh
# window too small"). Offsets are converted with a day = 24 h (a month = 30 days); a
# variable-width bucket's width is taken from its interval (a day = 24 h, a month = 31 days in the
# versions read), so the 1d level needs 2 days and has 6 days 21 h, ample even if a version padded
# time-zone buckets; whole days are not required. Any positive end_offset keeps the bucket in
# progress out of the refresh, which only materialises buckets lying wholly inside its window
# (docs: Refresh continuous aggregates); materialising that bucket would move the watermark past
# it and stop real-time aggregation there (docs: Troubleshoot continuous aggregates, "watermark
# is in the future").
POLICIES: dict[str, tuple[str, str, str]] = {
    "1m": ("3 hours", "1 minute", "1 minute"),
    "1h": ("2 days", "15 minutes", "15 minutes"),
    "1d": ("7 days", "3 hours", "1 hour"),
}

# materialized_only = false: real-time aggregation is off by default since TimescaleDB 2.13
# (docs: Real-time aggregates). WITH NO DATA: only WITH DATA refreshes at creation, which runs its
# own transactions and errors inside a transaction block (create.c refreshes only when
# !skipData; timescale/timescaledb#2389); the policies do the first materialisation.
COMMUNITY_HEADER = (
    "CREATE MATERIALIZED VIEW market.{name}\n"
    "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS"
)
COMMUNITY_FOOTER = "WITH NO DATA"
APACHE_HEADER = "CREATE VIEW market.{name} AS"
# add_continuous_aggregate_policy only inserts a job row: fine inside the migration's transaction.
POLICY_SQL = (
    "SELECT add_continuous_aggregate_policy('market.{name}', "
    "start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}', "
    "schedule_interval => INTERVAL '{schedule}')"
)
GRANT_SQL = "GRANT SELECT ON market.{name} TO kalshibook_reader"


def candle_ddl(edition: str) -> list[str]:
    """Statements creating every candle relation for ``edition`` (``timescale`` or ``apache``)."""
    if edition not in (COMMUNITY, APACHE):
        raise ValueError(f"unknown timescaledb.license {edition!r}")
    statements: list[str] = []
    for name, _level, body in CANDLE_RELATIONS:
        if edition == COMMUNITY:
            header = COMMUNITY_HEADER.format(name=name)
            statements.append(f"{header}{body}{COMMUNITY_FOOTER}")
        else:
            statements.append(f"{APACHE_HEADER.format(name=name)}{body}")
        # Default privileges from 0001 cover objects created by the role that ran 0001; grant
        # explicitly too, in case this migration runs as another role. On a cagg, GRANT is
        # propagated to its materialisation hypertable and internal views
        # (timescale/timescaledb#2436; default privileges are copied too since 2.8, #4555/#4580).
        # Every level must be granted, not only the one a reader queries: the real-time part of
        # a level calls cagg_watermark() of the level below (through its view), and that function
        # checks SELECT on that cagg for the *calling* user (src/ts_catalog/continuous_agg.c).
        statements.append(GRANT_SQL.format(name=name))
    if edition == COMMUNITY:
        for name, level, _body in CANDLE_RELATIONS:
            start, end, schedule = POLICIES[level]
            statements.append(POLICY_SQL.format(name=name, start=start, end=end, schedule=schedule))
    return statements


IS_CAGG = """
SELECT count(*) FROM timescaledb_information.continuous_aggregates
WHERE view_schema = 'market' AND view_name = :name
"""


# The oldest source row (NULL on an empty database); min(ts) walks the hypertables' ts index.
FIRST_SOURCE_ROW = """
SELECT least((SELECT min(ts) FROM market.trades), (SELECT min(ts) FROM market.quotes),
             (SELECT min(ts) FROM market.market_stats))
"""

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    bind = op.get_bind()
    edition = bind.execute(text("SELECT current_setting('timescaledb.license')")).scalar_one()
    for statement in candle_ddl(str(edition)):
        op.execute(statement)
    if edition == COMMUNITY:
        first = bind.execute(text(FIRST_SOURCE_ROW)).scalar_one()
        if first is not None:
            # Cannot be done here: refresh_continuous_aggregate refuses a transaction block.
            log.warning(
                "continuous aggregates created empty over existing data: `kalshibook migrate` "
                "materialises the history right after this migration; if you ran alembic "
                "directly, run `kalshibook refresh-candles --start %s` once, or the history "
                "older than the refresh policies' windows (3 h for 1m) is not shown once they "
                "first run",
                first.isoformat(),
            )


def downgrade() -> None:
    bind = op.get_bind()
    for name, _level, _body in reversed(CANDLE_RELATIONS):
        # Decided per relation, not by the current license: what was created is what is dropped.
        # Reverse chain order: a cagg another one is built on cannot be dropped first. DROP
        # MATERIALIZED VIEW on a cagg also removes its refresh policy and materialisation (docs:
        # DROP MATERIALIZED VIEW (continuous aggregate)); DROP VIEW is refused on a cagg.
        is_cagg = bind.execute(text(IS_CAGG), {"name": name}).scalar_one()
        kind = "MATERIALIZED VIEW" if is_cagg else "VIEW"
        op.execute(f"DROP {kind} IF EXISTS market.{name}")
