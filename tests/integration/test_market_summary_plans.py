"""The seed API's market detail (kalshibook.storage.market_summary.market_data): the same figures
as counting over the whole history, planned only over the chunks inside the market's extents.

An old market's book and trades span 40 days (160 six-hour chunks of deltas); a recent market has
a book and trades in the last hours. Over the whole history, every request planned all of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg import AsyncCursor

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.storage.market_summary import MarketData, market_data

pytestmark = [pytest.mark.db]

HISTORY = [
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
SELECT now() - INTERVAL '41 days' + k * INTERVAL '10 days', 'OLD', now(), 'snapshot', 1, 1,
       k * 1000,
       '[]', '[]'
FROM generate_series(0, 3) k
""",
    """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT now() - INTERVAL '41 days' + k * INTERVAL '1 hour', 'OLD', now(), 'yes', 0.5, 1, 1, 1, k
FROM generate_series(1, 40 * 24) k
""",
    """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '41 days' + k * INTERVAL '1 day', gen_random_uuid(), 'OLD', 0.5, 0.5, 1,
       'ws', now()
FROM generate_series(0, 39) k
""",
    """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (now() - INTERVAL '3 hours', 'RECENT', now(), 'snapshot', 1, 2, 0, '[]',
        '[]')
""",
    """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT now() - INTERVAL '3 hours' + k * INTERVAL '1 minute', 'RECENT', now(), 'no', 0.4, -1, 1,
       2, k
FROM generate_series(1, 100) k
""",
    """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '4 hours' + k * INTERVAL '1 minute', gen_random_uuid(), 'RECENT', 0.5,
       0.5, 1, 'ws', now()
FROM generate_series(0, 9) k
""",
    "ANALYZE market.orderbook_deltas",
]
# the figures as the seed API first computed them: over the whole history
REFERENCE = """
SELECT (SELECT count(*) FROM market.orderbook_snapshots WHERE market_ticker = %(ticker)s),
       (SELECT count(*) FROM market.orderbook_deltas WHERE market_ticker = %(ticker)s),
       LEAST((SELECT min(ts) FROM market.orderbook_snapshots WHERE market_ticker = %(ticker)s),
             (SELECT min(ts) FROM market.trades WHERE market_ticker = %(ticker)s)),
       GREATEST((SELECT max(ts) FROM market.orderbook_snapshots WHERE market_ticker = %(ticker)s),
                (SELECT max(ts) FROM market.orderbook_deltas WHERE market_ticker = %(ticker)s),
                (SELECT max(ts) FROM market.trades WHERE market_ticker = %(ticker)s))
"""
HYPERTABLE_IDS = """
SELECT id FROM _timescaledb_catalog.hypertable WHERE schema_name = 'market'
  AND table_name IN ('orderbook_snapshots', 'orderbook_deltas', 'trades')
"""


class Recorder(AsyncCursor[Any]):
    """A cursor that remembers every statement it runs (the connection's cursor_factory)."""

    log: ClassVar[list[tuple[Any, Any]]] = []

    async def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        Recorder.log.append((query, params))
        return await super().execute(query, params, **kw)


def walk(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from walk(child)


def chunks_planned(url: str, statements: list[tuple[Any, Any]]) -> int:
    count = 0
    with psycopg.connect(url, autocommit=True, options=CONNECTION_OPTIONS) as conn:
        prefixes = tuple(f"_hyper_{i}_" for (i,) in conn.execute(HYPERTABLE_IDS).fetchall())
        for query, params in statements:
            [[doc]] = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchall()
            plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
            count += sum(
                1 for node in walk(plan) if node.get("Relation Name", "").startswith(prefixes)
            )
    return count


@pytest.fixture(scope="module")
def history(databases: Any) -> Iterator[str]:
    with databases.database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in HISTORY:
                conn.execute(statement)
        yield url


@pytest.mark.parametrize(("ticker", "bound"), [("OLD", None), ("RECENT", 8), ("NOPE", 0)])
async def test_market_data_is_the_whole_history_planned_inside_the_extents(
    history: str, ticker: str, bound: int | None
) -> None:
    with psycopg.connect(history, autocommit=True) as conn:
        expected = MarketData(*(conn.execute(REFERENCE, {"ticker": ticker}).fetchone() or ()))
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        history, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        got = await market_data(conn, ticker)
    assert got == expected
    if ticker == "OLD":
        assert (got.delta_count, got.snapshot_count) == (960, 4)
    # of ~200 chunks of the three hypertables: the recent market's last hours only; an unknown
    # market's none (the old market's book and trades span the whole history)
    if bound is not None:
        assert chunks_planned(history, Recorder.log) <= bound
