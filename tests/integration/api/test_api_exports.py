"""GET /v1/exports/{table}: the file `kalshibook export` writes, streamed; credits by rows."""

from __future__ import annotations

import gzip
import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from api_support import B45, T0, api_settings, assert_problem
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.api.auth import create_key
from kalshibook.export.run import ExportRequest, run_export

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

DAY = T0.date().isoformat()


def _credits(url: str, key: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT credits FROM private.api_keys WHERE prefix = %s", (key.split("-")[1],)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_export_file_equals_cli_file_and_costs_rows(
    seeded_rw_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "cli"
    req = ExportRequest(
        tables=("trades", "deltas"),
        start=datetime(2026, 1, 15, tzinfo=UTC),
        end=datetime(2026, 1, 16, tzinfo=UTC),
        tickers=(B45,),
    )
    async with await psycopg.AsyncConnection.connect(seeded_rw_url) as conn:
        await run_export(conn, req, out)
    key = create_key(seeded_rw_url, name="exports", credits=1000).key
    app = create_app(api_settings(seeded_rw_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        for table, rows in (("trades", 120), ("deltas", 130)):
            before = _credits(seeded_rw_url, key)
            r = await client.get(f"/v1/exports/{table}", params={"ticker": B45, "date": DAY})
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/octet-stream"
            assert r.headers["x-row-count"] == str(rows)
            assert hashlib.sha256(r.content).hexdigest() == r.headers["x-content-sha256"]
            assert r.content == (out / table / B45 / f"{DAY}.parquet").read_bytes()
            assert pq.read_table(io.BytesIO(r.content)).num_rows == rows
            assert before - _credits(seeded_rw_url, key) == 1 + 1  # 1 + one started 1,000 rows

        r = await client.get(
            "/v1/exports/trades", params={"ticker": B45, "date": DAY, "format": "csv"}
        )
        assert r.status_code == 200
        lines = gzip.decompress(r.content).decode().splitlines()
        assert len(lines) == 121
        assert lines[0].startswith('"ts","exchange_seq","trade_id"')

        r = await client.get("/v1/exports/nope", params={"ticker": B45, "date": DAY})
        assert_problem(r, 404, "table")
        r = await client.get("/v1/exports/trades", params={"ticker": B45, "date": "2026-1-5"})
        assert_problem(r, 400, "date")
        r = await client.get(
            "/v1/exports/trades", params={"ticker": B45, "date": DAY, "format": "xlsx"}
        )
        assert_problem(r, 400, "format")
        r = await client.get("/v1/exports/trades", params={"ticker": "NOPE-X", "date": DAY})
        assert_problem(r, 404, "ticker")


async def test_export_file_needs_credits_for_its_rows(seeded_rw_url: str) -> None:
    with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,"
            " source, received_at) SELECT %s + g * interval '1 ms', gen_random_uuid(), %s, 0.5,"
            " 0.5, 1, 'ws', %s FROM generate_series(1, 1500) g",
            (T0, B45, T0),
        )
    key = create_key(seeded_rw_url, name="poor", credits=2).key  # 1,620 rows cost 1 + 2
    app = create_app(api_settings(seeded_rw_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        r = await client.get("/v1/exports/trades", params={"ticker": B45, "date": DAY})
        assert_problem(r, 402, None)
        assert "1620 rows" in r.json()["detail"]
    assert _credits(seeded_rw_url, key) == 1
