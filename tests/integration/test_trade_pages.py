"""Trades pages with a lower bound of their own (``start`` or a cursor) read their first window
with the extent look-up, in one round trip (storage.trade_reads): the pages are those of the
exchange order whatever lies between that bound and the trades (nothing for days, the trades
themselves, the end of the history)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.storage import trade_reads

pytestmark = [pytest.mark.db]

T0 = datetime(2026, 3, 2, tzinfo=UTC)
H = timedelta(hours=1)
# market A: three clusters days and hours apart; market B between them
CLUSTERS = (
    ("A", T0 + 10 * H, 120, timedelta(seconds=9)),
    ("A", T0 + 3 * 24 * H + 5 * H, 40, timedelta(minutes=2)),
    ("A", T0 + 3 * 24 * H + 7 * H + timedelta(minutes=10), 7, timedelta(milliseconds=1)),
    ("B", T0 + 11 * H, 30, timedelta(minutes=1)),
)
INSERT = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at, exchange_seq)
SELECT %(t)s + (k / 3) * %(step)s, gen_random_uuid(), %(m)s, 0.5, 0.5, 1, 'ws', now(), k
FROM generate_series(0, %(n)s - 1) AS k
"""
REFERENCE = """
SELECT ts, exchange_seq, trade_id::text FROM market.trades
WHERE market_ticker = ANY(%(tickers)s) AND ts >= %(start)s AND ts < %(end)s
ORDER BY ts, exchange_seq, trade_id
"""


@pytest.fixture(scope="module")
def history(databases: Any) -> Iterator[str]:
    with databases.database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            for market, t, n, step in CLUSTERS:
                conn.execute(INSERT, {"t": t, "step": step, "m": market, "n": n})
        yield url


def reference(url: str, tickers: list[str], start: datetime, end: datetime) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        rows = conn.execute(REFERENCE, {"tickers": tickers, "start": start, "end": end})
        return [(ts, seq, tid) for ts, seq, tid in rows.fetchall()]


async def walk(
    url: str, tickers: list[str] | None, start: datetime, end: datetime | None, limit: int
) -> list[tuple]:  # type: ignore[type-arg]
    """Every page from ``start``, each after the last row of the one before (the cursor)."""
    out: list[tuple] = []  # type: ignore[type-arg]
    after = None
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, options=CONNECTION_OPTIONS
    ) as conn:
        for _ in range(1000):
            page = await trade_reads.list_trades(
                conn,
                tickers=tickers,
                event=None,
                series=None,
                start=start,
                end=end,
                after=after,
                limit=limit,
            )
            out += [(r.ts, r.exchange_seq, r.trade_id) for r in page]
            if len(page) < limit:
                return out
            last = page[-1]
            after = (last.ts, last.exchange_seq, last.trade_id)
    raise AssertionError("the pages never ended")


FAR_END = T0 + 400 * 24 * H


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (T0 - 30 * 24 * H, None),  # a month of nothing before the first trade
        (T0 + 10 * H + timedelta(minutes=3), None),  # inside the first cluster
        (T0 + 24 * H, None),  # between clusters (days apart)
        (T0 + 3 * 24 * H + 6 * H, T0 + 3 * 24 * H + 7 * H + timedelta(minutes=10, microseconds=2)),
        (T0 + 10 * H, T0 + 10 * H + timedelta(seconds=30)),  # an end inside the first window
        (T0 + 5 * 24 * H, None),  # after the last trade
    ],
)
@pytest.mark.parametrize("limit", [1, 7, 1000])
async def test_pages_from_a_start_are_the_exchange_order(
    history: str, start: datetime, end: datetime | None, limit: int
) -> None:
    got = await walk(history, ["A"], start, end, limit)
    assert got == reference(history, ["A"], start, end or FAR_END)
    both = await walk(history, ["A", "B"], start, end, limit)
    assert both == reference(history, ["A", "B"], start, end or FAR_END)


async def test_unknown_market_or_empty_range_from_a_start_is_empty(history: str) -> None:
    assert await walk(history, ["NOPE"], T0, None, 10) == []
    assert await walk(history, ["A"], T0 + 10 * H, T0 + 10 * H, 10) == []
    assert await walk(history, [], T0, None, 10) == []


# (yes price, count) at the scales a database may hold: Kalshi's own (4 dp, 2 dp), fewer, more,
# trailing zeros beyond them, whole numbers, 20 digits
SCALES = (
    ("0.5600", "12.00"),
    ("0.5", "1"),
    ("0.56000000", "12.5000"),
    ("0.00125", "0.01"),
    ("0.123456789012345678", "3.14159"),
    ("1", "100000000.00"),
    ("0.0000", "7.10"),
    ("0.99990", "0.5"),
)


@pytest.mark.parametrize("tickers", [["S"], ["S", "T"], None])
async def test_numbers_are_kalshi_strings_at_every_stored_scale(
    databases: Any, tickers: list[str] | None
) -> None:
    """The page's prices and counts equal fmt_dollars / fmt_count of the stored values, whatever
    their scale (the SQL's fast path takes only Kalshi's own scales), on every window query."""
    from decimal import Decimal

    from kalshibook.domain.prices import fmt_count, fmt_dollars

    with databases.database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            for k, (price, count) in enumerate(SCALES):
                conn.execute(
                    "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price,"
                    " count, source, received_at, exchange_seq)"
                    " VALUES (%s, gen_random_uuid(), 'S', %s::numeric, 1 - %s::numeric,"
                    " %s::numeric, 'ws', now(), %s)",
                    (T0 + k * timedelta(seconds=1), price, price, count, k),
                )
            stored = conn.execute(
                "SELECT yes_price::text, no_price::text, count::text FROM market.trades ORDER BY ts"
            ).fetchall()
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, options=CONNECTION_OPTIONS
        ) as aconn:
            page = await trade_reads.list_trades(
                aconn,
                tickers=tickers,
                event=None,
                series=None,
                start=T0,
                end=None,
                after=None,
                limit=100,
            )
    assert [(r.yes_price, r.no_price, r.contracts) for r in page] == [
        (fmt_dollars(Decimal(y)), fmt_dollars(Decimal(n)), fmt_count(Decimal(c)))
        for y, n, c in stored
    ]
    assert [page[0].yes_price, page[1].yes_price] == ["0.5600", "0.5000"]
    assert [page[2].contracts, page[5].contracts] == ["12.50", "100000000.00"]
