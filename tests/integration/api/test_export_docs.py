"""The pandas / Polars / DuckDB snippets of docs/export.md run against a real export and give
the database's numbers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_support import B45, T0

from kalshibook.export.run import ExportRequest, run_export

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

DOC = Path(__file__).resolve().parents[3] / "docs" / "export.md"
FENCE = re.compile(r"```python\n(.*?)```", re.DOTALL)


async def test_export_doc_snippets(seeded_rw_url: str, tmp_path: Path) -> None:
    with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid, yes_bid_size,"
            " yes_ask, yes_ask_size) VALUES (%s, %s, %s, 0.41, 12.5, NULL, NULL),"
            " (%s, %s, %s, 0.42, 3, 0.45, 1.25)",
            (T0, B45, T0, T0.replace(second=5), B45, T0.replace(second=5)),
        )
    out = tmp_path / "exports"
    async with await psycopg.AsyncConnection.connect(seeded_rw_url) as conn:
        for fmt, tables in (("parquet", ("trades", "deltas")), ("csv", ("quotes",))):
            req = ExportRequest(
                tables=tables,
                start=datetime(2026, 1, 15, tzinfo=UTC),
                end=datetime(2026, 1, 16, tzinfo=UTC),
                fmt=fmt,  # type: ignore[arg-type]
            )
            await run_export(conn, req, out)
    ns: dict[str, Any] = {"EXPORT_DIR": str(out), "TICKER": B45, "DAY": T0.date().isoformat()}
    blocks = FENCE.findall(DOC.read_text("utf-8"))
    assert len(blocks) == 4
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), ns)  # our own documentation

    with psycopg.connect(seeded_rw_url) as conn:
        n, notional = conn.execute(
            "SELECT count(*), sum(yes_price * count) FROM market.trades WHERE market_ticker = %s",
            (B45,),
        ).fetchone()
        sides = conn.execute(
            "SELECT side, sum(delta) FROM market.orderbook_deltas WHERE market_ticker = %s"
            " GROUP BY side ORDER BY side",
            (B45,),
        ).fetchall()
        vwap = conn.execute(
            "SELECT market_ticker, sum(yes_price * count) / sum(count), count(*)"
            " FROM market.trades GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert len(ns["trades"]) == n
    assert ns["notional"] == notional
    assert list(ns["trades"]["exchange_seq"]) == sorted(ns["trades"]["exchange_seq"])
    assert ns["quotes"]["yes_bid"].tolist() == [Decimal("0.41"), Decimal("0.42")]
    assert ns["quotes"]["yes_ask"].tolist()[1] == Decimal("0.45")
    assert str(ns["quotes"]["ts"].dtype).startswith("datetime64")
    assert [(r[0], Decimal(str(r[1]))) for r in ns["net_by_side"].rows()] == sides
    got = [(t, round(Decimal(str(v)), 6), c) for t, v, c in ns["vwap"]]
    assert got == [(t, round(v, 6), c) for t, v, c in vwap]
