"""Trade days per market and source, and settlement indexes for the filters the API offers.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

``GET /v1/markets/{ticker}/coverage`` gives each trade source's first and last trade (``ws``: the
live feed, ``rest``: backfills). It looked for them over the market's whole trade extent with a
``source`` filter: a market without REST trades (the usual case) had every one of its trades read,
in both directions, and every chunk of its extent planned (~150 ms for a market a year old,
whatever it holds). And a trades page of a sparse market (two trades a year apart) walked the
gap between its rows in widening windows that together planned every chunk of the gap (~47 ms for
a year, the same for two rows as for none).

``market.trade_days`` holds, per market, source and UTC day with trades, the UTC hours
``[first_hour, end_hour)`` of that day holding them: a row per market and day it trades (a few
thousand a day at Kalshi's breadth), maintained by the same BEFORE INSERT trigger as
``market.trade_extents`` (0006). The trigger now checks the row's day entry (one primary-key
look-up per row, as before) and widens both it and the market's extent when the row's hour lies
outside it, so the market's extent always contains its days'. The coverage reads each source's
first and last hour from it; a page whose window came back empty jumps to the next hour holding
trades of its markets instead of widening across the gap (kalshibook.storage.trade_reads). Filled
from the existing trades here (one pass over ``market.trades``), with the trades locked against
writes until the revision commits: a trade committed in between would have no day.

``/v1/settlements`` (and the seed's) filter by ``result``, ``event_ticker`` and ``series_ticker``
and page in ``(settled_at, market_ticker)`` order: ``result`` had no index (every settlement was
read), and the event and series indexes gave the rows unordered (all of an event's or series'
settlements were read and sorted for one page). Each filter now has an index in page order, and
the unfiltered order one too.

Downgrade restores 0006's trigger function and indexes and drops the new ones.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = """
-- trades committed by others between the fill below and this revision's commit would go through
-- 0006's trigger and miss their day: writes of trades wait for the fill (they queue behind this
-- lock; the collector's writer retries, the lock timeout and the migration's retries apply)
LOCK TABLE market.trades IN SHARE MODE;
CREATE TABLE market.trade_days (
    market_ticker text NOT NULL,
    source        text NOT NULL,
    day           timestamptz NOT NULL,
    first_hour    timestamptz NOT NULL,
    end_hour      timestamptz NOT NULL,
    PRIMARY KEY (market_ticker, source, day),
    CHECK (day <= first_hour AND first_hour < end_hour AND end_hour <= day + INTERVAL '1 day')
);
CREATE INDEX trade_days_market_idx ON market.trade_days (market_ticker, day);
CREATE INDEX trade_days_day_idx ON market.trade_days (day);
COMMENT ON TABLE market.trade_days IS
    'per market, trade source and UTC day with trades, the hours [first_hour, end_hour) holding '
    'them (trigger-maintained, inside market.trade_extents)';
INSERT INTO market.trade_days (market_ticker, source, day, first_hour, end_hour)
SELECT market_ticker, source, time_bucket(INTERVAL '1 day', ts),
       time_bucket(INTERVAL '1 hour', min(ts)),
       time_bucket(INTERVAL '1 hour', max(ts)) + INTERVAL '1 hour'
FROM market.trades GROUP BY market_ticker, source, time_bucket(INTERVAL '1 day', ts);
GRANT SELECT ON market.trade_days TO kalshibook_reader;

CREATE OR REPLACE FUNCTION market.trades_extend_extent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    hour timestamptz := time_bucket(INTERVAL '1 hour', NEW.ts);
BEGIN
    PERFORM 1 FROM market.trade_days d
    WHERE d.market_ticker = NEW.market_ticker AND d.source = NEW.source
      AND d.day = time_bucket(INTERVAL '1 day', hour)
      AND d.first_hour <= hour AND d.end_hour > hour;
    IF NOT FOUND THEN
        INSERT INTO market.trade_extents AS e (market_ticker, first_hour, end_hour)
        VALUES (NEW.market_ticker, hour, hour + INTERVAL '1 hour')
        ON CONFLICT (market_ticker) DO UPDATE
        SET first_hour = least(e.first_hour, EXCLUDED.first_hour),
            end_hour = greatest(e.end_hour, EXCLUDED.end_hour);
        INSERT INTO market.trade_days AS e (market_ticker, source, day, first_hour, end_hour)
        VALUES (NEW.market_ticker, NEW.source, time_bucket(INTERVAL '1 day', hour), hour,
                hour + INTERVAL '1 hour')
        ON CONFLICT (market_ticker, source, day) DO UPDATE
        SET first_hour = least(e.first_hour, EXCLUDED.first_hour),
            end_hour = greatest(e.end_hour, EXCLUDED.end_hour);
    END IF;
    RETURN NEW;
END $$;

CREATE INDEX settlements_result_page_idx
    ON market.settlements (result, settled_at, market_ticker);
CREATE INDEX settlements_event_page_idx
    ON market.settlements (event_ticker, settled_at, market_ticker);
CREATE INDEX settlements_series_page_idx
    ON market.settlements (series_ticker, settled_at, market_ticker);
CREATE INDEX settlements_page_idx ON market.settlements (settled_at, market_ticker);
DROP INDEX market.settlements_event_idx;
DROP INDEX market.settlements_series_idx;
DROP INDEX market.settlements_settled_idx;
ANALYZE market.settlements;
"""

DOWNGRADE = """
CREATE INDEX IF NOT EXISTS settlements_event_idx ON market.settlements (event_ticker);
CREATE INDEX IF NOT EXISTS settlements_series_idx ON market.settlements (series_ticker);
CREATE INDEX IF NOT EXISTS settlements_settled_idx ON market.settlements (settled_at);
DROP INDEX IF EXISTS market.settlements_result_page_idx;
DROP INDEX IF EXISTS market.settlements_event_page_idx;
DROP INDEX IF EXISTS market.settlements_series_page_idx;
DROP INDEX IF EXISTS market.settlements_page_idx;

CREATE OR REPLACE FUNCTION market.trades_extend_extent() RETURNS trigger LANGUAGE plpgsql AS $$
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
DROP TABLE IF EXISTS market.trade_days;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
