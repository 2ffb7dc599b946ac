"""Book days (per market and UTC day: snapshot count, first and last time); delta day chunks.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

The seed API's market detail gives a market's ``snapshot_count`` and its first and last snapshot.
They were read from every snapshot of the market over its book extent (0006): one-day snapshot
chunks, so a market a year old planned ~365 chunks and counted every checkpoint it ever had (one
per 500 deltas or 5 minutes of a moving book: ~100,000 a year), whatever the request.

``market.book_days`` holds, per market and UTC day with snapshots, how many it has and the first
and last snapshot's time: kept exactly by the snapshots' BEFORE INSERT trigger (0006's, which
already looks up the market's extent for every row: snapshots are a few per market and hour, not
the deltas' firehose), in the inserting transaction, whoever inserts. A read sums a market's days
(kalshibook.storage.market_summary). Filled from the existing snapshots here, with the snapshots
locked against writes until the revision commits.

Only inserts are counted. An ``UPDATE`` of a snapshot's time or market, a ``DELETE`` or a
``TRUNCATE`` through the hypertable marks the days incomplete (``market.book_days_state``):
reads then count the snapshots themselves again, until ``market.rebuild_book_days()``
(``kalshibook rebuild-extents``) recomputes them. (Statements run on a chunk table itself, not
through ``market.orderbook_snapshots``, are not seen: as for the deltas, writes straight into
TimescaleDB's internal chunks need the rebuild.) Retention and ``drop_chunks`` (also from the
middle of the history, with ``newer_than``) and compression fire no trigger: each day's row keeps
the chunks its snapshots went to (``chunks``: the trigger's ``TG_RELID``, which TimescaleDB sets
to the chunk), and a read trusts a day only while they all exist; the other days (a chunk
dropped, or dropped and made again by later rows: a new relation) are counted from the
snapshots.

The delta days' counts (0015) had the same blind spot: they were trusted for every day after the
deltas' first chunk, so ``drop_chunks`` with ``newer_than`` (a hole in the middle of the history)
left counts of deltas that were gone. A count now also stores the ids of the delta chunks
overlapping its day (``chunks``; ``market.delta_day_chunks``); a read trusts it only while they
all still exist. A chunk made after the count holds rows that set the count back to NULL (the
writer's, bumping the day's version) or mark the extents incomplete (any other writer), and a
chunk dropped and made again has a new id. The counts stored before this revision know no chunks:
they are set back to NULL (with a ``version`` bump) and counted again; a day counted without
chunks (by a collector of before this revision still running) is counted again too.

Downgrade restores 0006's trigger function and drops the tables, the function and the columns.
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TRIGGER = """
CREATE OR REPLACE FUNCTION market.snapshots_extend_extent() RETURNS trigger LANGUAGE plpgsql AS $$
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
    -- TG_RELID: the chunk the row goes to (TimescaleDB fires row triggers on the chunk)
    INSERT INTO market.book_days AS d (market_ticker, day, snapshots, first_ts, last_ts, chunks)
    VALUES (NEW.market_ticker, time_bucket(INTERVAL '1 day', NEW.ts), 1, NEW.ts, NEW.ts,
            ARRAY[TG_RELID])
    ON CONFLICT (market_ticker, day) DO UPDATE
    SET snapshots = d.snapshots + 1,
        first_ts = least(d.first_ts, EXCLUDED.first_ts),
        last_ts = greatest(d.last_ts, EXCLUDED.last_ts),
        chunks = CASE WHEN TG_RELID = ANY(d.chunks) THEN d.chunks ELSE d.chunks || TG_RELID END;
    RETURN NEW;
END $$;
"""

TRIGGER_0006 = """
CREATE OR REPLACE FUNCTION market.snapshots_extend_extent() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""
"""0006's function, as it was (a migration is a snapshot: not imported)."""

REBUILD = """
CREATE FUNCTION market.rebuild_book_days(OUT markets bigint, OUT days bigint)
LANGUAGE plpgsql AS $$
BEGIN
    -- exact: no snapshot is written between the scan and the commit (writers wait)
    LOCK TABLE market.orderbook_snapshots IN SHARE MODE;
    DELETE FROM market.book_days;
    INSERT INTO market.book_days (market_ticker, day, snapshots, first_ts, last_ts, chunks)
    SELECT market_ticker, time_bucket(INTERVAL '1 day', ts), count(*), min(ts), max(ts),
           array_agg(DISTINCT tableoid)
    FROM market.orderbook_snapshots GROUP BY 1, 2;
    GET DIAGNOSTICS days = ROW_COUNT;
    SELECT count(DISTINCT market_ticker) INTO markets FROM market.book_days;
    INSERT INTO market.book_days_state (one, complete) VALUES (true, true)
    ON CONFLICT (one) DO UPDATE SET complete = true, changed_at = now();
END $$;
COMMENT ON FUNCTION market.rebuild_book_days() IS
    'recompute market.book_days from market.orderbook_snapshots (one full scan; snapshot writes '
    'wait for it) and mark them complete; returns the markets and days with snapshots';
"""

UPGRADE = """
-- snapshots committed by others between the fill below and this revision's commit would go
-- through 0006's trigger and be missing from their day: writes wait (the collector's writer
-- retries; the lock timeout and the migration's retries apply)
LOCK TABLE market.orderbook_snapshots IN SHARE MODE;
CREATE TABLE market.book_days (
    market_ticker text NOT NULL,
    day           timestamptz NOT NULL,
    snapshots     bigint NOT NULL CHECK (snapshots > 0),
    first_ts      timestamptz NOT NULL,
    last_ts       timestamptz NOT NULL,
    chunks        oid[] NOT NULL,
    PRIMARY KEY (market_ticker, day),
    CHECK (day <= first_ts AND first_ts <= last_ts AND last_ts < day + INTERVAL '24 hours')
);
COMMENT ON TABLE market.book_days IS
    'per market and UTC day with order-book snapshots, how many and the first and last one '
    '(trigger-kept on insert; valid while market.book_days_state.complete, for a day whose '
    'chunks all exist)';
COMMENT ON COLUMN market.book_days.chunks IS
    'the chunks (relation oids) the day''s snapshots went to: a chunk dropped since, or dropped '
    'and made again (a new relation), means snapshots counted here may be gone';
CREATE TABLE market.book_days_state (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    complete   boolean NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE market.book_days_state IS
    'whether market.book_days counts every snapshot (false after an UPDATE, DELETE or TRUNCATE '
    'of snapshots, until market.rebuild_book_days())';
INSERT INTO market.book_days (market_ticker, day, snapshots, first_ts, last_ts, chunks)
SELECT market_ticker, time_bucket(INTERVAL '1 day', ts), count(*), min(ts), max(ts),
       array_agg(DISTINCT tableoid)
FROM market.orderbook_snapshots GROUP BY 1, 2;
INSERT INTO market.book_days_state (complete) VALUES (true);
GRANT SELECT ON market.book_days, market.book_days_state TO kalshibook_reader;

CREATE FUNCTION market.book_days_unmaintained() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE market.book_days_state SET complete = false, changed_at = now() WHERE complete;
    RETURN NULL;
END $$;
CREATE TRIGGER book_days_unmaintained
    AFTER UPDATE OF ts, market_ticker OR DELETE OR TRUNCATE ON market.orderbook_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION market.book_days_unmaintained();

CREATE FUNCTION market.delta_day_chunks(day timestamptz) RETURNS integer[]
LANGUAGE sql STABLE AS $$
SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}')
FROM (SELECT dm.id, _timescaledb_functions.to_unix_microseconds(day) AS lo,
             _timescaledb_functions.to_unix_microseconds(day + INTERVAL '24 hours') AS hi
      FROM _timescaledb_catalog.dimension AS dm
      JOIN _timescaledb_catalog.hypertable AS h ON h.id = dm.hypertable_id
      WHERE h.schema_name = 'market' AND h.table_name = 'orderbook_deltas') AS d
JOIN _timescaledb_catalog.dimension_slice AS ds ON ds.dimension_id = d.id
JOIN _timescaledb_catalog.chunk_constraint AS cc ON cc.dimension_slice_id = ds.id
JOIN _timescaledb_catalog.chunk AS c ON c.id = cc.chunk_id
WHERE ds.range_start >= coalesce((SELECT max(p.range_start)
                                  FROM _timescaledb_catalog.dimension_slice AS p
                                  WHERE p.dimension_id = d.id AND p.range_start <= d.lo), d.lo)
  AND ds.range_start < d.hi AND ds.range_end > d.lo AND NOT c.dropped
$$;
COMMENT ON FUNCTION market.delta_day_chunks(timestamptz) IS
    'the ids of the chunks of market.orderbook_deltas overlapping the UTC day (a slice starts at '
    'or after the one holding the day''s start: slices of a dimension do not overlap)';
DROP INDEX market.delta_days_uncounted_idx;
ALTER TABLE market.delta_days ADD COLUMN chunks integer[];
CREATE INDEX delta_days_uncounted_idx ON market.delta_days (day)
    WHERE deltas IS NULL OR chunks IS NULL;
COMMENT ON COLUMN market.delta_days.chunks IS
    'the delta chunks overlapping the day when it was counted: the count holds while they all '
    'exist (rows in a chunk made later bump the version or mark the extents incomplete)';
-- counts of before this revision know no chunks: counted again
UPDATE market.delta_days SET deltas = NULL, version = version + 1 WHERE deltas IS NOT NULL;
"""

DOWNGRADE = """
DROP INDEX IF EXISTS market.delta_days_uncounted_idx;
ALTER TABLE market.delta_days DROP COLUMN IF EXISTS chunks;
CREATE INDEX delta_days_uncounted_idx ON market.delta_days (day) WHERE deltas IS NULL;
DROP FUNCTION IF EXISTS market.delta_day_chunks(timestamptz);
DROP TRIGGER IF EXISTS book_days_unmaintained ON market.orderbook_snapshots;
DROP FUNCTION IF EXISTS market.book_days_unmaintained();
DROP FUNCTION IF EXISTS market.rebuild_book_days();
"""
DROP_TABLES = """
DROP TABLE IF EXISTS market.book_days_state;
DROP TABLE IF EXISTS market.book_days;
"""


def upgrade() -> None:
    for statement in (UPGRADE, TRIGGER, REBUILD):
        op.execute(statement)


def downgrade() -> None:
    for statement in (DOWNGRADE, TRIGGER_0006, DROP_TABLES):
        op.execute(statement)
