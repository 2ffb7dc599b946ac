"""Delta days: per market and UTC day with deltas, the hours holding them and their count.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

A deltas page (``/v1/markets/{ticker}/deltas``, the seed's and the exports' deltas walks) of a
market whose book is quiet for days read the gap in widening windows that together planned every
delta chunk of it (four a day: ~30 ms for 60 days, two deltas 60 days apart, compressed chunks;
the same for two rows as for none). ``market.delta_days`` holds, per market and UTC day with
deltas, the UTC hours ``[first_hour, end_hour)`` holding them, so a window that found nothing is
followed by the next hour holding the market's deltas (kalshibook.storage.book_reads), as 0013
did for trades.

Deltas have no per-row trigger (0009: it made their COPY 2.2x slower), so, like the extents, the
days are kept by the collector's COPY workers in each COPY's transaction (kalshibook.storage
.extents), are valid only while ``market.delta_extents_state.complete``, and are recomputed by
``market.rebuild_delta_extents()`` (now one scan for both). The workers' session setting becomes
``kalshibook.delta_extents = 'maintained-days'``: a collector of before this revision (which
keeps the extents but not the days) still running after the upgrade marks the extents
incomplete at its next write, instead of leaving days missing that a page would skip. This
revision marks them incomplete itself; ``kalshibook migrate`` runs the rebuild right after, in
its own transaction (as after 0009), and ``kalshibook rebuild-extents`` does whenever needed.

Each day's entry also holds, once counted, the market's number of deltas that day (``deltas``;
NULL: not counted): the seed API's market detail (``delta_count``) counted every delta of the
market, so its latency grew with the market's history (~100 ms per 1.8M deltas). The collector
counts each day a few hours after it ended (kalshibook.storage.delta_counts; ``kalshibook
rebuild-extents`` counts them all), and a read adds the counted days to a count of the rest: the
day retention cut into, and the days since the first uncounted one. A write of deltas into a day
that has ended (the writer's late rows: a replayed spool) sets that day's count back to NULL and
bumps its ``version``; a count is stored only if the day's ``version`` is still the one it read,
so a count racing such a write is never kept. ``DELETE`` of deltas now marks the extents
incomplete too (it makes counts wrong; the rebuild sets every count back to NULL). Retention
(``drop_chunks``), compression and decompression fire no trigger (checked on 2.19.3): the reads
take the deltas' first chunk as the floor below which counted days no longer hold.

Downgrade restores 0009's trigger and rebuild functions and drops the table.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_TRIGGER = """
CREATE OR REPLACE FUNCTION market.deltas_unmaintained() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('kalshibook.delta_extents', true) IS DISTINCT FROM '{maintained}' THEN
        UPDATE market.delta_extents_state
        SET complete = false, generation = generation + 1, changed_at = now();
    END IF;
    RETURN NULL;
END $$;
"""

REBUILD = """
CREATE OR REPLACE FUNCTION market.rebuild_delta_extents(OUT markets bigint, OUT complete boolean)
LANGUAGE plpgsql AS $$
DECLARE
    seen bigint;
BEGIN
    SELECT s.generation INTO seen FROM market.delta_extents_state AS s;
    IF NOT FOUND THEN  -- the row was deleted: put it back (reads take a missing row as incomplete)
        INSERT INTO market.delta_extents_state (complete) VALUES (false) ON CONFLICT DO NOTHING;
        SELECT s.generation INTO seen FROM market.delta_extents_state AS s;
    END IF;
    WITH scan AS MATERIALIZED (
        SELECT market_ticker, time_bucket(INTERVAL '1 day', ts) AS day,
               time_bucket(INTERVAL '1 hour', min(ts)) AS first_hour,
               time_bucket(INTERVAL '1 hour', max(ts)) + INTERVAL '1 hour' AS end_hour
        FROM market.orderbook_deltas GROUP BY 1, 2
    ), extents AS (
        INSERT INTO market.delta_extents AS e (market_ticker, first_hour, end_hour)
        SELECT market_ticker, min(first_hour), max(end_hour)
        FROM scan GROUP BY market_ticker ORDER BY market_ticker
        ON CONFLICT (market_ticker) DO UPDATE
        SET first_hour = least(e.first_hour, EXCLUDED.first_hour),
            end_hour = greatest(e.end_hour, EXCLUDED.end_hour)
        RETURNING 1
    ), days AS (
        INSERT INTO market.delta_days AS e (market_ticker, day, first_hour, end_hour)
        SELECT market_ticker, day, first_hour, end_hour FROM scan ORDER BY market_ticker, day
        ON CONFLICT (market_ticker, day) DO UPDATE
        SET first_hour = least(e.first_hour, EXCLUDED.first_hour),
            end_hour = greatest(e.end_hour, EXCLUDED.end_hour)
    )
    SELECT count(*) INTO markets FROM extents;
    -- counts are recounted from scratch (by the collector, or kalshibook rebuild-extents); the
    -- version bump makes a count computed before this statement unstorable. After the extents
    -- and days above: rows locked in the writer's order (extents, then days), no deadlock
    UPDATE market.delta_days SET deltas = NULL, version = version + 1 WHERE deltas IS NOT NULL;
    UPDATE market.delta_extents_state AS s SET complete = true, changed_at = now()
    WHERE s.generation = seen;
    complete := FOUND;
END $$;
COMMENT ON FUNCTION market.rebuild_delta_extents() IS
    'recompute market.delta_extents and market.delta_days from market.orderbook_deltas (one '
    'full scan) and mark them complete unless deltas were written outside the collector '
    'meanwhile; returns the markets with deltas and whether the extents are complete';
"""

REBUILD_0009 = """
CREATE OR REPLACE FUNCTION market.rebuild_delta_extents(OUT markets bigint, OUT complete boolean)
LANGUAGE plpgsql AS $$
DECLARE
    seen bigint;
BEGIN
    SELECT s.generation INTO seen FROM market.delta_extents_state AS s;
    IF NOT FOUND THEN  -- the row was deleted: put it back (reads take a missing row as incomplete)
        INSERT INTO market.delta_extents_state (complete) VALUES (false) ON CONFLICT DO NOTHING;
        SELECT s.generation INTO seen FROM market.delta_extents_state AS s;
    END IF;
    INSERT INTO market.delta_extents AS e (market_ticker, first_hour, end_hour)
    SELECT market_ticker, time_bucket(INTERVAL '1 hour', min(ts)),
           time_bucket(INTERVAL '1 hour', max(ts)) + INTERVAL '1 hour'
    FROM market.orderbook_deltas GROUP BY market_ticker ORDER BY market_ticker
    ON CONFLICT (market_ticker) DO UPDATE
    SET first_hour = least(e.first_hour, EXCLUDED.first_hour),
        end_hour = greatest(e.end_hour, EXCLUDED.end_hour);
    GET DIAGNOSTICS markets = ROW_COUNT;
    UPDATE market.delta_extents_state AS s SET complete = true, changed_at = now()
    WHERE s.generation = seen;
    complete := FOUND;
END $$;
COMMENT ON FUNCTION market.rebuild_delta_extents() IS
    'recompute market.delta_extents from market.orderbook_deltas (a full scan) and mark them '
    'complete unless deltas were written outside the collector meanwhile; returns the markets '
    'with deltas and whether the extents are complete';
"""
"""0009's function, as it was (a migration is a snapshot: not imported)."""

UPGRADE = (
    """
CREATE TABLE market.delta_days (
    market_ticker text NOT NULL,
    day           timestamptz NOT NULL,
    first_hour    timestamptz NOT NULL,
    end_hour      timestamptz NOT NULL,
    deltas        bigint CHECK (deltas >= 0),
    version       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (market_ticker, day),
    CHECK (day <= first_hour AND first_hour < end_hour AND end_hour <= day + INTERVAL '24 hours')
);
CREATE INDEX delta_days_uncounted_idx ON market.delta_days (day) WHERE deltas IS NULL;
COMMENT ON COLUMN market.delta_days.deltas IS
    'the market''s deltas that day, once counted (NULL: not counted; valid while the extents '
    'are complete and the day lies after the deltas'' first chunk)';
COMMENT ON COLUMN market.delta_days.version IS
    'bumped by every write that makes the count stale; a count is stored only if unchanged';
COMMENT ON TABLE market.delta_days IS
    'per market and UTC day with order-book deltas, the hours [first_hour, end_hour) holding '
    'them (writer-kept; valid only while market.delta_extents_state.complete)';
GRANT SELECT ON market.delta_days TO kalshibook_reader;
-- a collector of before this revision may be inside a COPY whose statement trigger ran the old
-- function (no mark): wait for it, or its rows (without days) would commit after the rebuild's
-- scan while the extents say complete
LOCK TABLE market.orderbook_deltas IN SHARE ROW EXCLUSIVE MODE;
UPDATE market.delta_extents_state
SET complete = false, generation = generation + 1, changed_at = now();
DROP TRIGGER deltas_unmaintained ON market.orderbook_deltas;
CREATE TRIGGER deltas_unmaintained AFTER INSERT OR UPDATE OR DELETE ON market.orderbook_deltas
    FOR EACH STATEMENT EXECUTE FUNCTION market.deltas_unmaintained();
"""
    + _TRIGGER.replace("{maintained}", "maintained-days")
    + REBUILD
)

DOWNGRADE = (
    """
DROP TRIGGER deltas_unmaintained ON market.orderbook_deltas;
CREATE TRIGGER deltas_unmaintained AFTER INSERT OR UPDATE ON market.orderbook_deltas
    FOR EACH STATEMENT EXECUTE FUNCTION market.deltas_unmaintained();
"""
    + _TRIGGER.replace("{maintained}", "maintained")
    + REBUILD_0009
    + "DROP TABLE IF EXISTS market.delta_days;\n"
)


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
