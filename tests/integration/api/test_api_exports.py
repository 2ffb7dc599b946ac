"""GET /v1/exports/{table}: the file `kalshibook export` writes, streamed; credits by rows."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest
from api_support import B45, T0, api_settings, assert_problem
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.api.auth import create_key
from kalshibook.api.routes.exports import API_TABLES
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


NOT_A_DAY = (
    "9999-12-31",  # its end is past the last representable instant
    "0001-01-01",  # its candle period / replay window starts before the first
    "1999-12-31",  # outside 2000-01-01 .. 2199-12-31, the range of every other time parameter
    "2200-01-01",
    "2026-W03-4",  # ISO 8601 forms that are not YYYY-MM-DD
    "20260115",
    "2026-01-15T00:00:00Z",
    " 2026-01-15",
    "2026-02-30",
)


async def test_export_date_is_a_strict_day_within_the_api_range(seeded_rw_url: str) -> None:
    """Every table: a date that is not a YYYY-MM-DD day of 2000-01-01 .. 2199-12-31 is a 400
    naming ``date`` (not a 500 from a date overflow); the range's first and last days are files
    (empty ones: no data then)."""
    key = create_key(seeded_rw_url, name="dates", credits=10_000).key
    app = create_app(api_settings(seeded_rw_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        for table in API_TABLES:
            for bad in NOT_A_DAY:
                params = {"ticker": B45, "date": bad, "format": "csv"}
                r = await client.get(f"/v1/exports/{table}", params=params)
                body = assert_problem(r, 400, "date")
                assert body["detail"].startswith("date"), body
            for edge in ("2000-01-01", "2199-12-31"):
                params = {"ticker": B45, "date": edge, "format": "csv"}
                r = await client.get(f"/v1/exports/{table}", params=params)
                assert r.status_code == 200, (table, edge, r.text)
                assert r.headers["x-row-count"] == "0", (table, edge)


async def test_book_samples_of_a_day_without_book_events_answer_as_trades_do(
    seeded_rw_url: str,
) -> None:
    """docs/export.md: book samples exist for days with book events. A day after the market's
    last book event, a future one and one before its first event answer like a day without
    trades does: 200, an empty file, 1 credit (not 86,400 rows of the last book repeated, or of
    ``no_snapshot``)."""
    key = create_key(seeded_rw_url, name="empty days", credits=10_000).key
    app = create_app(api_settings(seeded_rw_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        for day in ("2030-01-01", "2026-01-16", "2026-01-14"):
            answers = {}
            for table in ("trades", "book_samples"):
                before = _credits(seeded_rw_url, key)
                params = {"ticker": B45, "date": day, "format": "csv"}
                r = await client.get(f"/v1/exports/{table}", params=params)
                lines = gzip.decompress(r.content).decode().splitlines()
                assert lines[0].startswith('"ts",'), (table, day, lines[:2])
                answers[table] = (
                    r.status_code,
                    r.headers["x-row-count"],
                    len(lines),
                    before - _credits(seeded_rw_url, key),
                )
            assert answers["book_samples"] == answers["trades"] == (200, "0", 1, 1), (day, answers)


SNAPSHOT_AT = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (%s, %s, %s, 'snapshot', 9, 9, 1, '[[0.4, 50]]', '[[0.5, 20]]')
"""


async def test_book_samples_of_the_day_in_progress_stop_at_now(seeded_rw_url: str) -> None:
    """No sample instant after the present: today's file ends at the last second so far."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
        conn.execute(SNAPSHOT_AT, (midnight, B45, midnight))
    key = create_key(seeded_rw_url, name="today", credits=10_000).key
    app = create_app(api_settings(seeded_rw_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        params = {"ticker": B45, "date": midnight.date().isoformat(), "format": "csv"}
        before = datetime.now(UTC)
        r = await client.get("/v1/exports/book_samples", params=params)
        after = datetime.now(UTC)
    if after >= midnight + timedelta(days=1):
        pytest.skip("the UTC day ended during the request")
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(r.content).decode())))
    # one sample a second from midnight: 00:00:00 .. the last second at or before the request
    low = int((before - midnight).total_seconds()) + 1
    high = int((after - midnight).total_seconds()) + 1
    assert low <= len(rows) <= high, (low, len(rows), high)
    assert r.headers["x-row-count"] == str(len(rows))
    last = datetime.fromisoformat(rows[-1]["ts"])
    assert last == midnight + timedelta(seconds=len(rows) - 1)
    assert last <= after
    assert (rows[0]["complete"], rows[0]["yes_bid_0"], rows[0]["no_bid_0"]) == (
        "true",
        "0.400000",
        "0.500000",
    )


BIG_DAY = """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT %(t0)s + g * interval '100 ms', %(ticker)s, %(t0)s + g * interval '100 ms', 'yes',
       0.40, 1, 7, 1, g
FROM generate_series(1, %(n)s) g
"""


WAITING_ON_DELTAS = """
SELECT EXISTS (SELECT 1 FROM pg_locks
               WHERE NOT granted AND relation = 'market.orderbook_deltas'::regclass)
"""


async def test_a_large_day_streams_past_the_request_deadline(
    seeded_rw_url: str, live_server_factory: Any
) -> None:
    """The export route has its own deadline (and statement timeout): a file whose build takes
    far longer than the 0.1 s request deadline (and its 100 ms statement timeout) is complete."""
    n = 300_000
    with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
        conn.execute(BIG_DAY, {"t0": T0, "ticker": B45, "n": n})
    key = create_key(seeded_rw_url, name="big", credits=10_000).key
    params = {"ticker": B45, "date": DAY}
    settings = api_settings(seeded_rw_url, request_timeout=0.1, export_timeout=120)
    async with AsyncTestClient(app=create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        t = time.perf_counter()
        r = await client.get("/v1/exports/deltas", params=params)
        took = time.perf_counter() - t
        assert r.status_code == 200, r.text
        assert took > 0.1
        assert int(r.headers["x-row-count"]) == n + 130
        assert hashlib.sha256(r.content).hexdigest() == r.headers["x-content-sha256"]
        assert pq.read_table(io.BytesIO(r.content)).num_rows == n + 130

    # at most max_concurrent_exports files built at once: one more is a 503, refunded
    busy = api_settings(seeded_rw_url, export_timeout=120, max_concurrent_exports=1)
    server = live_server_factory(busy)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as client:
        before = _credits(seeded_rw_url, key)
        # the first build is held on a lock of the deltas table while the second one asks
        with psycopg.connect(seeded_rw_url) as holder:
            holder.execute("LOCK TABLE market.orderbook_deltas IN ACCESS EXCLUSIVE MODE")
            first = asyncio.create_task(client.get("/v1/exports/deltas", params=params))
            for _ in range(600):
                waiting = holder.execute(WAITING_ON_DELTAS).fetchone()
                if waiting and waiting[0]:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the first export never reached the deltas")
            refused = await client.get("/v1/exports/deltas", params={**params, "format": "csv"})
            holder.rollback()  # the lock goes: the first build goes on
        assert refused.status_code == 503, refused.text
        assert "export files already" in refused.json()["detail"]
        assert (await first).status_code == 200
        spent = before - _credits(seeded_rw_url, key)
        assert spent >= 1 + 301  # the file's rows (and its seconds); the 503 refunded

    # the export deadline applies to exports: past it, a 504
    short = api_settings(seeded_rw_url, export_timeout=0.1)
    async with AsyncTestClient(app=create_app(short), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        r = await client.get("/v1/exports/deltas", params=params)
        assert_problem(r, 504, None)
