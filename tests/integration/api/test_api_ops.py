"""Health, metrics, status, request ids, problem+json for framework errors, pool ownership."""

from __future__ import annotations

import pytest
from api_support import B45, SEED, TEST_CURSOR_SECRET, api_settings, assert_problem, free_port
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.api.routes import ROUTE_HANDLERS, ops
from kalshibook.storage.pool import make_pool

pytestmark = pytest.mark.db


@pytest.mark.asyncio(loop_scope="session")
async def test_request_ids_and_framework_errors(client) -> None:
    r = await client.get("/v1/series", headers={"X-Request-ID": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"
    assert r.json()["request_id"] == "trace-123"
    assert isinstance(r.json()["response_time"], float)
    r = await client.get("/v1/series", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"
    ids = {(await client.get("/health")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3
    body = assert_problem(await client.get("/v2/nothing"), 404, None)
    assert "/schema" in body["detail"]
    assert_problem(await client.post("/v1/series"), 405, None)
    assert_problem(await client.delete(f"/v1/markets/{B45}"), 405, None)


@pytest.mark.asyncio(loop_scope="session")
async def test_status_metrics_and_schema(client) -> None:
    r = await client.get("/v1/status")
    assert r.status_code == 200
    data = r.json()["data"]
    channels = {c["table"]: c for c in data["channels"]}
    assert set(channels) >= {"trades", "orderbook_deltas", "orderbook_snapshots", "book_gaps"}
    newest = max(t.ts for t in SEED.trades)
    assert channels["trades"]["last_ts"].startswith(newest.strftime("%Y-%m-%dT%H:%M"))
    assert channels["trades"]["last_received_at"] is not None
    assert channels["trades"]["lag_seconds"] > 0
    assert channels["quotes"]["last_received_at"] is None
    assert data["coverage"]["markets"] == len(SEED.markets)
    assert data["coverage"]["markets_by_status"]["active"] == 1
    assert data["coverage"]["settlements"] == len(SEED.settlements)

    metrics = (await client.get("/metrics")).text
    assert "# TYPE kalshibook_api_requests_total counter" in metrics
    assert (
        'kalshibook_api_requests_total{method="GET",route="/v1/status",status="200"} 1.0'
        in metrics.splitlines()
    )
    assert (
        'kalshibook_api_request_duration_seconds_bucket{le="+Inf",route="/v1/status"} 1.0'
        in metrics.splitlines()
    )

    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/v1/series",
        "/v1/series/{ticker}",
        "/v1/events",
        "/v1/events/{event_ticker}",
        "/v1/markets",
        "/v1/markets/{ticker}",
        "/v1/markets/{ticker}/trades",
        "/v1/trades",
        "/v1/settlements",
        "/v1/settlements/{ticker}",
        "/v1/markets/{ticker}/orderbook",
        "/v1/markets/{ticker}/deltas",
        "/v1/markets/{ticker}/gaps",
        "/v1/status",
        "/health",
        "/metrics",
    ):
        op = paths[path]["get"]
        ok = op["responses"]["200"]
        if path.startswith("/v1/"):
            assert ok["content"]["application/json"]["examples"], path
            assert op["security"] == [{"bearer": []}], path
            problem = next(v for k, v in op["responses"].items() if k.startswith("4"))
            assert "application/problem+json" in problem["content"], path


@pytest.mark.asyncio(loop_scope="session")
async def test_health_and_database_down(seeded_url: str, monkeypatch) -> None:
    async with AsyncTestClient(app=create_app(api_settings(seeded_url))) as client:
        r = await client.get("/health")
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "database": True}

    monkeypatch.setattr(ops, "HEALTH_TIMEOUT", 0.3)
    dead = f"postgresql://nobody:x@127.0.0.1:{free_port()}/nothing"
    pool = make_pool(
        api_settings(dead, require_auth=False),
        min_size=0,
        max_size=2,
        timeout=0.3,
        reconnect_timeout=0.5,
    )
    await pool.open(wait=False)
    try:
        app = create_app(api_settings(dead, require_auth=False), pool=pool)
        async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
            r = await client.get("/health")
            assert r.status_code == 503
            assert r.json() == {"status": "unavailable", "database": False}
            body = assert_problem(await client.get("/v1/markets"), 503, None)
            assert "unavailable" in body["detail"]
        assert not pool.closed, "an injected pool must not be closed by the app"
    finally:
        await pool.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_every_route_declares_its_cost() -> None:
    for handler in ROUTE_HANDLERS:
        assert "cost" in handler.opt or handler.opt.get("public"), handler


def test_kalshibook_serve_cli(seeded_url: str) -> None:
    """`kalshibook serve --host --port` runs the API under uvicorn until terminated."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    env = {
        **os.environ,
        "KALSHIBOOK_DATABASE_URL": seeded_url,
        "KALSHIBOOK_LOG_LEVEL": "WARNING",
        "KALSHIBOOK_API_CURSOR_SECRET": TEST_CURSOR_SECRET,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kalshibook", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(400):
                try:
                    r = client.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            assert r.status_code == 200
            assert client.get("/v1/markets").status_code == 401
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM for an honest exit status
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)


@pytest.mark.asyncio(loop_scope="session")
async def test_status_reads_the_database_at_most_once_per_ttl(seeded_rw_url: str) -> None:
    """/v1/status is free: its ~0.2 s of queries (on a large history) serve every request for
    STATUS_TTL seconds, so a key calling it at the rate limit cannot load the database."""
    import asyncio
    import uuid
    from datetime import UTC, datetime

    import psycopg

    from kalshibook.storage.api_keys import create_key

    key = create_key(seeded_rw_url, name="status ttl", credits=100).key
    app = create_app(api_settings(seeded_rw_url))
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {key}"

        async def last_trade_ts() -> str:
            r = await c.get("/v1/status")
            assert r.status_code == 200, r.text
            return next(
                x["last_ts"] for x in r.json()["data"]["channels"] if x["table"] == "trades"
            )

        before = await last_trade_ts()
        now = datetime.now(UTC)
        with psycopg.connect(seeded_rw_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, "
                "count, source, received_at) VALUES (%s, %s, %s, 0.5, 0.5, 1, 'ws', %s)",
                (now, uuid.uuid4(), B45, now),
            )
        assert await last_trade_ts() == before  # served from the last reading
        await asyncio.sleep(ops.STATUS_TTL + 0.1)
        assert await last_trade_ts() != before
