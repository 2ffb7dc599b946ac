"""The trades' insert trigger reads ``market.trades`` only for a row bound to a compressed chunk.

0012's trigger tested ``ts`` changed AND the row's chunk compressed AND a stored copy exists, as
one expression. PL/pgSQL plans an expression as a whole the first time it runs, and re-plans it
per row while the custom plan wins: every row given with microseconds planned a read of the
hypertable (its indexes locked, its chunks excluded) even though the chunk test, evaluated first,
was false. A plain-SQL ``INSERT ... SELECT`` of microsecond trades cost ~315 µs a row in the
trigger alone, growing with the number of chunks (20,000 rows of a year of daily chunks: 6.3 s in
the trigger, against 0.8 s for the extents trigger; measured with ``track_functions``). The
collector and ``kalshibook backfill`` give whole milliseconds and never took that path.

The stored-copy read is now a statement of its own inside the chunk test, so it is planned only
for a row whose chunk is compressed. Behaviour is unchanged. Downgrade restores 0012's function.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION market.trades_normalise_ts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    given timestamptz := NEW.ts;
BEGIN
    NEW.created_time := coalesce(NEW.created_time, NEW.ts);
    NEW.ts := date_trunc('milliseconds', NEW.ts);
    NEW.exchange_seq := coalesce(NEW.exchange_seq,
                                 (extract(epoch FROM NEW.ts) * 1000)::bigint * 1000000);
    IF NEW.ts <> given
       AND EXISTS (SELECT FROM _timescaledb_catalog.chunk c
                   WHERE c.schema_name = TG_TABLE_SCHEMA AND c.table_name = TG_TABLE_NAME
                     AND c.status & 1 = 1) THEN
        -- planned only here: as part of the test above it was planned for every such row
        IF EXISTS (SELECT FROM market.trades t
                   WHERE t.market_ticker = NEW.market_ticker AND t.ts = NEW.ts
                     AND t.trade_id = NEW.trade_id) THEN
            RAISE unique_violation USING
                MESSAGE = format('trade %s at %s is stored already (in a compressed chunk)',
                                 NEW.trade_id, NEW.ts),
                HINT = 'give ts in whole milliseconds (date_trunc(''milliseconds'', ts)): '
                       'ON CONFLICT then applies; the finer time goes in created_time';
        END IF;
    END IF;
    RETURN NEW;
END $$
"""

TRIGGER_FUNCTION_0012 = """
CREATE OR REPLACE FUNCTION market.trades_normalise_ts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    given timestamptz := NEW.ts;
BEGIN
    NEW.created_time := coalesce(NEW.created_time, NEW.ts);
    NEW.ts := date_trunc('milliseconds', NEW.ts);
    NEW.exchange_seq := coalesce(NEW.exchange_seq,
                                 (extract(epoch FROM NEW.ts) * 1000)::bigint * 1000000);
    IF NEW.ts <> given
       AND EXISTS (SELECT FROM _timescaledb_catalog.chunk c
                   WHERE c.schema_name = TG_TABLE_SCHEMA AND c.table_name = TG_TABLE_NAME
                     AND c.status & 1 = 1)
       AND EXISTS (SELECT FROM market.trades t
                   WHERE t.market_ticker = NEW.market_ticker AND t.ts = NEW.ts
                     AND t.trade_id = NEW.trade_id) THEN
        RAISE unique_violation USING
            MESSAGE = format('trade %s at %s is stored already (in a compressed chunk)',
                             NEW.trade_id, NEW.ts),
            HINT = 'give ts in whole milliseconds (date_trunc(''milliseconds'', ts)): '
                   'ON CONFLICT then applies; the finer time goes in created_time';
    END IF;
    RETURN NEW;
END $$
"""
"""0012's function, as it was (a migration is a snapshot: not imported)."""


def upgrade() -> None:
    op.execute(TRIGGER_FUNCTION)


def downgrade() -> None:
    op.execute(TRIGGER_FUNCTION_0012)
