"""Rows for the candle tests: one trade, quote or market-stats row at a time, and a refresh of
one continuous aggregate over a window (Community edition)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import psycopg

# (ts, trade_id, ticker, yes_price, yes_price again for no_price = 1 - it, count)
INSERT_TRADE: Final = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,
                           taker_outcome_side, taker_book_side, source, received_at)
VALUES (%s, %s, %s, %s, 1 - %s, %s, 'yes', 'bid', 'ws', now())
"""
# (ts, ticker, yes_bid, yes_ask)
INSERT_QUOTE: Final = """
INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size, yes_ask,
                           yes_ask_size)
VALUES (%s, %s, now(), %s, 10, %s, 10)
"""
# (ts, ticker, open_interest)
INSERT_STATS: Final = """
INSERT INTO market.market_stats (ts, market_ticker, received_at, open_interest)
VALUES (%s, %s, now(), %s)
"""
# (aggregate, window start, window end)
REFRESH: Final = "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)"
# auto_explain sends every statement's plan to the client as a NOTICE (a test's notice handler
# collects them); tests add the settings their question needs
AUTO_EXPLAIN: Final = (
    "LOAD 'auto_explain'",
    "SET auto_explain.log_min_duration = 0",
    "SET auto_explain.log_level = 'notice'",
)


def insert_hourly(conn: psycopg.Connection[Any], ticker: str, first: datetime, hours: int) -> None:
    """At 7 minutes past each of ``hours`` hours from ``first``: a trade of 3 at a price that
    wanders on the cent grid (0.30 + (k mod 50) cents), a quote a cent either side of it and an
    open interest of 100 + k."""
    for k in range(hours):
        ts = first + timedelta(hours=k, minutes=7)
        p = Decimal("0.30") + Decimal(k % 50) / 100
        conn.execute(INSERT_TRADE, (ts, uuid.uuid4(), ticker, p, p, 3))
        conn.execute(INSERT_QUOTE, (ts, ticker, p - Decimal("0.01"), p + Decimal("0.01")))
        conn.execute(INSERT_STATS, (ts, ticker, Decimal(100 + k)))
