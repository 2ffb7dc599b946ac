"""Delta extents: where in time each market's order-book deltas lie, kept by the writer.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

0006 gave trades and snapshots per-market extents, kept by a per-row trigger. Deltas, the
firehose, got none: such a trigger made a 300k-row COPY of deltas 2.2x slower (1.22 s -> 2.73 s,
measured). Without an end, whatever follows a market's last snapshot was read up to the present:
the order book of a settled market "now" planned every delta chunk since its last snapshot (four a
day: ~1,400 after a year), as did the last page of a deltas walk, the seed market detail's delta
count and an export day long after the book ended.

``market.delta_extents`` holds, per market, the UTC hours ``[first_hour, end_hour)`` that contain
all its deltas. The collector's COPY workers (kalshibook.storage.copyworker, .extents) maintain it
in the transaction of each COPY, from the batch's own rows; their connections set
``kalshibook.delta_extents = 'maintained'`` once. Any other insert or update of deltas (plain SQL,
a loader's COPY, a repair) fires a statement-level trigger, once per statement, that marks the
extents incomplete in ``market.delta_extents_state`` and bumps its ``generation``: reads then
ignore them and read as before, until ``market.rebuild_delta_extents()`` (``kalshibook
rebuild-extents``) recomputes them from the table and marks them complete again. Compression and decompression fire no trigger
(checked on 2.19.3). Two writes bypass the trigger: rows inserted straight into a chunk of
``_timescaledb_internal`` (statement triggers stay on the hypertable; not a supported way to
write), and writes under ``session_replication_role = replica`` (``pg_restore --disable-triggers``,
which restores the extents and their state with the deltas; a logical-replication subscriber of
the deltas alone must run the rebuild). ``ENABLE ALWAYS`` would cover the latter, but TimescaleDB
refuses ``ALTER TABLE … ENABLE ALWAYS TRIGGER`` on a hypertable with compression enabled. Like the
other extents they never shrink: after retention or a DELETE an extent only over-covers.

A rebuild reads ``generation`` first, scans, and marks the extents complete only if
``generation`` is unchanged: a statement that inserted deltas the scan could not see (committed
after it began, or not yet) has bumped it, or holds its row lock until it commits, so the
rebuild leaves the extents incomplete and says so. No lock is held over the scan: writers wait at
most for the final update.

This revision creates the tables and the trigger with the extents incomplete; ``kalshibook
migrate`` runs the first rebuild right after, in its own transaction (a scan of every delta
inside the migration's transaction would hold the trigger's SHARE ROW EXCLUSIVE lock and stop
every insert of deltas for its whole duration).
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE market.delta_extents (
    market_ticker text PRIMARY KEY,
    first_hour    timestamptz NOT NULL,
    end_hour      timestamptz NOT NULL,
    CHECK (first_hour < end_hour)
);
COMMENT ON TABLE market.delta_extents IS
    'per market, the UTC hours [first_hour, end_hour) holding its order-book deltas (writer-kept; '
    'valid only while market.delta_extents_state.complete)';
CREATE TABLE market.delta_extents_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    complete   boolean NOT NULL,
    generation bigint NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE market.delta_extents_state IS
    'false once deltas were written by anything but the collector''s writer: '
    'run market.rebuild_delta_extents()';
INSERT INTO market.delta_extents_state (complete) VALUES (false);
GRANT SELECT ON market.delta_extents, market.delta_extents_state TO kalshibook_reader;

CREATE FUNCTION market.deltas_unmaintained() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('kalshibook.delta_extents', true) IS DISTINCT FROM 'maintained' THEN
        UPDATE market.delta_extents_state
        SET complete = false, generation = generation + 1, changed_at = now();
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER deltas_unmaintained AFTER INSERT OR UPDATE ON market.orderbook_deltas
    FOR EACH STATEMENT EXECUTE FUNCTION market.deltas_unmaintained();

CREATE FUNCTION market.rebuild_delta_extents(OUT markets bigint, OUT complete boolean)
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

DOWNGRADE = """
DROP TRIGGER IF EXISTS deltas_unmaintained ON market.orderbook_deltas;
DROP FUNCTION IF EXISTS market.deltas_unmaintained();
DROP FUNCTION IF EXISTS market.rebuild_delta_extents();
DROP TABLE IF EXISTS market.delta_extents_state;
DROP TABLE IF EXISTS market.delta_extents;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
