"""History backfill: Kalshi's own candlesticks and per-market backfill progress (issue #19).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

``market.kalshi_candles`` holds the candlesticks Kalshi serves (1, 60 and 1440 minutes), as
``kalshibook backfill`` fetched them: kept apart from kalshibook's own candles (computed from the
recorded trades) so ``kalshibook verify`` can compare the two. A plain table: a year of 1-minute
candles of a market is 525,600 rows at most, and most markets trade a few days.

``market.backfill_progress`` is the backfill's resume point, one row per market: up to which
whole second its trades were fetched (``trades_through``, exclusive) and handed to the writer and
committed, whether they are complete (the market closed before that instant), and up to which
instant Kalshi's candles were stored. A killed backfill redoes at most the market it was in; the
writer drops trades it already stored, so the result is the same.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE market.kalshi_candles (
    market_ticker   text NOT NULL,
    period_minutes  smallint NOT NULL CHECK (period_minutes IN (1, 60, 1440)),
    end_ts          timestamptz NOT NULL,
    price_open      numeric,
    price_high      numeric,
    price_low       numeric,
    price_close     numeric,
    price_mean      numeric,
    price_previous  numeric,
    yes_bid_open    numeric,
    yes_bid_high    numeric,
    yes_bid_low     numeric,
    yes_bid_close   numeric,
    yes_ask_open    numeric,
    yes_ask_high    numeric,
    yes_ask_low     numeric,
    yes_ask_close   numeric,
    volume          numeric NOT NULL DEFAULT 0,
    open_interest   numeric,
    fetched_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (market_ticker, period_minutes, end_ts)
);
COMMENT ON TABLE market.kalshi_candles IS
    'Kalshi''s official candlesticks as served by its REST API (end_ts = end_period_ts, inclusive '
    'end of the period); never mixed with kalshibook''s candles';
GRANT SELECT ON market.kalshi_candles TO kalshibook_reader;

CREATE TABLE market.backfill_progress (
    market_ticker    text PRIMARY KEY,
    trades_from      timestamptz,
    trades_through   timestamptz,
    trades_loaded    bigint NOT NULL DEFAULT 0,
    trades_complete  boolean NOT NULL DEFAULT false,
    candles_through  timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE market.backfill_progress IS
    'kalshibook backfill resume point per market: trades fetched over [trades_from, trades_through) '
    '(whole seconds), complete once the market closed before trades_through';
GRANT SELECT ON market.backfill_progress TO kalshibook_reader;
"""

DOWNGRADE = """
DROP TABLE IF EXISTS market.backfill_progress;
DROP TABLE IF EXISTS market.kalshi_candles;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
