"""Compression of the market-data hypertables and the 1m/1h candle aggregates (Community only).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Native columnar compression, one segment per market and time-ordered inside it, which is how
every read of these tables goes (one market, a time range): ``segmentby = market_ticker`` and
``orderby`` = exactly the ``ORDER BY`` of the API's reads (``ts, trade_id`` for trades pages,
``ts, epoch, seq`` for deltas pages, ``bucket`` for candles), ascending. A compressed chunk then
returns rows already in that order (and, reversed, in the newest-first order of the "last row
before" look-ups) instead of decompressing and sorting the whole segment: with TimescaleDB's
default (``ts DESC``) a 1,000-row trades page over a compressed chunk took 1.6 s instead of
milliseconds (bench_api). ``trade_id`` is also the column an insert into a compressed chunk checks
uniqueness with.

This migration only *enables* compression (``ALTER ... SET (timescaledb.compress ...)``); when a
chunk is compressed is policy, and policies follow the operator's settings
(``KALSHIBOOK_STORAGE_*_COMPRESS_AFTER_DAYS`` / ``*_RETENTION_DAYS``):
:func:`kalshibook.storage.policies.apply_policies` adds, replaces or removes them after every
``kalshibook migrate``. Compress-after defaults lie beyond every candle refresh window (the 1d
policy re-folds 7 days) and a week of trade-backfill margin, so ordinary late rows land in
uncompressed chunks; later ones (a long REST backfill, repairs) still work: TimescaleDB 2.19 inserts
into compressed chunks and invalidates the aggregates above them (timescale/timescaledb#3724).

The Apache-2 edition has no compression: nothing happens there. Chunk intervals (0001) were
reviewed and kept: a compressed chunk should hold a few hundred thousand to a few million rows per
segment set; deltas (6 h) are the busiest table, the others 1 day (lifecycle 7, gaps 30).
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COMMUNITY = "timescale"

# (relation, kind, orderby). kind: "TABLE" for a hypertable, "MATERIALIZED VIEW" for a cagg.
COMPRESSED: tuple[tuple[str, str, str], ...] = (
    ("market.trades", "TABLE", "ts, trade_id"),
    ("market.orderbook_deltas", "TABLE", "ts, epoch, seq"),
    ("market.orderbook_snapshots", "TABLE", "ts"),
    ("market.quotes", "TABLE", "ts"),
    ("market.market_stats", "TABLE", "ts"),
    ("market.lifecycle_events", "TABLE", "ts"),
    ("market.candles_trades_1m", "MATERIALIZED VIEW", "bucket"),
    ("market.candles_trades_1h", "MATERIALIZED VIEW", "bucket"),
    ("market.candles_quotes_1m", "MATERIALIZED VIEW", "bucket"),
    ("market.candles_quotes_1h", "MATERIALIZED VIEW", "bucket"),
    ("market.candles_stats_1m", "MATERIALIZED VIEW", "bucket"),
    ("market.candles_stats_1h", "MATERIALIZED VIEW", "bucket"),
)

ENABLE = (
    "ALTER {kind} {name} SET (timescaledb.compress = true, "
    "timescaledb.compress_segmentby = 'market_ticker', "
    "timescaledb.compress_orderby = '{orderby}')"
)
# Compressed chunks must be decompressed before compression can be turned off.
DECOMPRESS_ALL = (
    "SELECT decompress_chunk(c, true) FROM show_chunks('{hypertable}') c "
    "WHERE c IN (SELECT format('%I.%I', chunk_schema, chunk_name)::regclass "
    "FROM timescaledb_information.chunks WHERE is_compressed)"
)
REMOVE_POLICY = "SELECT remove_compression_policy('{name}', if_exists => true)"
REMOVE_RETENTION = "SELECT remove_retention_policy('{name}', if_exists => true)"
DISABLE = "ALTER {kind} {name} SET (timescaledb.compress = false)"
# A cagg's chunks belong to its materialisation hypertable.
MAT_HYPERTABLE = """
SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
FROM timescaledb_information.continuous_aggregates
WHERE format('%I.%I', view_schema, view_name) = :name
"""
IS_COMPRESSED = """
SELECT coalesce(bool_or(compression_enabled), false) FROM timescaledb_information.hypertables
WHERE format('%I.%I', hypertable_schema, hypertable_name) = :hypertable
"""


def _edition() -> str:
    return str(
        op.get_bind().execute(text("SELECT current_setting('timescaledb.license')")).scalar()
    )


def upgrade() -> None:
    if _edition() != COMMUNITY:
        return
    for name, kind, orderby in COMPRESSED:
        op.execute(ENABLE.format(kind=kind, name=name, orderby=orderby))


def downgrade() -> None:
    bind = op.get_bind()
    for name, kind, _orderby in reversed(COMPRESSED):
        hypertable: str | None = name
        if kind != "TABLE":
            hypertable = bind.execute(text(MAT_HYPERTABLE), {"name": name}).scalar()
            if hypertable is None:
                continue
        if not bind.execute(text(IS_COMPRESSED), {"hypertable": hypertable}).scalar():
            continue
        op.execute(REMOVE_POLICY.format(name=name))
        op.execute(REMOVE_RETENTION.format(name=name))
        op.execute(DECOMPRESS_ALL.format(hypertable=hypertable))
        op.execute(DISABLE.format(kind=kind, name=name))
