"""Reads cost what their answer costs, not what the history holds (issue #15).

A generated history: 120,000 older trades of 300 markets over 120 daily chunks, then one recent
market with 2,000 trades in the last hour. Every statement a trades page runs is recorded and
EXPLAIN ANALYZEd: the chunks it plans and the rows it reads stay bounded by the page, and an unknown
ticker, event or series never reaches ``market.trades``. Without the extents (migration 0006) a
page of the recent market planned all 121 chunks and filtered out every older row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from plan_support import Recorder, walk

from kalshibook.api.app import CONNECTION_OPTIONS
from kalshibook.storage import reads, trade_reads

pytestmark = [pytest.mark.db]

HISTORY = """
INSERT INTO market.series (ticker, raw) VALUES ('S', '{}');
INSERT INTO market.events (event_ticker, series_ticker, raw)
VALUES ('E', 'S', '{}'), ('E2', 'S', '{}');
INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)
SELECT 'OLD-' || k, 'E', 'S', 'settled', '{}' FROM generate_series(0, 299) k;
INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)
VALUES ('RECENT', 'E2', 'S', 'active', '{}');
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '121 days' + (k / 120000.0) * INTERVAL '120 days', gen_random_uuid(),
       'OLD-' || (k % 300), 0.5, 0.5, 1, 'ws', now()
FROM generate_series(1, 120000) k;
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '1 hour' + k * INTERVAL '1 second', gen_random_uuid(), 'RECENT', 0.5,
       0.5, 1, 'ws', now()
FROM generate_series(1, 2000) k;
ANALYZE market.trades;
"""


def plan_cost(url: str, statements: list[tuple[Any, Any]]) -> tuple[int, int, bool]:
    """(chunk scans planned, rows read by scans incl. filtered out, touches market.trades)."""
    chunks = rows = 0
    touches = False
    with psycopg.connect(url, autocommit=True, options=CONNECTION_OPTIONS) as conn:
        for query, params in statements:
            [[doc]] = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchall()
            plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
            for node in walk(plan):
                rel = node.get("Relation Name", "")
                if rel.startswith("_hyper_") or rel == "trades":
                    touches = True
                    chunks += 1
                    rows += int(node.get("Actual Rows", 0)) + int(
                        node.get("Rows Removed by Filter", 0)
                    )
    return chunks, rows, touches


@pytest.fixture(scope="module")
def history(databases: Any) -> Iterator[str]:
    with databases.database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(HISTORY)
        yield url


CASES = [
    ("recent market, limit 1", {"tickers": ["RECENT"], "limit": 1}, 1),
    ("recent market, limit 10", {"tickers": ["RECENT"], "limit": 10}, 10),
    ("recent market, limit 1000", {"tickers": ["RECENT"], "limit": 1000}, 1000),
    ("old market, limit 100", {"tickers": ["OLD-7"], "limit": 100}, 100),
    ("event of the recent market", {"event": "E2", "limit": 100}, 100),
    ("every market, limit 100", {"limit": 100}, 100),
]


@pytest.mark.parametrize(("name", "kw", "n"), CASES, ids=[c[0] for c in CASES])
async def test_a_page_plans_and_reads_what_it_returns(
    history: str, name: str, kw: dict[str, Any], n: int
) -> None:
    args: dict[str, Any] = {
        "tickers": None, "event": None, "series": None, "start": None, "end": None,
        "after": None,
    }  # fmt: skip
    args.update(kw)
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        history, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        rows = await trade_reads.list_trades(conn, **args)
    assert len(rows) == n
    chunks, read, touches = plan_cost(history, Recorder.log)
    assert touches
    # of 121 daily chunks: those the answer spans (twice, for the windows' overshoot) and a few
    days = (rows[-1].ts - rows[0].ts).days + 1
    assert chunks <= 2 * days + 6, (name, chunks, days)
    assert read <= 4 * n + 2_000, (name, read)  # of 122,000 rows; one busy hour at most


@pytest.mark.parametrize(
    "kw",
    [
        {"tickers": ["NOPE"]},
        {"event": "NOPE"},
        {"series": "NOPE"},
        {"tickers": ["RECENT"], "event": "E"},
    ],
    ids=["unknown ticker", "unknown event", "unknown series", "ticker outside the event"],
)
async def test_an_empty_answer_never_reads_trades(history: str, kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "tickers": None, "event": None, "series": None, "start": None, "end": None,
        "after": None, "limit": 100,
    }  # fmt: skip
    args.update(kw)
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        history, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        assert await trade_reads.list_trades(conn, **args) == []
    assert not plan_cost(history, Recorder.log)[2]


SETTLEMENTS = """
INSERT INTO market.settlements (market_ticker, event_ticker, series_ticker, result, settled_at,
                                source)
SELECT 'SETTLED-' || k, 'EV-' || (k % 20), 'SER-' || (k % 5),
       (ARRAY['yes', 'no', 'scalar', 'void'])[1 + k % 4],
       now() - INTERVAL '400 days' + k * INTERVAL '1 hour', 'rest'
FROM generate_series(1, 20000) k;
ANALYZE market.settlements;
"""


def settlement_rows_read(url: str, statements: list[tuple[Any, Any]]) -> int:
    """Rows the settlements scans of these statements read (kept and filtered out)."""
    rows = 0
    with psycopg.connect(url, autocommit=True, options=CONNECTION_OPTIONS) as conn:
        for query, params in statements:
            [[doc]] = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchall()
            plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
            for node in walk(plan):
                if node.get("Relation Name") == "settlements":
                    rows += int(node.get("Actual Rows", 0)) + int(
                        node.get("Rows Removed by Filter", 0)
                    )
    return rows


@pytest.mark.parametrize(
    "kw",
    [
        {"result": "no"},
        {"event": "EV-3"},
        {"series": "SER-2"},
        {"series": "SER-2", "result": "void"},
        {},
    ],
    ids=["result", "event", "series", "series and result", "none"],
)
async def test_a_settlements_page_reads_about_its_rows(history: str, kw: dict[str, Any]) -> None:
    """Migration 0013: each filter of ``/v1/settlements`` has an index in page order. Before, a
    ``result`` filter read all 20,000 settlements and an event or series filter all of its own
    (1,000 and 4,000), sorted, for a page of 10."""
    with psycopg.connect(history, autocommit=True) as conn:
        if conn.execute("SELECT count(*) FROM market.settlements").fetchone() == (0,):
            conn.execute(SETTLEMENTS)
    args: dict[str, Any] = {"event": None, "series": None, "result": None, **kw}
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        history, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        page = await reads.list_settlements(
            conn, **args, start=None, end=None, after=None, limit=10
        )
        cursor = (page[-1].settled_at, page[-1].market_ticker)
        second = await reads.list_settlements(
            conn, **args, start=None, end=None, after=cursor, limit=10
        )
    assert len(page) == len(second) == 10
    for row in (*page, *second):
        assert all(getattr(row, f"{k}_ticker" if k != "result" else k) == v for k, v in kw.items())
    assert page[-1].settled_at < second[0].settled_at
    # with two filters one index gives the order and the other filter keeps 1 row in 4 or 5
    assert settlement_rows_read(history, Recorder.log) <= 2 * 10 * 5 * 2


SPARSE = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT date_trunc('hour', now()) - INTERVAL '110 days' + k * INTERVAL '100 days'
       + INTERVAL '17 minutes', gen_random_uuid(), 'SPARSE', 0.5, 0.5, 1, 'ws', now()
FROM generate_series(0, 1) k
"""


@pytest.mark.parametrize("descending", [False, True], ids=["oldest first", "newest first"])
async def test_a_sparse_market_s_page_plans_its_rows_not_the_gap(
    history: str, descending: bool
) -> None:
    """Two trades 100 days apart (migration 0013): after an empty window the page jumps to the
    next hour holding the market's trades. Walking the gap in widening windows planned every one
    of its ~100 daily chunks, for two rows."""
    with psycopg.connect(history, autocommit=True) as conn:
        if conn.execute(
            "SELECT count(*) FROM market.trade_extents WHERE market_ticker = 'SPARSE'"
        ).fetchone() == (0,):
            conn.execute(SPARSE)
        expected = [
            r[0]
            for r in conn.execute(
                "SELECT trade_id::text FROM market.trades WHERE market_ticker = 'SPARSE' "
                "ORDER BY ts" + (" DESC" if descending else "")
            ).fetchall()
        ]
    Recorder.log = []
    async with await psycopg.AsyncConnection.connect(
        history, autocommit=True, options=CONNECTION_OPTIONS, cursor_factory=Recorder
    ) as conn:
        if descending:
            rows = await trade_reads.list_trades_desc(
                conn, tickers=["SPARSE"], event=None, series=None, start=None, end=None,
                before=None, limit=10,
            )  # fmt: skip
        else:
            rows = await trade_reads.list_trades(
                conn, tickers=["SPARSE"], event=None, series=None, start=None, end=None,
                after=None, limit=10,
            )  # fmt: skip
    assert [r.trade_id for r in rows] == expected
    chunks, _, _ = plan_cost(history, Recorder.log)
    assert chunks <= 6, chunks  # the two rows' chunks, and the empty windows beside them
