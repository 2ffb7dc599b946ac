"""refresh_candles and `kalshibook refresh-candles` (late rows after a REST backfill)."""

from __future__ import annotations

import argparse
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from candle_support import INSERT_QUOTE, INSERT_TRADE
from cli_support import run_cli

from kalshibook.cli import refresh_candles as refresh_candles_cli
from kalshibook.errors import ConfigError, StorageError
from kalshibook.settings import CoreSettings, Settings
from kalshibook.storage.candle_refresh import refresh
from kalshibook.storage.candles import TRADES_ONLY, refresh_candles

pytestmark = [pytest.mark.db, pytest.mark.both_editions]

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 9, tzinfo=UTC)


async def test_refresh_needs_autocommit_and_a_window(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        with pytest.raises(StorageError, match="autocommit"):
            await refresh_candles(conn, START, END)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        with pytest.raises(ValueError, match="empty"):
            await refresh_candles(conn, END, START)
        edition = await (await conn.execute("SHOW timescaledb.license")).fetchone()
        done = await refresh_candles(conn, START, END)
    if edition == ("apache",):
        assert done == []
    else:  # Community: every cagg, in chain order
        assert [n.rsplit("_", 1)[1] for n in done] == ["1m"] * 3 + ["1h"] * 3 + ["1d"] * 3


def _cli(db_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("refresh-candles", *args, url=db_url)


def test_cli_refreshes_a_window_and_reports_bad_input_in_one_line(db_url: str) -> None:
    ok = _cli(db_url, "--start", "2026-03-01T00:00:00Z", "--end", "1773014400")
    assert ok.returncode == 0, ok.stderr
    assert "candle" in ok.stdout
    bad = _cli(db_url, "--start", "yesterday")
    assert bad.returncode == 2
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, bad.stderr
    assert "--start" in lines[0]
    assert "Traceback" not in bad.stderr
    for source in ("trade", ",", "trades,candles"):
        unknown = _cli(db_url, "--start", "2026-03-01", "--source", source)
        assert unknown.returncode == 2, unknown.stderr
        [line] = [line for line in unknown.stderr.splitlines() if line.strip()]
        assert "--source" in line
        assert "expected a comma-separated list of trades, quotes, stats" in line
    with pytest.raises(ConfigError, match="after"):
        refresh_candles_cli.run(
            argparse.Namespace(
                start="2026-03-09T00:00:00Z", end="2026-03-01T00:00:00Z", source="trades"
            ),
            Settings(core=CoreSettings(database_url=db_url)),
        )


async def _quotes_every_ten_minutes(
    conn: psycopg.AsyncConnection[Any], ticker: str, day: datetime, days: int
) -> None:
    for m in range(0, days * 1440, 10):
        t = day + timedelta(minutes=m)
        await conn.execute(INSERT_QUOTE, (t, ticker, Decimal("0.40"), Decimal("0.45")))


async def _late_trade(conn: psycopg.AsyncConnection[Any], ticker: str, at: datetime) -> None:
    price = Decimal("0.42")
    await conn.execute(INSERT_TRADE, (at, uuid.uuid4(), ticker, price, price, Decimal("3")))


async def _trade_volumes(conn: psycopg.AsyncConnection[Any], ticker: str) -> list[Any]:
    query = "SELECT volume FROM market.candles_trades_1m WHERE market_ticker = %s"
    return await (await conn.execute(query, (ticker,))).fetchall()


async def test_a_trade_backfills_refresh_keeps_quote_candles_whose_quotes_were_dropped(
    db_url: str,
) -> None:
    """Retention dropped a day of raw quotes; their candles remain (docs/operators.md §4). A
    trade backfill over that day refreshes the trades aggregates only (what it wrote)."""
    day = datetime(2026, 2, 2, tzinfo=UTC)
    ticker = "KXKEEP-1"
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        if await (await conn.execute("SHOW timescaledb.license")).fetchone() == ("apache",):
            pytest.skip("the Apache edition's candle relations are views of the raw rows")
        await _quotes_every_ten_minutes(conn, ticker, day, 1)
        await refresh_candles(conn, day, day + timedelta(days=1))
        count = "SELECT count(*) FROM market.candles_quotes_1m WHERE market_ticker = %s"
        before = await (await conn.execute(count, (ticker,))).fetchone()
        assert before == (144,)
        # retention: the day's raw quotes are gone (the chunk is dropped)
        await conn.execute(
            "SELECT drop_chunks('market.quotes', older_than => %s::timestamptz)",
            (day + timedelta(days=2),),
        )
        # a backfilled trade in that day, then the backfill's refresh
        await _late_trade(conn, ticker, day + timedelta(hours=5))
        done = await refresh(conn, day, day + timedelta(days=1), TRADES_ONLY)
        assert await (await conn.execute(count, (ticker,))).fetchone() == before
        assert [n.split(".")[1] for n in done] == [
            f"candles_trades_{i}" for i in ("1m", "1h", "1d")
        ]
        assert await _trade_volumes(conn, ticker) == [(Decimal("3"),)]


async def test_refresh_of_every_source_keeps_candles_whose_raw_rows_were_dropped(
    db_url: str,
) -> None:
    """The command the backfills print after a failed refresh (`kalshibook refresh-candles`)
    refreshes every source. Over a range whose raw quotes were dropped (retention,
    ``drop_chunks``) it keeps their candles, at every level, while the trades aggregates take the
    late trade; and with every raw quote chunk gone too."""
    day = datetime(2026, 2, 2, tzinfo=UTC)
    ticker = "KXKEEP-2"
    levels = ("1m", "1h", "1d")
    counts = " UNION ALL ".join(
        f"SELECT '{lv}', count(*) FROM market.candles_quotes_{lv} WHERE market_ticker = %(t)s"
        for lv in levels
    )
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        if await (await conn.execute("SHOW timescaledb.license")).fetchone() == ("apache",):
            pytest.skip("the Apache edition's candle relations are views of the raw rows")
        await _quotes_every_ten_minutes(conn, ticker, day, 2)  # two days: two chunks
        await refresh_candles(conn, day, day + timedelta(days=3))
        before = await (await conn.execute(counts, {"t": ticker})).fetchall()
        assert before[0] == ("1m", 288)
        # the first day's raw quotes are dropped
        await conn.execute(
            "SELECT drop_chunks('market.quotes', older_than => %s::timestamptz)",
            (day + timedelta(days=1),),
        )
        await _late_trade(conn, ticker, day + timedelta(hours=5))
    ran = _cli(db_url, "--start", "2026-02-02T04:59:00Z", "--end", "2026-02-02T05:01:00Z")
    assert ran.returncode == 0, ran.stderr
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        assert await (await conn.execute(counts, {"t": ticker})).fetchall() == before
        assert await _trade_volumes(conn, ticker) == [(Decimal("3"),)]
        # every raw quote gone: a refresh of the whole range leaves every quote candle too
        await conn.execute(
            "SELECT drop_chunks('market.quotes', older_than => 'infinity'::timestamptz)"
        )
        await refresh_candles(conn, day, day + timedelta(days=3))
        assert await (await conn.execute(counts, {"t": ticker})).fetchall() == before


async def test_cli_refreshes_only_the_sources_given_and_shows_progress(db_url: str) -> None:
    """A late trade and a late quote, both older than the policies' windows: ``--source trades``
    folds in the trade only (the quote's candle stays as it was), printing each aggregate as it
    starts and ends; ``--source quotes`` then folds in the quote."""
    day = datetime(2026, 2, 9, tzinfo=UTC)
    ticker = "KXSRC-1"
    quote_1m = (
        "SELECT count(*) FROM market.candles_quotes_1m WHERE market_ticker = %s AND bucket = %s"
    )
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        if await (await conn.execute("SHOW timescaledb.license")).fetchone() == ("apache",):
            pytest.skip("the Apache edition's candle relations are views of the raw rows")
        await _quotes_every_ten_minutes(conn, ticker, day, 1)
        await refresh_candles(conn, day, day + timedelta(days=1))
        late = day + timedelta(hours=7, minutes=3)  # a minute without a quote
        await _late_trade(conn, ticker, late)
        await conn.execute(INSERT_QUOTE, (late, ticker, Decimal("0.41"), Decimal("0.44")))
        assert await (await conn.execute(quote_1m, (ticker, late))).fetchone() == (0,)
    window = ("--start", "2026-02-09T07:00:00Z", "--end", "2026-02-09T08:00:00Z")
    trades = _cli(db_url, *window, "--source", "trades")
    assert trades.returncode == 0, trades.stderr
    started = [ln.split()[1] for ln in trades.stdout.splitlines() if ln.startswith("refreshing ")]
    assert started == [f"market.candles_trades_{lv}" for lv in ("1m", "1h", "1d")], trades.stdout
    assert trades.stdout.count(" refreshed in ") == 3
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        assert await _trade_volumes(conn, ticker) == [(Decimal("3"),)]
        assert await (await conn.execute(quote_1m, (ticker, late))).fetchone() == (0,)
    quotes = _cli(db_url, *window, "--source", " quotes ")
    assert quotes.returncode == 0, quotes.stderr
    assert "market.candles_trades_1m" not in quotes.stdout
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        assert await (await conn.execute(quote_1m, (ticker, late))).fetchone() == (1,)
