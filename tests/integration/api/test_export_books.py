"""Sampled books and trades with the prevailing quote equal /v1's order book at those instants,
gaps included (``complete`` false, with the gap's reason)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest
from api_support import B45, T0

from kalshibook.export.run import ExportRequest, run_export

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

DAY = T0.date().isoformat()
LEVELS = 3


def rfc(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _api_levels(levels: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    """The API lists a side ascending (best last): best first, the top LEVELS."""
    return [(Decimal(p), Decimal(s)) for p, s in reversed(levels)][:LEVELS]


def _row_levels(row: dict[str, Any], side: str) -> list[tuple[Decimal, Decimal]]:
    out = []
    for i in range(LEVELS):
        if row[f"{side}_bid_{i}"] is not None:
            out.append((row[f"{side}_bid_{i}"], row[f"{side}_bid_size_{i}"]))
    return out


async def _book(client: Any, at: datetime) -> dict[str, Any]:
    r = await client.get(f"/v1/markets/{B45}/orderbook", params={"at": rfc(at)})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def test_book_samples_equal_orderbook_at_instants(
    seeded_rw_url: str, client_rw: Any, tmp_path: Path
) -> None:
    with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
        # a delta stamped 2 s before the checkpoint of epoch 1 seq 61 but after it in the feed:
        # the snapshot's replay must still apply it (as /v1 does)
        conn.execute(
            "INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price,"
            " delta, epoch, sid, seq) VALUES (%s, %s, %s, 'yes', 0.58, 4, 1, 1, 102)",
            (T0 + timedelta(seconds=59), B45, T0 + timedelta(seconds=59)),
        )
    out = tmp_path / "books"
    req = ExportRequest(
        tables=("book_samples", "trades_bbo"),
        start=datetime(2026, 1, 15, tzinfo=UTC),
        end=datetime(2026, 1, 16, tzinfo=UTC),
        tickers=(B45,),
        levels=LEVELS,
        every=timedelta(seconds=1),
    )
    async with await psycopg.AsyncConnection.connect(seeded_rw_url) as conn:
        await run_export(conn, req, out)
    samples = pq.read_table(out / "book_samples" / B45 / f"{DAY}.parquet").to_pylist()
    assert len(samples) == 86_400
    by_ts = {r["ts"]: r for r in samples}
    instants = [T0 + timedelta(seconds=s) for s in range(-3, 182)]
    incomplete = 0
    for at in instants:
        row, api = by_ts[at], await _book(client_rw, at)
        assert row["complete"] is api["complete"], at
        if not api["complete"]:
            incomplete += 1
            assert row["gap_reason"] == api["gap"]["reason"], at
        assert _row_levels(row, "yes") == _api_levels(api["yes_bids"]), at
        assert _row_levels(row, "no") == _api_levels(api["no_bids"]), at
    assert 10 <= incomplete < len(instants)  # before the first snapshot and inside the gaps
    assert by_ts[T0 + timedelta(seconds=125)]["gap_reason"] == "disconnect"

    bbo = pq.read_table(out / "trades_bbo" / B45 / f"{DAY}.parquet").to_pylist()
    assert len(bbo) == 120
    assert [r["exchange_seq"] for r in bbo] == sorted(r["exchange_seq"] for r in bbo)
    for r in bbo:
        api = await _book(client_rw, r["ts"] - timedelta(microseconds=1))
        best = api["best"]
        assert r["complete"] is api["complete"]
        want = (best["yes_bid_dollars"], best["yes_bid_size_fp"], best["yes_ask_dollars"])
        got = (r["yes_bid"], r["yes_bid_size"], r["yes_ask"])
        assert got == tuple(None if v is None else Decimal(v) for v in want), r["ts"]
    assert any(r["yes_bid"] is not None for r in bbo)
