"""Read extents: where in time each market's trades and books lie, so reads plan only those chunks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

A trades page of one market used to be planned over every chunk of ``market.trades`` (TimescaleDB
plans each chunk a query may touch: ~150 ms for a year of daily chunks) and, for a recent market,
executed by walking the time index of every older chunk: 0.5-1 s whatever the page size, growing
with the whole history. ``market.trade_extents`` holds, per market, the UTC hours
``[first_hour, end_hour)`` that contain all its trades. Reads (kalshibook.storage.trade_reads)
resolve tickers, events and series to markets, read their extents and query in explicit time
windows inside them, so planning and execution follow the size of the answer. A ticker, event or
series without extents has no trades: answered without touching the hypertable.

Maintained by a BEFORE INSERT trigger on ``market.trades``, whoever inserts (the collector's writer,
a backfill, plain SQL): a row whose hour lies outside its market's extent widens it. The check is a
primary-key look-up per row; the write happens about once per market and hour. Filled from the
existing trades here.

``market.book_extents`` does the same for ``market.orderbook_snapshots`` (a market's recorded book
starts with a snapshot, so its deltas lie after ``first_hour``); deltas themselves, the firehose,
carry no trigger. The deltas endpoint reads from the first snapshot's hour in windows, and a ticker
with no extent has no book.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE market.trade_extents (
    market_ticker text PRIMARY KEY,
    first_hour    timestamptz NOT NULL,
    end_hour      timestamptz NOT NULL,
    CHECK (first_hour < end_hour)
);
COMMENT ON TABLE market.trade_extents IS
    'per market, the UTC hours [first_hour, end_hour) holding all its trades (trigger-maintained)';
INSERT INTO market.trade_extents (market_ticker, first_hour, end_hour)
SELECT market_ticker, time_bucket(INTERVAL '1 hour', min(ts)),
       time_bucket(INTERVAL '1 hour', max(ts)) + INTERVAL '1 hour'
FROM market.trades GROUP BY market_ticker;
GRANT SELECT ON market.trade_extents TO kalshibook_reader;

CREATE FUNCTION market.trades_extend_extent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    hour timestamptz := time_bucket(INTERVAL '1 hour', NEW.ts);
BEGIN
    PERFORM 1 FROM market.trade_extents e
    WHERE e.market_ticker = NEW.market_ticker AND e.first_hour <= hour AND e.end_hour > hour;
    IF NOT FOUND THEN
        INSERT INTO market.trade_extents AS e (market_ticker, first_hour, end_hour)
        VALUES (NEW.market_ticker, hour, hour + INTERVAL '1 hour')
        ON CONFLICT (market_ticker) DO UPDATE
        SET first_hour = least(e.first_hour, EXCLUDED.first_hour),
            end_hour = greatest(e.end_hour, EXCLUDED.end_hour);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER trades_extend_extent BEFORE INSERT ON market.trades
    FOR EACH ROW EXECUTE FUNCTION market.trades_extend_extent();

CREATE TABLE market.book_extents (
    market_ticker text PRIMARY KEY,
    first_hour    timestamptz NOT NULL,
    end_hour      timestamptz NOT NULL,
    CHECK (first_hour < end_hour)
);
COMMENT ON TABLE market.book_extents IS
    'per market, the UTC hours [first_hour, end_hour) holding its book snapshots (trigger-maintained)';
INSERT INTO market.book_extents (market_ticker, first_hour, end_hour)
SELECT market_ticker, time_bucket(INTERVAL '1 hour', min(ts)),
       time_bucket(INTERVAL '1 hour', max(ts)) + INTERVAL '1 hour'
FROM market.orderbook_snapshots GROUP BY market_ticker;
GRANT SELECT ON market.book_extents TO kalshibook_reader;

CREATE FUNCTION market.snapshots_extend_extent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    hour timestamptz := time_bucket(INTERVAL '1 hour', NEW.ts);
BEGIN
    PERFORM 1 FROM market.book_extents e
    WHERE e.market_ticker = NEW.market_ticker AND e.first_hour <= hour AND e.end_hour > hour;
    IF NOT FOUND THEN
        INSERT INTO market.book_extents AS e (market_ticker, first_hour, end_hour)
        VALUES (NEW.market_ticker, hour, hour + INTERVAL '1 hour')
        ON CONFLICT (market_ticker) DO UPDATE
        SET first_hour = least(e.first_hour, EXCLUDED.first_hour),
            end_hour = greatest(e.end_hour, EXCLUDED.end_hour);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER snapshots_extend_extent BEFORE INSERT ON market.orderbook_snapshots
    FOR EACH ROW EXECUTE FUNCTION market.snapshots_extend_extent();
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS snapshots_extend_extent ON market.orderbook_snapshots;
DROP FUNCTION IF EXISTS market.snapshots_extend_extent();
DROP TABLE IF EXISTS market.book_extents;
DROP TRIGGER IF EXISTS trades_extend_extent ON market.trades;
DROP FUNCTION IF EXISTS market.trades_extend_extent();
DROP TABLE IF EXISTS market.trade_extents;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
