"""Every ```sql block of docs/sql.md runs, as a read-only SQL login, against a migrated database.

The sample data below is the story the docs tell (market KXHIGHNY-26NOV26-B47.5 on 2026-11-26), so
besides "no error" a few queries are checked for the numbers a reader can verify by hand.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from kalshibook.storage.sql_users import create_sql_user, drop_sql_user

pytestmark = pytest.mark.db

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)

M = "KXHIGHNY-26NOV26-B47.5"
M2 = "KXHIGHNY-26NOV26-B49.5"
EVENT = "KXHIGHNY-26NOV26"
DAY = datetime(2026, 11, 26, tzinfo=UTC)


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return DAY + timedelta(hours=hh, minutes=mm, seconds=ss)


def sql_blocks() -> list[str]:
    return [b.strip() for b in SQL_BLOCK.findall(DOC.read_text(encoding="utf-8"))]


def insert_sample_data(conn: psycopg.Connection[Any]) -> None:
    ex = conn.execute
    ex(
        "INSERT INTO market.series (ticker, title, category, frequency, raw) VALUES "
        "('KXHIGHNY', 'Highest temperature in NYC', 'Climate and Weather', 'daily', '{}')"
    )
    ex(
        "INSERT INTO market.events (event_ticker, series_ticker, title, raw) VALUES "
        "(%s, 'KXHIGHNY', 'High temp in NYC on Nov 26, 2026', '{}')",
        (EVENT,),
    )
    for ticker, sub, result, value in ((M, "47° to 48°", "yes", 1), (M2, "49° to 50°", "no", 0)):
        ex(
            "INSERT INTO market.markets (ticker, event_ticker, series_ticker, market_type, "
            "yes_sub_title, status, close_time, result, settlement_value, raw) VALUES "
            "(%s, %s, 'KXHIGHNY', 'binary', %s, 'settled', %s, %s, %s, '{}')",
            (ticker, EVENT, sub, at(23, 59), result, value),
        )
        ex(
            "INSERT INTO market.settlements (market_ticker, event_ticker, series_ticker, result, "
            "settlement_value, determined_at, settled_at, source, confirmed) VALUES "
            "(%s, %s, 'KXHIGHNY', %s, %s, %s, %s, 'ws', true)",
            (
                ticker,
                EVENT,
                result,
                value,
                DAY + timedelta(days=1, hours=14),
                DAY + timedelta(days=1, hours=15),
            ),
        )

    trades = [
        (M, at(14, 5), "0.40", "10", "yes"),
        (M, at(14, 20), "0.44", "30", "no"),
        (M, at(15, 10), "0.50", "20", "yes"),
        (M, at(15, 45), "0.55", "40", "yes"),
        (M2, at(14, 30), "0.30", "5", "no"),
    ]
    for ticker, ts, price, count, taker in trades:
        ex(
            "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, "
            "taker_outcome_side, taker_book_side, source, received_at) "
            "VALUES (%s, %s, %s, %s::numeric, 1 - %s::numeric, %s::numeric, %s, "
            "CASE WHEN %s = 'yes' THEN 'bid' ELSE 'ask' END, 'ws', %s)",
            (
                ts,
                uuid.uuid4(),
                ticker,
                price,
                price,
                count,
                taker,
                taker,
                ts + timedelta(milliseconds=80),
            ),
        )

    for ts, bid, ask in (
        (at(14, 0, 30), "0.39", "0.41"),
        (at(15, 5), "0.49", "0.51"),
        (at(15, 25), "0.49", "0.51"),
    ):
        ex(
            "INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size, "
            "yes_ask, yes_ask_size) VALUES (%s, %s, %s, %s::numeric, 100, %s::numeric, 20)",
            (ts, M, ts, bid, ask),
        )
    for ts, oi, vol in ((at(14, 10), 500, 10), (at(15, 50), 800, 100)):
        ex(
            "INSERT INTO market.market_stats (ts, market_ticker, received_at, price, "
            "open_interest, volume) VALUES (%s, %s, %s, 0.5, %s, %s)",
            (ts, M, ts, oi, vol),
        )

    snapshots = [
        (at(13, 0), 1, 1, "[[0.30, 5]]", "[[0.60, 5]]"),  # older: not the one used at 15:30
        (at(15, 0), 1, 10, "[[0.48, 100], [0.50, 50]]", "[[0.45, 80], [0.49, 20]]"),
    ]
    for ts, epoch, seq, yes, no in snapshots:
        ex(
            "INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, "
            "epoch, sid, seq, yes_bids, no_bids) VALUES (%s, %s, %s, 'snapshot', %s, 3, %s, "
            "%s::jsonb, %s::jsonb)",
            (ts, M, ts, epoch, seq, yes, no),
        )
    deltas = [
        (at(14, 59, 59), "yes", "0.48", "7", 1, 9),  # before the snapshot's seq: excluded
        (at(15, 10), "yes", "0.50", "-50", 1, 11),  # the level disappears
        (at(15, 20), "yes", "0.49", "25", 1, 12),
        (at(15, 25), "yes", "0.47", "99", 2, 1),  # another epoch: excluded
        (at(15, 40), "no", "0.49", "-20", 1, 13),  # after T: excluded
    ]
    for ts, side, price, delta, epoch, seq in deltas:
        ex(
            "INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, "
            "delta, epoch, sid, seq) VALUES (%s, %s, %s, %s, %s::numeric, %s::numeric, %s, 3, %s)",
            (ts, M, ts, side, price, delta, epoch, seq),
        )

    ex(
        "INSERT INTO market.book_gaps (from_ts, to_ts, market_ticker, reason, sid) "
        "VALUES (%s, %s, %s, 'seq_gap', 3)",
        (at(13, 0), at(13, 2), M),
    )
    ex(
        "INSERT INTO market.lifecycle_events (ts, market_ticker, received_at, kind, event_type, "
        "payload) VALUES (%s, %s, %s, 'market', 'activated', '{}')",
        (at(9, 0), M, at(9, 0)),
    )


@pytest.fixture
def reader_url(db_url: str) -> Iterator[str]:
    """A fresh read-only login (``kalshibook sql-user create``) on a database with sample data."""
    name = f"kb_docs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        insert_sample_data(admin)
        user = create_sql_user(admin, name)
    parts = urlsplit(db_url)
    netloc = f"{name}:{user.password}@{parts.hostname}:{parts.port}"
    yield urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    with psycopg.connect(db_url, autocommit=True) as admin:
        drop_sql_user(admin, name)


# marker (a substring of exactly one block) -> check of its rows
Check = Callable[[list[tuple[Any, ...]]], None]


def _book(rows: list[tuple[Any, ...]]) -> None:
    assert rows == [
        ("yes", D("0.49"), D("25")),
        ("yes", D("0.48"), D("100")),
        ("no", D("0.49"), D("20")),
        ("no", D("0.45"), D("80")),
    ]


def _replay(rows: list[tuple[Any, ...]]) -> None:
    assert [(r[2], r[3], r[4], r[5]) for r in rows] == [
        (11, "yes", D("0.50"), D("-50")),
        (12, "yes", D("0.49"), D("25")),
    ]


def _hourly(rows: list[tuple[Any, ...]]) -> None:
    assert [r[0] for r in rows] == [at(14, 0), at(15, 0)]
    assert rows[0][2:] == (D("0.40"), D("0.44"), D("0.40"), D("0.44"), D("40"), D("0.4300"), 2)
    assert rows[1][2:] == (D("0.50"), D("0.55"), D("0.50"), D("0.55"), D("60"), D("0.5333"), 2)


def _hourly_joined(rows: list[tuple[Any, ...]]) -> None:
    assert rows == [
        (at(14, 0), D("0.44"), D("0.39"), D("0.41"), D("500")),
        (at(15, 0), D("0.55"), D("0.49"), D("0.51"), D("800")),
    ]


def _daily(rows: list[tuple[Any, ...]]) -> None:
    assert rows == [
        (DAY.replace(tzinfo=None), D("0.40"), D("0.55"), D("0.40"), D("0.55"), D("100")),
    ]


def _vwap_raw(rows: list[tuple[Any, ...]]) -> None:
    assert rows == [(D("0.4920"), D("100"), 4)]


def _vwap_candles(rows: list[tuple[Any, ...]]) -> None:
    assert rows == [(D("0.4920"), D("100"))]


def _pnl(rows: list[tuple[Any, ...]]) -> None:
    assert [r[4:] for r in rows] == [(D("58.00"), D("-27.50"))]


def _position(rows: list[tuple[Any, ...]]) -> None:
    assert rows == [(M, D("10"), D("0.4000"), D("1"), D("6.00"))]


def _in_gap(rows: list[tuple[Any, ...]]) -> None:
    assert rows == [(True,)]


def _top(rows: list[tuple[Any, ...]]) -> None:
    assert rows == [(at(15, 25), D("0.49"), D("100"), D("0.51"), D("20"), D("0.02"))]


CHECKS: dict[str, Check] = {
    "jsonb_array_elements": _book,
    "AS level_change": _replay,
    "AS period_start": _hourly,
    "LEFT JOIN market.candles_quotes_1h": _hourly_joined,
    "AS new_york_day": _daily,
    "round(sum(yes_price * count) / sum(count), 4) AS vwap": _vwap_raw,
    "FROM market.candles_trades_1m": _vwap_candles,
    "AS pnl_yes_100_at_042": _pnl,
    "WITH position AS": _position,
    "AS in_gap": _in_gap,
    "AS spread": _top,
}


def test_docs_have_sql_samples() -> None:
    blocks = sql_blocks()
    assert len(blocks) >= 12
    for marker in CHECKS:
        assert sum(marker in b for b in blocks) == 1, f"marker {marker!r} must match one block"


def test_every_sql_sample_runs_as_a_reader(reader_url: str) -> None:
    failures: list[str] = []
    with psycopg.connect(reader_url) as conn:
        conn.execute("SET timezone = 'UTC'")
        conn.commit()
        for i, block in enumerate(sql_blocks(), 1):
            first = block.splitlines()[0]
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ ONLY")
                    rows = conn.execute(block).fetchall()
                assert rows, "returned no rows for the sample data"
                for marker, check in CHECKS.items():
                    if marker in block:
                        check(rows)
            except (psycopg.Error, AssertionError) as exc:
                failures.append(f"block {i} ({first!r}...): {type(exc).__name__}: {exc}")
    assert not failures, "docs/sql.md samples failed:\n" + "\n".join(failures)


def test_reader_login_cannot_write_or_see_private(reader_url: str) -> None:
    with psycopg.connect(reader_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM private.api_keys")
        with pytest.raises(
            (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege)
        ):
            conn.execute("DELETE FROM market.trades")
        conn.execute("SET default_transaction_read_only = off")  # a user can; privileges hold
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM market.trades")
