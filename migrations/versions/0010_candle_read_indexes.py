"""Covering indexes for the candle reads on the 1h and 1d materialisations (Community only).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

The API reads a market's candles from the aggregates' materialisation hypertables directly
(kalshibook.storage.candle_reads): one market's buckets over a range, by TimescaleDB's group index
``(market_ticker, bucket DESC)``. A refresh writes the rows of every market bucket by bucket, so one
market's rows of a range lie one per heap page: a year of 1d candles read 351 pages per source
(0.7 ms of bitmap heap scan each, 4.5 ms for the statement at 10M trades), and so does any
uncompressed range of 1h or 1m candles (the recent ones, which are read most). With the columns
the reads use in the index (``INCLUDE``), the same rows come from an index-only scan over a few
leaf pages: 2.0 ms for that statement (bench/bench_candles.py's data, EXPLAIN ANALYZE).

The 1h and 1d aggregates' group indexes are replaced by ones with the same key and the read
columns included (the old one would be a strict prefix: pure write and storage cost). Interleaved
reads on copies of the same 10M-trade database (refreshed, uncompressed ranges): 30 days of 1h
8.0 -> 5.8 ms, a year of 1d 6.2 -> 4.9 ms. Not the 1m level: its uncompressed weeks (30 days by
default) hold a row per market and minute, and the covering index would about double their size,
for 8.6 -> 7.7 ms on a day of 1m. Compressed chunks are not concerned (their own index is on the
segment and the ordering metadata). An index-only scan needs the visibility map: autovacuum sets
it after a refresh; until it has, rows are fetched from the heap as before (same results).

A migration that recreates one of these aggregates (as 0005 did for the trade aggregates) must
create its index again. Building it locks the materialisation against writes (the refresh
policies wait) for the time of one pass over its uncompressed chunks. The Apache-2 edition has
plain views (no materialisation): nothing to do.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COMMUNITY = "timescale"

# The columns each source's reads use besides the key (candle_reads' ROWS_TEMPLATE and the
# carried-in look-ups CARRIED_NEAR_TEMPLATE / CARRIED_FAR_TEMPLATE).
READ_COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": (
        "open",
        "high",
        "low",
        "close",
        "volume",
        "notional",
        "trade_count",
        "taker_yes_volume",
        "taker_no_volume",
        "last_ts",
    ),
    "quotes": (
        "yes_bid_high",
        "yes_bid_low",
        "yes_bid_close",
        "yes_ask_high",
        "yes_ask_low",
        "yes_ask_close",
        "last_ts",
    ),
    "stats": ("open_interest", "open_interest_ts"),
}
AGGREGATES: tuple[tuple[str, str], ...] = tuple(
    (f"candles_{source}_{level}", source)
    for level in ("1h", "1d")
    for source in ("trades", "quotes", "stats")
)

# Each aggregate's materialisation, its covering index and TimescaleDB's name for its group
# index, quoted by the server.
MATERIALISATION = """
SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name),
       format('%I.%I', materialization_hypertable_schema, view_name || '_read'),
       format('%I', materialization_hypertable_name || '_market_ticker_bucket_idx')
FROM timescaledb_information.continuous_aggregates
WHERE view_schema = 'market' AND view_name = :name
"""
# The group index TimescaleDB made for the aggregate.
GROUP_INDEX = """
SELECT format('%I.%I', schemaname, indexname) FROM pg_indexes
WHERE format('%I.%I', schemaname, tablename) = :table
  AND indexdef LIKE '%USING btree (market_ticker, bucket DESC)'
"""


def _community() -> bool:
    edition = op.get_bind().execute(text("SELECT current_setting('timescaledb.license')"))
    return bool(edition.scalar() == COMMUNITY)


def _materialisations() -> list[tuple[str, str, str, str, str]]:
    """(aggregate, source, materialisation, covering index, group index name) of each."""
    bind = op.get_bind()
    out = []
    for name, source in AGGREGATES:
        row = bind.execute(text(MATERIALISATION), {"name": name}).one_or_none()
        if row is None:  # pragma: no cover - 0002/0005 create every one on Community
            continue
        out.append((name, source, str(row[0]), str(row[1]), str(row[2])))
    return out


def upgrade() -> None:
    if not _community():
        return
    bind = op.get_bind()
    for name, source, table, _covering, _group in _materialisations():
        group = bind.execute(text(GROUP_INDEX), {"table": table}).scalars().all()
        for index in group:
            bind.execute(text(f"DROP INDEX {index}"))
        columns = ", ".join(READ_COLUMNS[source])
        bind.execute(
            text(
                f"CREATE INDEX {name}_read ON market.{name} "
                f"(market_ticker, bucket DESC) INCLUDE ({columns})"
            )
        )


def downgrade() -> None:
    if not _community():
        return
    bind = op.get_bind()
    for _name, _source, table, covering, group in _materialisations():
        bind.execute(text(f"DROP INDEX IF EXISTS {covering}"))
        bind.execute(text(f"CREATE INDEX {group} ON {table} (market_ticker, bucket DESC)"))
