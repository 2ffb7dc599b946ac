"""Hostile load through a real uvicorn server, the app's own pools and a real database (issue 16,
point 1): slow requests are bounded by the request deadline and charged, one key cannot take the
data pool, and another key's requests and ``/health`` keep answering meanwhile.

Slowness is real, not simulated: the test holds an ``ACCESS EXCLUSIVE`` lock on ``market.trades``
so every trades query of the flood waits in the server until its deadline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import psycopg
import pytest
from api_support import B45, api_settings, key_credits, key_usage

from kalshibook.api.auth import create_key
from kalshibook.api.middleware import settle

pytestmark = pytest.mark.db

DEADLINE = 3.0
CAP = 4
FLOOD = 16
TRADES_COST = 2


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _timed(client: httpx.AsyncClient, path: str, **kw: Any) -> tuple[int, float]:
    began = time.monotonic()
    r = await client.get(path, **kw)
    return r.status_code, time.monotonic() - began


async def test_a_flood_of_slow_requests_is_bounded_charged_and_starves_no_one(
    seeded_rw_url: str, live_server_factory: Any
) -> None:
    attacker = create_key(seeded_rw_url, name="attacker", credits=1000)
    victim = create_key(seeded_rw_url, name="victim", credits=1000)
    settings = api_settings(
        seeded_rw_url,
        request_timeout=DEADLINE,
        max_concurrent_per_key=CAP,
        seconds_per_credit=2.0,
    )
    server = live_server_factory(settings)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
        # the victim's normal latency, measured before the flood
        normal = [
            (await _timed(client, "/v1/markets", params={"limit": 5}, headers=bearer(victim.key)))[
                1
            ]
            for _ in range(5)
        ]
        baseline = max(normal)
        lock = await psycopg.AsyncConnection.connect(seeded_rw_url)
        try:
            await lock.execute("LOCK TABLE market.trades IN ACCESS EXCLUSIVE MODE")
            flood = [
                asyncio.create_task(
                    _timed(client, f"/v1/markets/{B45}/trades", headers=bearer(attacker.key))
                )
                for _ in range(FLOOD)
            ]
            victim_results: list[tuple[int, float]] = []
            health: list[int] = []
            began = time.monotonic()
            while time.monotonic() - began < DEADLINE + 1.0:
                victim_results.append(
                    await _timed(
                        client, "/v1/markets", params={"limit": 5}, headers=bearer(victim.key)
                    )
                )
                health.append((await client.get("/health")).status_code)
                await asyncio.sleep(0.1)
            flooded = await asyncio.gather(*flood)
        finally:
            await lock.rollback()
            await lock.close()
        after = await client.get(f"/v1/markets/{B45}/trades", headers=bearer(attacker.key))

    statuses = sorted(s for s, _ in flooded)
    assert statuses == [429] * (FLOOD - CAP) + [504] * CAP, statuses
    slow = [t for s, t in flooded if s == 504]
    assert all(DEADLINE - 0.2 <= t < DEADLINE + 2.0 for t in slow), slow
    assert all(t < 1.0 for s, t in flooded if s == 429)  # refused at once, not queued
    assert after.status_code == 200, after.text  # the slots came back

    assert len(victim_results) >= 10
    assert {s for s, _ in victim_results} == {200}, victim_results
    worst = max(t for _, t in victim_results)
    assert worst < max(1.0, 5 * baseline), (worst, baseline)
    assert set(health) == {200}, health

    # the timed-out requests were charged their cost plus their time; refusals cost nothing
    rows = [(status, cost) for _, status, cost in key_usage(seeded_rw_url, attacker.prefix)]
    credits = key_credits(seeded_rw_url, attacker.prefix)
    timed_out = [cost for status, cost in rows if status == 504]
    assert len(timed_out) == CAP
    assert all(cost == TRADES_COST + 1 for cost in timed_out), rows  # ~3 s held: +1 per 2 s
    assert [s for s, _ in rows].count(429) == 0
    assert credits == 1000 - sum(cost for _, cost in rows)


def test_settle_rule() -> None:
    """The charging rule of docs/api.md: own failures refunded, deadlines and time charged."""
    assert settle(200, 3, 0.5, 2.0) == (0, 0)
    assert settle(200, 3, 5.9, 2.0) == (0, 2)
    assert settle(504, 3, 10.0, 2.0) == (0, 5)
    assert settle(503, 3, 10.0, 2.0) == (3, 0)
    assert settle(500, 3, 0.1, 2.0) == (3, 0)
    assert settle(200, 3, 100.0, 0.0) == (0, 0)
    # a batch's per-item credits (charge_items): kept on success and at the deadline, given back
    # on a 4xx (a failed batch pays the single price) and, with the rest, on our own failures
    assert settle(200, 5, 0.5, 2.0, 495) == (0, 0)
    assert settle(404, 5, 2.5, 2.0, 495) == (495, 1)
    assert settle(400, 5, 0.5, 2.0) == (0, 0)
    assert settle(504, 5, 10.0, 2.0, 495) == (0, 5)
    assert settle(503, 5, 0.5, 2.0, 495) == (500, 0)
