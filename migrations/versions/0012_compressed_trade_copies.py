"""A trade inserted again with microseconds into a compressed chunk fails instead of being stored
twice.

The trades' insert trigger (0005) truncates ``ts`` to the millisecond, but TimescaleDB checks a
row against a *compressed* chunk's unique key ``(trade_id, ts)`` before BEFORE-INSERT triggers
run: a plain-SQL copy of a stored trade, given with microseconds, passed that check (``ON
CONFLICT`` did not see it either), was truncated, and was stored a second time with the same key.
Candles then counted it twice, and the chunk could be neither decompressed nor deduplicated
(``dedupe-trades`` failed on the unique key). On an uncompressed chunk the unique index, checked
after the trigger, already refuses or merges such a copy.

The trigger now looks for the stored copy when, and only when, it changed ``ts`` (microseconds
given) and the row goes to a compressed chunk, and raises ``unique_violation`` naming the fix
(give ``ts`` in whole milliseconds: then ``ON CONFLICT`` applies as usual). The collector and
``kalshibook backfill`` truncate before they insert, so they never take this path. Downgrade
restores 0005's function.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
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
TRIGGER_FUNCTION_0005 = """
CREATE OR REPLACE FUNCTION market.trades_normalise_ts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_time := coalesce(NEW.created_time, NEW.ts);
    NEW.ts := date_trunc('milliseconds', NEW.ts);
    NEW.exchange_seq := coalesce(NEW.exchange_seq,
                                 (extract(epoch FROM NEW.ts) * 1000)::bigint * 1000000);
    RETURN NEW;
END $$
"""


def upgrade() -> None:
    op.execute(TRIGGER_FUNCTION)


def downgrade() -> None:
    op.execute(TRIGGER_FUNCTION_0005)
