"""Storage model: market-data schema, hypertables, reference tables, private schema, reader role.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Conventions (ARCHITECTURE.md §2):
- ``market`` holds everything market-related; the read-only role ``kalshibook_reader`` may SELECT it
  (current and future objects). ``private`` holds API keys and usage; the reader cannot see it.
- Prices are ``numeric`` dollars in [0, 1]; sizes are ``numeric`` contracts (hundredths exist).
- Every time is ``timestamptz``; captured rows carry exchange time ``ts`` and ``received_at``.
- Chunk intervals follow volume: deltas are the firehose (6 h), trades/quotes/stats/snapshots a
  day, lifecycle a week, gaps a month. Every hypertable has ``(market_ticker, ts DESC)``.
- ``trades``: a unique index on a hypertable must contain the time column, so WS (ms) and REST (µs)
  copies of one trade only collide if their ``ts`` agree. A BEFORE INSERT trigger truncates ``ts``
  to milliseconds (the WS precision) so ``UNIQUE (trade_id, ts)`` catches both copies.
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMAS = """
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE SCHEMA market;
CREATE SCHEMA private;
REVOKE ALL ON SCHEMA private FROM PUBLIC;
COMMENT ON SCHEMA market IS 'kalshibook market data (readable by kalshibook_reader)';
COMMENT ON SCHEMA private IS 'kalshibook API keys and usage (not readable by SQL users)';
"""

REFERENCE_TABLES = """
CREATE TABLE market.series (
    ticker          text PRIMARY KEY,
    title           text,
    category        text,
    frequency       text,
    tags            text[],
    fee_type        text,
    fee_multiplier  numeric,
    raw             jsonb NOT NULL,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE market.events (
    event_ticker            text PRIMARY KEY,
    series_ticker           text,
    title                   text,
    sub_title               text,
    category                text,
    mutually_exclusive      boolean,
    collateral_return_type  text,
    strike_date             timestamptz,
    strike_period           text,
    raw                     jsonb NOT NULL,
    first_seen_at           timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_series_idx ON market.events (series_ticker);

CREATE TABLE market.markets (
    ticker                    text PRIMARY KEY,
    event_ticker              text NOT NULL,
    series_ticker             text,
    market_type               text,
    title                     text,
    yes_sub_title             text,
    no_sub_title              text,
    status                    text NOT NULL,
    created_time              timestamptz,
    open_time                 timestamptz,
    close_time                timestamptz,
    expected_expiration_time  timestamptz,
    latest_expiration_time    timestamptz,
    strike_type               text,
    floor_strike              numeric,
    cap_strike                numeric,
    functional_strike         text,
    custom_strike             jsonb,
    price_level_structure     text,
    price_ranges              jsonb,
    result                    text,
    settlement_value          numeric CHECK (settlement_value BETWEEN 0 AND 1),
    raw                       jsonb NOT NULL,
    first_seen_at             timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX markets_event_idx ON market.markets (event_ticker);
CREATE INDEX markets_series_idx ON market.markets (series_ticker);
CREATE INDEX markets_status_idx ON market.markets (status);

CREATE TABLE market.settlements (
    market_ticker     text PRIMARY KEY,
    event_ticker      text,
    series_ticker     text,
    result            text NOT NULL CHECK (result IN ('yes', 'no', 'scalar', 'void')),
    settlement_value  numeric CHECK (settlement_value BETWEEN 0 AND 1),
    determined_at     timestamptz,
    settled_at        timestamptz,
    source            text NOT NULL CHECK (source IN ('ws', 'rest')),
    confirmed         boolean NOT NULL DEFAULT false,
    raw               jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settlements_event_idx ON market.settlements (event_ticker);
CREATE INDEX settlements_series_idx ON market.settlements (series_ticker);
CREATE INDEX settlements_settled_idx ON market.settlements (settled_at);
"""

HYPERTABLES = """
CREATE TABLE market.trades (
    ts                  timestamptz NOT NULL,
    trade_id            uuid NOT NULL,
    market_ticker       text NOT NULL,
    yes_price           numeric NOT NULL CHECK (yes_price BETWEEN 0 AND 1),
    no_price            numeric NOT NULL CHECK (no_price BETWEEN 0 AND 1),
    count               numeric NOT NULL CHECK (count > 0),
    taker_outcome_side  text CHECK (taker_outcome_side IN ('yes', 'no')),
    taker_book_side     text CHECK (taker_book_side IN ('bid', 'ask')),
    is_block_trade      boolean NOT NULL DEFAULT false,
    source              text NOT NULL CHECK (source IN ('ws', 'rest')),
    received_at         timestamptz NOT NULL
);
CREATE FUNCTION market.trades_normalise_ts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.ts := date_trunc('milliseconds', NEW.ts);
    RETURN NEW;
END $$;
CREATE TRIGGER trades_normalise_ts BEFORE INSERT ON market.trades
    FOR EACH ROW EXECUTE FUNCTION market.trades_normalise_ts();
SELECT create_hypertable('market.trades', by_range('ts', INTERVAL '1 day'));
CREATE UNIQUE INDEX trades_trade_id_uq ON market.trades (trade_id, ts);
CREATE INDEX trades_ticker_ts_idx ON market.trades (market_ticker, ts DESC);

CREATE TABLE market.orderbook_snapshots (
    ts             timestamptz NOT NULL,
    market_ticker  text NOT NULL,
    received_at    timestamptz NOT NULL,
    source         text NOT NULL CHECK (source IN ('snapshot', 'resync', 'checkpoint', 'rest')),
    epoch          bigint NOT NULL,
    sid            integer,
    seq            bigint,
    yes_bids       jsonb NOT NULL CHECK (jsonb_typeof(yes_bids) = 'array'),
    no_bids        jsonb NOT NULL CHECK (jsonb_typeof(no_bids) = 'array')
);
SELECT create_hypertable('market.orderbook_snapshots', by_range('ts', INTERVAL '1 day'));
CREATE INDEX orderbook_snapshots_ticker_ts_idx ON market.orderbook_snapshots (market_ticker, ts DESC);
COMMENT ON COLUMN market.orderbook_snapshots.yes_bids IS
    'YES bids as [[price, size], ...] JSON numbers (exact numerics), ascending by price';
COMMENT ON COLUMN market.orderbook_snapshots.epoch IS
    'subscription epoch: (epoch, seq) orders every snapshot and delta of a market';

CREATE TABLE market.orderbook_deltas (
    ts             timestamptz NOT NULL,
    market_ticker  text NOT NULL,
    received_at    timestamptz NOT NULL,
    side           text NOT NULL CHECK (side IN ('yes', 'no')),
    price          numeric NOT NULL CHECK (price BETWEEN 0 AND 1),
    delta          numeric NOT NULL CHECK (delta <> 0),
    epoch          bigint NOT NULL,
    sid            integer NOT NULL,
    seq            bigint NOT NULL
);
SELECT create_hypertable('market.orderbook_deltas', by_range('ts', INTERVAL '6 hours'));
CREATE INDEX orderbook_deltas_ticker_ts_idx ON market.orderbook_deltas (market_ticker, ts DESC);

CREATE TABLE market.quotes (
    ts             timestamptz NOT NULL,
    market_ticker  text NOT NULL,
    received_at    timestamptz NOT NULL,
    yes_bid        numeric CHECK (yes_bid BETWEEN 0 AND 1),
    yes_bid_size   numeric CHECK (yes_bid_size >= 0),
    yes_ask        numeric CHECK (yes_ask BETWEEN 0 AND 1),
    yes_ask_size   numeric CHECK (yes_ask_size >= 0)
);
SELECT create_hypertable('market.quotes', by_range('ts', INTERVAL '1 day'));
CREATE INDEX quotes_ticker_ts_idx ON market.quotes (market_ticker, ts DESC);

CREATE TABLE market.market_stats (
    ts                   timestamptz NOT NULL,
    market_ticker        text NOT NULL,
    received_at          timestamptz NOT NULL,
    price                numeric CHECK (price BETWEEN 0 AND 1),
    yes_bid              numeric CHECK (yes_bid BETWEEN 0 AND 1),
    yes_ask              numeric CHECK (yes_ask BETWEEN 0 AND 1),
    yes_bid_size         numeric CHECK (yes_bid_size >= 0),
    yes_ask_size         numeric CHECK (yes_ask_size >= 0),
    last_trade_size      numeric CHECK (last_trade_size >= 0),
    volume               numeric CHECK (volume >= 0),
    open_interest        numeric CHECK (open_interest >= 0),
    dollar_volume        bigint,
    dollar_open_interest bigint
);
SELECT create_hypertable('market.market_stats', by_range('ts', INTERVAL '1 day'));
CREATE INDEX market_stats_ticker_ts_idx ON market.market_stats (market_ticker, ts DESC);

CREATE TABLE market.lifecycle_events (
    ts                timestamptz NOT NULL,
    market_ticker     text,
    event_ticker      text,
    received_at       timestamptz NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('market', 'event', 'event_fee')),
    event_type        text NOT NULL,
    result            text,
    settlement_value  numeric CHECK (settlement_value BETWEEN 0 AND 1),
    open_ts           timestamptz,
    close_ts          timestamptz,
    determination_ts  timestamptz,
    settled_ts        timestamptz,
    sid               integer,
    seq               bigint,
    payload           jsonb NOT NULL,
    CHECK (market_ticker IS NOT NULL OR event_ticker IS NOT NULL)
);
SELECT create_hypertable('market.lifecycle_events', by_range('ts', INTERVAL '7 days'));
CREATE INDEX lifecycle_events_ticker_ts_idx ON market.lifecycle_events (market_ticker, ts DESC);
CREATE INDEX lifecycle_events_event_ts_idx ON market.lifecycle_events (event_ticker, ts DESC);

CREATE TABLE market.book_gaps (
    from_ts        timestamptz NOT NULL,
    to_ts          timestamptz NOT NULL,
    market_ticker  text NOT NULL,
    reason         text NOT NULL CHECK (reason IN
                      ('disconnect', 'seq_gap', 'error_10', 'error_25', 'daemon_restart', 'silence')),
    sid            integer,
    detected_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (to_ts >= from_ts)
);
SELECT create_hypertable('market.book_gaps', by_range('from_ts', INTERVAL '30 days'));
CREATE INDEX book_gaps_ticker_ts_idx ON market.book_gaps (market_ticker, from_ts DESC);
"""

PRIVATE_TABLES = """
CREATE TABLE private.api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    prefix        text NOT NULL UNIQUE,
    key_hash      bytea NOT NULL UNIQUE,
    credits       bigint NOT NULL CHECK (credits >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

CREATE TABLE private.api_usage (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts          timestamptz NOT NULL DEFAULT now(),
    key_id      bigint NOT NULL REFERENCES private.api_keys (id) ON DELETE CASCADE,
    endpoint    text NOT NULL,
    cost        integer NOT NULL CHECK (cost >= 0),
    status      integer NOT NULL,
    request_id  text NOT NULL
);
CREATE INDEX api_usage_key_ts_idx ON private.api_usage (key_id, ts DESC);
"""

READER_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kalshibook_reader') THEN
        CREATE ROLE kalshibook_reader NOLOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA market TO kalshibook_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA market TO kalshibook_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA market GRANT SELECT ON TABLES TO kalshibook_reader;
REVOKE ALL ON SCHEMA private FROM kalshibook_reader;
"""

DOWNGRADE = """
ALTER DEFAULT PRIVILEGES IN SCHEMA market REVOKE SELECT ON TABLES FROM kalshibook_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA market FROM kalshibook_reader;
REVOKE ALL ON SCHEMA market FROM kalshibook_reader;
DROP SCHEMA private CASCADE;
DROP SCHEMA market CASCADE;
-- The role is cluster-wide: drop it only when no other database still grants it something, and
-- no other session is granting it something now (its lock: a migration of another database).
DO $$
BEGIN
    DROP ROLE IF EXISTS kalshibook_reader;
EXCEPTION WHEN dependent_objects_still_exist OR object_in_use OR lock_not_available THEN
    RAISE NOTICE 'kalshibook_reader kept: still used elsewhere in this cluster';
END $$;
"""


def upgrade() -> None:
    op.execute(SCHEMAS)
    op.execute(REFERENCE_TABLES)
    op.execute(HYPERTABLES)
    op.execute(PRIVATE_TABLES)
    op.execute(READER_ROLE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
