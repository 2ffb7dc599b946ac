"""`kalshibook dedupe-trades`: trades stored twice by versions before the writer merged a
trade's copies (a WS copy on a whole second and its REST copy) become one row, as the writer
keeps them now, and the candles count them once."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from cli_support import run_cli
from test_service_roles import service_login

from kalshibook.storage.candle_refresh import refresh
from kalshibook.storage.candles import TRADES_ONLY

pytestmark = [pytest.mark.db, pytest.mark.both_editions]

DAY = datetime(2026, 3, 2, tzinfo=UTC)
NOON = DAY + timedelta(hours=12)
A, B, C, D, E, F = (str(uuid.uuid4()) for _ in range(6))
# (trade_id, market, created_time, source, received_at): rows as an older version stored them
ROWS = (
    (A, "M", NOON + timedelta(seconds=5), "ws", NOON + timedelta(seconds=5.2)),
    (A, "M", NOON + timedelta(seconds=5, microseconds=437_250), "rest", NOON + timedelta(hours=2)),
    (B, "M", NOON + timedelta(seconds=30, milliseconds=1), "ws", NOON + timedelta(seconds=30)),
    # either side of midnight: the WS second rounded up into the next day
    (C, "M", DAY + timedelta(days=1), "ws", DAY + timedelta(days=1, seconds=1)),
    (C, "M", DAY + timedelta(days=1, microseconds=-100_000), "rest", DAY + timedelta(days=2)),
    (D, "N", DAY + timedelta(days=3, hours=1), "ws", DAY + timedelta(days=3, hours=1)),
    (D, "N", DAY + timedelta(days=3, hours=1, milliseconds=9), "rest", DAY + timedelta(days=4)),
    # wholly in the last second of a day: that day's, not counted again by the next
    (E, "N", DAY + timedelta(days=3, seconds=-1), "ws", DAY + timedelta(days=3)),
    (E, "N", DAY + timedelta(days=3, seconds=-0.5), "rest", DAY + timedelta(days=4)),
    # the kept row (the REST time, the WS copy's source) lies in an hour of no other WS trade
    (F, "P", DAY + timedelta(days=2, hours=10), "ws", DAY + timedelta(days=2, hours=10)),
    (F, "P", DAY + timedelta(days=2, hours=10, milliseconds=-200), "rest", DAY + timedelta(days=4)),
)
OUTSIDE_TRADE_DAYS = """
SELECT count(*) FROM market.trades AS t
WHERE NOT EXISTS (SELECT FROM market.trade_days AS e
                  WHERE e.market_ticker = t.market_ticker AND e.source = t.source
                    AND e.first_hour <= t.ts AND e.end_hour > t.ts)
"""
INSERT = """
INSERT INTO market.trades (ts, created_time, trade_id, market_ticker, yes_price, no_price, count,
                           taker_outcome_side, taker_book_side, is_block_trade, source,
                           received_at)
VALUES (%s, %s, %s, %s, 0.4200, 0.5800, 3.00, %s, %s, %s, %s, %s)
"""
STORED = """
SELECT trade_id::text, market_ticker, created_time, source, received_at FROM market.trades
ORDER BY ts, trade_id
"""
FIELDS = """
SELECT trade_id::text, taker_outcome_side, taker_book_side, is_block_trade FROM market.trades
ORDER BY ts, trade_id
"""


def _insert(conn: psycopg.Connection[Any], row: tuple[str, str, datetime, str, datetime]) -> None:
    """A REST copy without taker sides (as older REST responses), A's WS copy a block trade: the
    merged row has what any copy knew."""
    trade_id, market, created, source, received = row
    sides = (None, None) if source == "rest" else ("yes", "bid")
    block = trade_id == A and source == "ws"
    conn.execute(INSERT, (created, created, trade_id, market, *sides, block, source, received))


NOON_MINUTE = """
SELECT trade_count, volume FROM market.candles_trades_1m
WHERE market_ticker = 'M' AND bucket = %s
"""


PAUSE_COMPRESSION = """
SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs
WHERE proc_name = 'policy_compression'
"""


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("dedupe-trades", *args, url=url, timeout=120)


async def _materialise(url: str) -> None:
    """Community: the doubled volumes in the aggregates, as the refresh policies left them."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await refresh(conn, DAY, DAY + timedelta(days=5), TRADES_ONLY)


async def test_copies_merge_once_as_the_writer_keeps_them_and_candles_count_once(
    db_url: str, edition: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        # the database's own compression policy (its job scheduler runs) must not compress or
        # lock the chunks while the command rewrites them: the test compresses them itself
        conn.execute(PAUSE_COMPRESSION)
        for row in ROWS:
            _insert(conn, row)
        if edition == "community":  # months-old trades are compressed by now
            conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('market.trades') c")
    await _materialise(db_url)
    with psycopg.connect(db_url) as conn:
        assert conn.execute(NOON_MINUTE, (NOON,)).fetchone()[:1] == (3,)

    dry = _cli(db_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "5 trades stored more than once" in dry.stdout
    with psycopg.connect(db_url) as conn:
        assert len(conn.execute(STORED).fetchall()) == len(ROWS)

    from_d = _cli(db_url, "--start", "2026-03-05")  # D's day; E lies in the day before
    assert from_d.returncode == 0, from_d.stderr
    assert "merged 1 trades (1 rows removed)" in from_d.stdout

    done = _cli(db_url)
    assert done.returncode == 0, done.stderr
    assert "merged 4 trades (4 rows removed)" in done.stdout
    with psycopg.connect(db_url) as conn:
        stored = conn.execute(STORED).fetchall()
        fields = conn.execute(FIELDS).fetchall()
        minute = conn.execute(NOON_MINUTE, (NOON,)).fetchone()
        outside = conn.execute(OUTSIDE_TRADE_DAYS).fetchone()
    # the REST copy's time, the first copy's source and receive time; B untouched
    assert stored == [
        (A, "M", ROWS[1][2], "ws", ROWS[0][4]),
        (B, "M", ROWS[2][2], "ws", ROWS[2][4]),
        (C, "M", ROWS[4][2], "ws", ROWS[3][4]),
        (F, "P", ROWS[10][2], "ws", ROWS[9][4]),
        (E, "N", ROWS[8][2], "ws", ROWS[7][4]),
        (D, "N", ROWS[6][2], "ws", ROWS[5][4]),
    ]
    assert outside == (0,)  # the coverage finds each source's trades inside its extent
    # the kept REST copies had no taker sides: filled from the dropped WS copies; A's flag kept
    assert fields == [(t, "yes", "bid", t == A) for t in (A, B, C, F, E, D)]
    assert minute is not None
    assert (minute[0], str(minute[1])) == (2, "6.00")

    again = _cli(db_url, "--start", "2026-03-01", "--end", "2026-03-09")
    assert again.returncode == 0, again.stderr
    assert "merged 0 trades" in again.stdout


def test_bad_bounds_are_one_line(db_url: str) -> None:
    for args, word in (
        (("--start", "yesterday"), "--start"),
        (("--start", "2026-03-05", "--end", "2026-03-01"), "after"),
    ):
        bad = _cli(db_url, *args)
        assert bad.returncode == 2, bad.stderr
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, bad.stderr
        assert word in lines[0]


def test_the_collectors_login_is_told_to_use_the_owners(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for row in ROWS[:2]:
            _insert(conn, row)
    refused = _cli(service_login(db_url, "collector"))
    assert refused.returncode == 1, refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, refused.stderr
    assert "owner's URL" in lines[0]
    with psycopg.connect(db_url) as conn:
        assert len(conn.execute(STORED).fetchall()) == 2
