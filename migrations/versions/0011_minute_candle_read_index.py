"""A covering index for the candle reads on the 1m materialisations too (Community only).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

0010 gave the 1h and 1d materialisations covering indexes and left 1m out: its measurement (the
uncompressed chunks simulated by decompressing and ``CLUSTER``ing by bucket) showed 8.6 -> 7.7 ms
for a day of 1m, for about double the size of the uncompressed weeks' indexes. Measured since on
the layout a refresh really writes (bench/bench_candles.py ``--recent``: a year of 10M trades
ending today, refreshed and then compressed by the policies, so the last 30 days of 1m are as the
refresh policy left them), interleaved reads of a random day of 1m in those 30 days, 300 per
side, three runs: p50 12.4 / 14.6 / 15.3 ms with TimescaleDB's group index, 10.9 / 13.4 / 13.8
with the covering one; p90 17.3 / 21.3 / 17.9 against 14.3 / 19.7 / 15.8. The recent days of 1m
are what users read most (measured with ``last_ts`` in the index too; it is left out below). The
cost, on that data: the 30 uncompressed days' indexes grow from 78 to 131 MB beside 144 MB of heap
(+24 % of the level's uncompressed heap and indexes); compressed chunks do not carry it.

As 0010: the group index ``(market_ticker, bucket DESC)`` is replaced by the same key with the
columns the 1m reads use included (candle_reads' ROWS_TEMPLATE and CARRIED_NEAR_TEMPLATE). Building
it locks each 1m materialisation against writes (its refresh policy waits) for one pass over its
uncompressed chunks. Downgrade restores TimescaleDB's index under its own name. The Apache-2
edition has plain views: nothing to do.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COMMUNITY = "timescale"

# The columns the 1m reads use besides the key: ROWS_TEMPLATE's and CARRIED_NEAR_TEMPLATE's
# (0010's lists without ``last_ts``, which only the 1d look-up CARRIED_FAR_TEMPLATE reads).
READ_COLUMNS: dict[str, str] = {
    "trades": "open, high, low, close, volume, notional, trade_count, taker_yes_volume, "
    "taker_no_volume",
    "quotes": "yes_bid_high, yes_bid_low, yes_bid_close, yes_ask_high, yes_ask_low, yes_ask_close",
    "stats": "open_interest, open_interest_ts",
}

# The aggregate's materialisation, its covering index and TimescaleDB's name for its group index,
# quoted by the server.
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


def _materialisations() -> list[tuple[str, str, str, str, str]]:
    """(aggregate, source, materialisation, covering index, group index name) of each 1m
    aggregate; none on the Apache edition."""
    bind = op.get_bind()
    edition = bind.execute(text("SELECT current_setting('timescaledb.license')")).scalar()
    if edition != COMMUNITY:
        return []
    out = []
    for source in READ_COLUMNS:
        name = f"candles_{source}_1m"
        row = bind.execute(text(MATERIALISATION), {"name": name}).one_or_none()
        if row is None:  # pragma: no cover - 0002/0005 create every one on Community
            continue
        out.append((name, source, str(row[0]), str(row[1]), str(row[2])))
    return out


def upgrade() -> None:
    bind = op.get_bind()
    for name, source, table, _covering, _group in _materialisations():
        group = bind.execute(text(GROUP_INDEX), {"table": table}).scalars().all()
        for index in group:
            bind.execute(text(f"DROP INDEX {index}"))
        bind.execute(
            text(
                f"CREATE INDEX {name}_read ON market.{name} "
                f"(market_ticker, bucket DESC) INCLUDE ({READ_COLUMNS[source]})"
            )
        )


def downgrade() -> None:
    bind = op.get_bind()
    for _name, _source, table, covering, group in _materialisations():
        bind.execute(text(f"DROP INDEX IF EXISTS {covering}"))
        bind.execute(text(f"CREATE INDEX {group} ON {table} (market_ticker, bucket DESC)"))
