"""Community edition: the candle reads are index-only scans of every level's materialisations
(the covering indexes of migrations 0010 (1h, 1d) and 0011 (1m)), for the rows and the state
carried in from before."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from candle_support import AUTO_EXPLAIN, REFRESH, insert_hourly
from psycopg import sql

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.storage import candle_reads

pytestmark = [pytest.mark.db]

TICKER = "KXCOVER-26-T1"
T0 = datetime(2026, 1, 5, 5, 0, tzinfo=UTC)  # a New York midnight
WINDOW = (T0 - timedelta(days=2), T0 + timedelta(days=4))
H = timedelta(hours=1)

MATERIALISATION = """
SELECT format('%%I.%%I', materialization_hypertable_schema, materialization_hypertable_name)
FROM timescaledb_information.continuous_aggregates
WHERE view_schema = 'market' AND view_name = %s
"""
# chunk -> the continuous aggregate whose materialisation it belongs to
AGGREGATE_OF_CHUNK = """
SELECT ch.table_name, ca.user_view_name
FROM _timescaledb_catalog.chunk AS ch
JOIN _timescaledb_catalog.continuous_agg AS ca ON ca.mat_hypertable_id = ch.hypertable_id
"""
LEVELS = ("1m", "1h", "1d")
SOURCES = ("trades", "quotes", "stats")
EXPLAIN_EVERYTHING = (
    *AUTO_EXPLAIN,
    # a few rows per chunk: without this the planner reads such chunks whole; the question is
    # what the indexes allow, as on a materialisation of real size
    "SET enable_seqscan = off",
)
CHUNK_SCAN = re.compile(r"(\w[\w ]*? Scan)(?: Backward)?(?: using \S+)? on (_hyper_\d+_\d+_chunk)")


def load(url: str) -> None:
    """Four days of a trade, a quote and an open interest every hour; every level materialised
    over them, the materialisations vacuumed (their visibility maps set, as autovacuum does)."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SHOW timescaledb.license").fetchone() != ("timescale",):
            pytest.skip("continuous aggregates are Community edition only")
        insert_hourly(conn, TICKER, T0, 4 * 24)
        for level in LEVELS:
            for source in SOURCES:
                conn.execute(REFRESH, (f"market.candles_{source}_{level}", *WINDOW))
        for level in LEVELS:
            for source in SOURCES:
                row = conn.execute(MATERIALISATION, (f"candles_{source}_{level}",)).fetchone()
                assert row is not None
                conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.SQL(row[0])))


async def test_candle_reads_are_index_only_scans_of_the_materialisations(db_url: str) -> None:
    load(db_url)
    plans: list[str] = []
    reads = [
        ("1m", T0 + 30 * H, T0 + 36 * H),  # the state before it from the 1m rows of the day
        ("1h", T0 + 24 * H, T0 + 72 * H),
        ("1d", T0, T0 + timedelta(days=3)),  # nothing before it: the 1d look-up too
    ]
    async with await psycopg.AsyncConnection.connect(
        db_url, autocommit=True, options=CONNECTION_OPTIONS
    ) as conn:
        for statement in EXPLAIN_EVERYTHING:
            await conn.execute(statement)  # type: ignore[arg-type]  # constants above
        direct = await candle_reads._direct(conn)
        assert direct is not None
        conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
        found = []
        for interval, start, end in reads:
            data = await candle_reads.fetch_candle_data(conn, TICKER, interval, start, end)
            found.append((len(data.buckets), data.carried.open_interest))
    # every bucket read, and the state before the first range (the 1d range has none)
    assert found == [(6, "129"), (48, "123"), (3, None)]
    scans = [m.groups() for p in plans for m in CHUNK_SCAN.finditer(p)]
    with psycopg.connect(db_url) as conn:
        aggregate_of = dict(conn.execute(AGGREGATE_OF_CHUNK).fetchall())
    # every level's three materialisations were read, each from its index only
    kinds: dict[str, set[str]] = {}
    for kind, chunk in scans:
        kinds.setdefault(aggregate_of.get(chunk, chunk), set()).add(kind)
    assert set(kinds) == {f"candles_{source}_{level}" for level in LEVELS for source in SOURCES}
    for name, seen in kinds.items():
        assert seen == {"Index Only Scan"}, name
