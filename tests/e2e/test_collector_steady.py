"""Steady state: >= 200 markets with lifecycle churn for >= 60 s of exchange time, compared with
the simulator's ground truth (trades, books, quotes, settlements, markets/events/series)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from e2e_harness import (
    check_books,
    check_quotes,
    check_reference,
    check_settlements,
    check_trades,
    drive,
    gap_rows,
    load_stored,
    run_daemon,
    settings_for,
    settle,
)

from kalshibook.sim.server import SimConfig, SimServer

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.slow]


async def test_steady_state_matches_ground_truth(db_url: str, tmp_path: Path) -> None:
    cfg = SimConfig(
        no_auth=True,
        markets=220,
        lifetime=40.0,
        autopump=False,
        heartbeat=1.0,
        truth_path=str(tmp_path / "truth.jsonl"),
    )
    async with SimServer(cfg) as sim:
        start_ms = sim.model.now_ms
        settings = settings_for(
            db_url, tmp_path / "data", sim, collector={"orderbook_sub_size": 50}
        )
        async with run_daemon(settings) as daemon:
            assert len(daemon.collector.plan) >= 200
            assert len(daemon.collector.plan.shards) >= 4
            # 62 s of exchange time on a compressed clock (20 ms per step).
            last = await drive(sim, 62.0, step_ms=20, frames_per_step=12)
            await settle(daemon, sim, last)
            await daemon.stop()
            assert daemon.collector.metrics.gaps.total() == 0
        truth = sim.load_truth()
    assert last - start_ms >= 60_000
    assert gap_rows(db_url) == []
    kinds = {m.get("event_type") for _, k, m in truth.lifecycle() if k == "market_lifecycle_v2"}
    assert {"created", "activated", "determined", "settled"} <= kinds, kinds

    assert check_trades(db_url, truth) > 1000
    stored = load_stored(db_url)
    assert check_books(stored, truth, start_ms, last, n=150) >= 100
    assert check_quotes(stored, truth) > 1000
    assert check_settlements(db_url, truth) > 10
    markets, events, series = check_reference(db_url, sim, truth)
    assert markets >= 200
    assert events > 10
    assert series >= 1
    with psycopg.connect(db_url) as conn:
        sources = dict(
            conn.execute(
                "SELECT source, count(*) FROM market.orderbook_snapshots GROUP BY 1"
            ).fetchall()
        )
        lifecycle = conn.execute("SELECT count(*) FROM market.lifecycle_events").fetchone()
        stats = conn.execute("SELECT count(*) FROM market.market_stats").fetchone()
    assert sources.get("snapshot", 0) >= 200, sources
    assert sources.get("checkpoint", 0) > 0, sources
    assert lifecycle is not None
    assert lifecycle[0] > 100
    assert stats is not None
    assert stats[0] > 1000
