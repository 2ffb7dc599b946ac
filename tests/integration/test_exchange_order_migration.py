"""Migration 0005 on a database that already holds trades: every row gets a deterministic
exchange order (rank by arrival inside its millisecond, then trade_id), ``created_time`` = ``ts``,
compressed chunks included, and the candles are rebuilt from it; downgrade and upgrade again give
the same order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from kalshibook.domain.exchange_order import exchange_seq
from kalshibook.storage import migrate

pytestmark = [pytest.mark.db, pytest.mark.both_editions]

T0 = datetime(2026, 3, 2, 15, 0, 0, 123000, tzinfo=UTC)  # one millisecond: a sweep
INSERT = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
VALUES (%s, %s, %s, %s::numeric, 1 - %s::numeric, 1, %s, %s)
"""
COMPRESS = "SELECT count(compress_chunk(c, true)) FROM show_chunks('market.trades') c"


def test_stored_trades_get_a_deterministic_order(empty_db_url: str, edition: str) -> None:
    url = empty_db_url
    migrate.upgrade(url, "0004")
    received = T0 + timedelta(milliseconds=40)
    ws = [
        (uuid.UUID(int=9 - i), f"0.{50 + i}", received + timedelta(microseconds=i))
        for i in range(3)
    ]
    rest = [(uuid.UUID(int=20 + i), "0.40", received + timedelta(seconds=5)) for i in range(2)]
    with psycopg.connect(url, autocommit=True) as conn:
        for trade_id, price, at in ws:  # arrival order differs from trade_id order on purpose
            conn.execute(INSERT, (T0, trade_id, "KXA", price, price, "ws", at))
        for trade_id, price, at in rest:
            conn.execute(
                INSERT, (T0 + timedelta(seconds=1), trade_id, "KXA", price, price, "rest", at)
            )
        if edition == "community":
            assert conn.execute(COMPRESS).fetchone() == (1,)

    migrate.upgrade(url)

    def order() -> list[tuple[str, int, datetime]]:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT trade_id::text, exchange_seq, created_time FROM market.trades "
                "ORDER BY exchange_seq"
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    got = order()
    want_ids = [str(t[0]) for t in ws] + sorted(str(t[0]) for t in rest)
    assert [g[0] for g in got] == want_ids
    assert [g[1] for g in got] == [exchange_seq(T0, i) for i in range(3)] + [
        exchange_seq(T0 + timedelta(seconds=1), i) for i in range(2)
    ]
    assert [g[2] for g in got] == [T0] * 3 + [T0 + timedelta(seconds=1)] * 2

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT open, close FROM market.candles_trades_1m WHERE market_ticker = 'KXA'"
        ).fetchone()
    assert row is not None
    assert (str(row[0]), str(row[1])) == ("0.50", "0.40")  # first WS arrival, last REST id

    migrate.downgrade(url, "0004")
    migrate.upgrade(url)
    assert order() == got


def test_crossing_0005_keeps_the_candles_of_dropped_quotes(empty_db_url: str, edition: str) -> None:
    """Retention dropped the raw quotes under their candles; migrating across 0005 (which
    rebuilds the trades aggregates and materialises history) and back leaves those candles."""
    if edition != "community":
        pytest.skip("the Apache edition's candle relations are views of the raw rows")
    url = empty_db_url
    migrate.upgrade(url, "0004")
    day = datetime(2026, 2, 2, tzinfo=UTC)
    count = "SELECT count(*) FROM market.candles_quotes_1m"
    with psycopg.connect(url, autocommit=True) as conn:
        for m in range(0, 600, 10):
            conn.execute(
                "INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_ask)"
                " VALUES (%s, 'KXQ', now(), 0.40, 0.45)",
                (day + timedelta(minutes=m),),
            )
        conn.execute(
            INSERT, (day + timedelta(hours=5), uuid.uuid4(), "KXQ", "0.42", "0.42", "ws", day)
        )
        conn.execute(
            "CALL refresh_continuous_aggregate('market.candles_quotes_1m', %s, %s)",
            (day, day + timedelta(days=1)),
        )
        assert conn.execute(count).fetchone() == (60,)
        conn.execute("SELECT drop_chunks('market.quotes', older_than => 'infinity'::timestamptz)")
    migrate.upgrade(url)
    with psycopg.connect(url) as conn:
        assert conn.execute(count).fetchone() == (60,)
        assert conn.execute("SELECT count(*) FROM market.candles_trades_1m").fetchone() == (1,)
    migrate.downgrade(url, "0004")
    with psycopg.connect(url) as conn:
        assert conn.execute(count).fetchone() == (60,)


POLICIES = """
SELECT hypertable_name, config ->> 'compress_after' FROM timescaledb_information.jobs
WHERE proc_name = 'policy_compression' ORDER BY 1
"""


def test_a_downgrade_gives_the_recreated_aggregates_their_policies(
    empty_db_url: str, edition: str
) -> None:
    """Going down across 0005 recreates the trades aggregates; their compression policies (0004)
    come back with them, as after an upgrade."""
    if edition != "community":
        pytest.skip("no compression on the Apache edition")
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        before = conn.execute(POLICIES).fetchall()
    assert len(before) >= 9  # the raw hypertables and every candle materialisation but 1d
    migrate.downgrade(empty_db_url, "0004")
    with psycopg.connect(empty_db_url) as conn:
        assert sorted(r[1] for r in conn.execute(POLICIES).fetchall()) == sorted(
            r[1] for r in before
        )
