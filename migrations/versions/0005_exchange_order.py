"""Exchange order of trades: ``exchange_seq`` and ``created_time`` on ``market.trades``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Kalshi prints several trades in one millisecond whenever a taker sweeps levels, and ``ts`` (the
partition and de-duplication time, truncated to the millisecond because WebSocket trades carry
only ``ts_ms``) cannot order them. Two columns:

``exchange_seq bigint``
    The trade's position in its market's exchange order: ``epoch milliseconds x 1,000,000 + rank``,
    where ``rank`` (0-based) is the trade's place among the market's trades of that millisecond.
    The collector assigns it (kalshibook.domain.exchange_order): WebSocket trades in delivery order
    (Kalshi sends one market's trades in exchange order), REST trades by ``created_time`` (µs) over
    the whole millisecond. A REST copy of a trade the WebSocket stored first sets its rank, so the
    stored value is the same whichever path stored the trade first. Ordering by ``exchange_seq``
    equals ordering by ``(ts, rank)``; it is one integer so that ``first``/``last`` in the candle
    aggregates and the API's cursors can use it.
``created_time timestamptz``
    The best time the exchange gave: microseconds from REST, milliseconds from the WebSocket (a
    REST copy of a WebSocket trade upgrades it).

Both are filled by the table's BEFORE INSERT trigger when an insert leaves them out (rank 0: plain
SQL inserts, e.g. bench data), so they are NOT NULL.

Rows stored before this revision: ``created_time`` = ``ts`` (the microseconds REST gave were
truncated on insert and cannot be recovered); the rank inside a millisecond follows
``received_at`` then ``trade_id``. For WebSocket rows ``received_at`` is the frame's arrival time,
so their order is the exchange's unless two trades of one millisecond arrived within the same
microsecond; REST rows of one page share ``received_at`` and their order inside a millisecond is
arbitrary (by ``trade_id``) but now fixed. ``kalshibook`` cannot restore it without refetching
those trades from REST.

The trade candle aggregates (``candles_trades_{1m,1h,1d}``, 0002) are recreated so that the 1m
level's ``open``/``close`` are ``first``/``last`` by ``exchange_seq``; the 1h and 1d levels roll
up by the 1m buckets' ``first_ts``/``last_ts``, which are distinct per bucket, so they stay exact.
On the Community edition they come back ``WITH NO DATA``, with their refresh policies and
compression settings; ``kalshibook migrate`` materialises their history right after (as for
0002). On a large database this revision rewrites every trade row (decompressing compressed trade
chunks first; the compression policy compresses them again): plan the time.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COMMUNITY = "timescale"
SEQ_PER_MS = 1_000_000  # the literal 1000000 below; kalshibook.domain.exchange_order

_TRADES_1M = """
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket,
       market_ticker,
       first(yes_price, {order}) AS open,
       max(yes_price) AS high,
       min(yes_price) AS low,
       last(yes_price, {order}) AS close,
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
TRADES_1M = _TRADES_1M.format(order="exchange_seq")
TRADES_1M_BEFORE = _TRADES_1M.format(order="ts")

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
TRADES_1H = _TRADES_ROLLUP.format(
    bucket="time_bucket(INTERVAL '1 hour', bucket)", source="market.candles_trades_1m"
)
TRADES_1D = _TRADES_ROLLUP.format(
    bucket="time_bucket(INTERVAL '1 day', bucket, 'America/New_York')",
    source="market.candles_trades_1h",
)

# (name, refresh policy (start, end, schedule) as in 0002, compressed as in 0004)
TRADE_AGGREGATES: tuple[tuple[str, tuple[str, str, str], bool], ...] = (
    ("candles_trades_1m", ("3 hours", "1 minute", "1 minute"), True),
    ("candles_trades_1h", ("2 days", "15 minutes", "15 minutes"), True),
    ("candles_trades_1d", ("7 days", "3 hours", "1 hour"), False),
)

IS_CAGG = """
SELECT count(*) FROM timescaledb_information.continuous_aggregates
WHERE view_schema = 'market' AND view_name = :name
"""
COMMUNITY_CREATE = (
    "CREATE MATERIALIZED VIEW market.{name}\n"
    "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS{body}WITH NO DATA"
)
APACHE_CREATE = "CREATE VIEW market.{name} AS{body}"
POLICY = (
    "SELECT add_continuous_aggregate_policy('market.{name}', "
    "start_offset => INTERVAL '{start}', end_offset => INTERVAL '{end}', "
    "schedule_interval => INTERVAL '{schedule}')"
)
COMPRESS_AGGREGATE = (
    "ALTER MATERIALIZED VIEW market.{name} SET (timescaledb.compress = true, "
    "timescaledb.compress_segmentby = 'market_ticker', timescaledb.compress_orderby = 'bucket')"
)
GRANT = "GRANT SELECT ON market.{name} TO kalshibook_reader"

IS_COMPRESSED = """
SELECT coalesce(bool_or(compression_enabled), false) FROM timescaledb_information.hypertables
WHERE hypertable_schema = 'market' AND hypertable_name = 'trades'
"""
DECOMPRESS_TRADES = """
SELECT decompress_chunk(format('%I.%I', chunk_schema, chunk_name)::regclass, true)
FROM timescaledb_information.chunks
WHERE hypertable_schema = 'market' AND hypertable_name = 'trades' AND is_compressed
"""
TRADES_ORDERBY = "ALTER TABLE market.trades SET (timescaledb.compress_orderby = '{orderby}')"

ADD_COLUMNS = """
ALTER TABLE market.trades ADD COLUMN created_time timestamptz, ADD COLUMN exchange_seq bigint
"""
# Existing rows: rank inside (market, millisecond) by arrival, then trade_id (see the docstring).
FILL_COLUMNS = """
UPDATE market.trades t
SET created_time = t.ts,
    exchange_seq = (extract(epoch FROM t.ts) * 1000)::bigint * 1000000 + r.rank
FROM (SELECT trade_id, ts,
             row_number() OVER (PARTITION BY market_ticker, ts
                                ORDER BY received_at, trade_id) - 1 AS rank
      FROM market.trades) r
WHERE t.trade_id = r.trade_id AND t.ts = r.ts
"""
NOT_NULL = """
ALTER TABLE market.trades ALTER COLUMN created_time SET NOT NULL,
                          ALTER COLUMN exchange_seq SET NOT NULL
"""
TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION market.trades_normalise_ts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_time := coalesce(NEW.created_time, NEW.ts);
    NEW.ts := date_trunc('milliseconds', NEW.ts);
    NEW.exchange_seq := coalesce(NEW.exchange_seq,
                                 (extract(epoch FROM NEW.ts) * 1000)::bigint * 1000000);
    RETURN NEW;
END $$
"""
TRIGGER_FUNCTION_BEFORE = """
CREATE OR REPLACE FUNCTION market.trades_normalise_ts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.ts := date_trunc('milliseconds', NEW.ts);
    RETURN NEW;
END $$
"""
# Reads walk one market's trades by (ts, exchange_seq): one index serves the range and the order.
ORDER_INDEX = "CREATE INDEX trades_ticker_order_idx ON market.trades (market_ticker, ts DESC, exchange_seq DESC)"
DROP_TS_INDEX = "DROP INDEX market.trades_ticker_ts_idx"
TS_INDEX = "CREATE INDEX trades_ticker_ts_idx ON market.trades (market_ticker, ts DESC)"
DROP_ORDER_INDEX = "DROP INDEX market.trades_ticker_order_idx"
DROP_COLUMNS = "ALTER TABLE market.trades DROP COLUMN created_time, DROP COLUMN exchange_seq"


def _edition() -> str:
    return str(
        op.get_bind().execute(text("SELECT current_setting('timescaledb.license')")).scalar()
    )


def _drop_trade_aggregates() -> None:
    bind = op.get_bind()
    for name, _policy, _compressed in reversed(TRADE_AGGREGATES):
        # What was created is what is dropped (the licence may differ from the relation's kind).
        kind = (
            "MATERIALIZED VIEW" if bind.execute(text(IS_CAGG), {"name": name}).scalar() else "VIEW"
        )
        op.execute(f"DROP {kind} IF EXISTS market.{name}")


def _create_trade_aggregates(edition: str, one_minute_body: str) -> None:
    bodies = {
        "candles_trades_1m": one_minute_body,
        "candles_trades_1h": TRADES_1H,
        "candles_trades_1d": TRADES_1D,
    }
    for name, (start, end, schedule), compressed in TRADE_AGGREGATES:
        template = COMMUNITY_CREATE if edition == COMMUNITY else APACHE_CREATE
        op.execute(template.format(name=name, body=bodies[name]))
        op.execute(GRANT.format(name=name))
        if edition == COMMUNITY:
            op.execute(POLICY.format(name=name, start=start, end=end, schedule=schedule))
            if compressed:
                op.execute(COMPRESS_AGGREGATE.format(name=name))


def _decompress_trades() -> bool:
    """Decompress every compressed trades chunk; True when compression is enabled on trades."""
    bind = op.get_bind()
    if not bind.execute(text(IS_COMPRESSED)).scalar():
        return False
    bind.execute(text(DECOMPRESS_TRADES))
    return True


def upgrade() -> None:
    edition = _edition()
    _drop_trade_aggregates()
    compressed = _decompress_trades()
    op.execute(ADD_COLUMNS)
    op.execute(FILL_COLUMNS)
    op.execute(NOT_NULL)
    op.execute(TRIGGER_FUNCTION)
    op.execute(ORDER_INDEX)
    op.execute(DROP_TS_INDEX)
    if compressed:
        # exactly the trades pages' ORDER BY (kalshibook.storage.reads.LIST_TRADES), as 0004 did
        op.execute(TRADES_ORDERBY.format(orderby="ts, exchange_seq, trade_id"))
    _create_trade_aggregates(edition, TRADES_1M)


def downgrade() -> None:
    edition = _edition()
    _drop_trade_aggregates()
    compressed = _decompress_trades()
    if compressed:
        op.execute(TRADES_ORDERBY.format(orderby="ts, trade_id"))
    op.execute(TS_INDEX)
    op.execute(DROP_ORDER_INDEX)
    op.execute(TRIGGER_FUNCTION_BEFORE)
    op.execute(DROP_COLUMNS)
    _create_trade_aggregates(edition, TRADES_1M_BEFORE)
