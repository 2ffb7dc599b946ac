"""Whether a market exists, for a candle range with no data (kalshibook.storage.candle_reads):
listed, or with trades, a book, quotes or stats; and, on the Community edition, asked without
planning the quotes' and stats' hypertables over their whole history.

The quotes-only and stats-only markets below span 30 daily chunks, materialised into the candle
aggregates; one more market has a quote above the 1d watermark only (not refreshed). Before the
check read the 1d materialisations and the hypertables from the watermark on, an unknown ticker
planned every chunk of market.quotes and market.market_stats: ~750 ms at 10M trades.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from plan_support import Recorder, chunks_planned

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.errors import UnknownMarket
from kalshibook.storage.candle_reads import market_exists, read_candle_rows

pytestmark = [pytest.mark.db]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
DATA = """
INSERT INTO market.series (ticker, raw) VALUES ('S', '{}');
INSERT INTO market.events (event_ticker, series_ticker, raw) VALUES ('E', 'S', '{}');
INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)
VALUES ('LISTED', 'E', 'S', 'active', '{}');
INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size, yes_ask,
                           yes_ask_size)
SELECT %(t0)s + k * INTERVAL '1 day' + INTERVAL '5 hours', 'Q-ONLY', now(), 0.40, 10, 0.45, 10
FROM generate_series(0, %(days)s - 1) k;
INSERT INTO market.market_stats (ts, market_ticker, received_at, open_interest)
SELECT %(t0)s + k * INTERVAL '1 day' + INTERVAL '5 hours', 'S-ONLY', now(), 100
FROM generate_series(0, %(days)s - 1) k;
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
VALUES (%(t0)s + INTERVAL '3 days', %(trade_id)s, 'T-ONLY', 0.5, 0.5, 1, 'ws', now());
"""
LATE_QUOTE = """
INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size, yes_ask,
                           yes_ask_size)
VALUES (%(t0)s + INTERVAL '40 days', 'Q-LATE', now(), 0.40, 10, 0.45, 10)
"""
REFRESH = "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)"


def load(url: str) -> bool:
    """The markets above; True when the candle relations are continuous aggregates (refreshed)."""
    with psycopg.connect(url, autocommit=True) as conn:
        params = {"t0": T0, "days": DAYS, "trade_id": uuid.uuid4()}
        for statement in DATA.split(";")[:-1]:
            conn.execute(statement, {k: v for k, v in params.items() if f"%({k})s" in statement})
        community = conn.execute("SHOW timescaledb.license").fetchone() == ("timescale",)
        if community:
            for level in ("1m", "1h", "1d"):
                for source in ("quotes", "stats"):
                    conn.execute(
                        REFRESH,
                        (
                            f"market.candles_{source}_{level}",
                            T0 - timedelta(days=2),
                            T0 + timedelta(days=DAYS + 2),
                        ),
                    )
        conn.execute(LATE_QUOTE, {"t0": T0})
    return community


@pytest.mark.both_editions
async def test_a_market_exists_by_any_of_its_rows(db_url: str) -> None:
    load(db_url)
    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, options=CONNECTION_OPTIONS
    ) as conn:
        found = {
            t: await market_exists(conn, t)
            for t in ("LISTED", "Q-ONLY", "S-ONLY", "T-ONLY", "Q-LATE", "NOPE")
        }
        # a range with no data: candles of a known market, 404 of an unknown one
        before = T0 - timedelta(days=200)
        assert (
            await read_candle_rows(
                conn, "Q-ONLY", "1h", before, before + timedelta(hours=3), fill=False
            )
            == []
        )
        with pytest.raises(UnknownMarket):
            await read_candle_rows(
                conn, "NOPE", "1h", before, before + timedelta(hours=3), fill=False
            )
    assert found == {
        "LISTED": True, "Q-ONLY": True, "S-ONLY": True, "T-ONLY": True, "Q-LATE": True,
        "NOPE": False,
    }  # fmt: skip


async def test_an_unknown_market_plans_only_the_chunks_after_the_watermark(db_url: str) -> None:
    if not load(db_url):
        pytest.skip("continuous aggregates are Community edition only")
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        await market_exists(conn, "KXCATALOG")  # the aggregates' catalog, looked up once
        Recorder.log = []
        assert not await market_exists(conn, "NOPE")
    # of 2 x 30 daily chunks below the 1d watermark and the late quote's one above it
    assert chunks_planned(db_url, Recorder.log, ["quotes", "market_stats"]) <= 2
