"""The daemon under faults, each compared with the simulator's ground truth: dropped sockets,
sequence gaps, malformed frames, terminal subscription errors, a database outage (TCP proxy cut)
and REST 429 bursts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from e2e_harness import (
    Stored,
    TcpProxy,
    check_books,
    check_quotes_outside_gaps,
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
from kalshibook.sim.truth import Truth

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.slow]


class Run:
    def __init__(self, truth: Truth, stored: Stored, start: int, last: int, daemon: Any) -> None:
        self.truth = truth
        self.stored = stored
        self.start = start
        self.last = last
        self.daemon = daemon


async def scenario(
    db_url: str,
    tmp_path: Path,
    *,
    seconds: float = 20.0,
    every: Callable[[SimServer, Any, int], Any] | None = None,
    markets: int = 120,
    settings_db_url: str | None = None,
    collector: dict[str, Any] | None = None,
    writer: dict[str, Any] | None = None,
    frames_per_step: int = 12,
    pause: float = 0.002,
) -> Run:
    cfg = SimConfig(
        no_auth=True,
        markets=markets,
        lifetime=30.0,
        autopump=False,
        heartbeat=1.0,
        truth_path=str(tmp_path / "truth.jsonl"),
    )
    async with SimServer(cfg) as sim:
        start = sim.model.now_ms
        settings = settings_for(
            settings_db_url or db_url,
            tmp_path / "data",
            sim,
            collector={"orderbook_sub_size": 40, **(collector or {})},
            writer=writer,
        )
        async with run_daemon(settings) as daemon:
            hook = None if every is None else (lambda t: every(sim, daemon, t))
            last = await drive(
                sim, seconds, step_ms=20, frames_per_step=frames_per_step, every=hook, pause=pause
            )
            await settle(daemon, sim, last)
            await daemon.stop()
        truth = sim.load_truth()
        check_reference(db_url, sim, truth)
    return Run(truth, load_stored(db_url), start, last, daemon)


def check_all(db_url: str, run: Run) -> None:
    """Every comparison of the steady-state test, with books/quotes outside recorded gaps."""
    check_trades(db_url, run.truth)
    check_books(run.stored, run.truth, run.start, run.last, n=120)
    assert check_quotes_outside_gaps(run.stored, run.truth, run.last) > 100
    check_settlements(db_url, run.truth)


async def test_socket_dropped_repeatedly(db_url: str, tmp_path: Path) -> None:
    drops: list[int] = []
    steps = [0]

    def every(sim: SimServer, daemon: Any, t: int) -> None:
        steps[0] += 1
        if steps[0] % 150 == 0 and sim.sessions:  # every 3 s of exchange time
            drops.append(sim.drop_all())

    run = await scenario(db_url, tmp_path, every=every)
    assert sum(drops) >= 5
    m = run.daemon.collector.metrics
    assert m.reconnects.total() >= 5
    gaps = gap_rows(db_url)
    reasons = {g[3] for g in gaps}
    assert reasons == {"disconnect"}, reasons
    # every market with a book got one gap row per drop, closed by its resync
    by_market: dict[str, int] = {}
    for _, _, t, _ in gaps:
        by_market[t] = by_market.get(t, 0) + 1
    assert max(by_market.values()) >= 5
    assert all(b >= a for a, b, _, _ in gaps)
    assert m.backfilled_trades.total() > 0
    check_all(db_url, run)
    with psycopg.connect(db_url) as conn:
        rest_trades = conn.execute(
            "SELECT count(*) FROM market.trades WHERE source = 'rest'"
        ).fetchone()
        resyncs = conn.execute(
            "SELECT count(*) FROM market.orderbook_snapshots WHERE source = 'resync'"
        ).fetchone()
    assert rest_trades is not None
    assert rest_trades[0] > 0
    assert resyncs is not None
    assert resyncs[0] > 0


async def test_injected_seq_gap(db_url: str, tmp_path: Path) -> None:
    fired: list[int] = []

    def every(sim: SimServer, daemon: Any, t: int) -> None:
        if len(fired) < 6 and t % 2000 < 20:
            sim.skip_seq(1)
            fired.append(t)

    run = await scenario(db_url, tmp_path, every=every)
    assert len(fired) >= 5
    m = run.daemon.collector.metrics
    assert m.seq_gaps.total() >= 5
    gaps = gap_rows(db_url)
    assert gaps
    assert {g[3] for g in gaps} == {"seq_gap"}
    assert m.snapshots_requested.total() > 0
    check_all(db_url, run)
    with psycopg.connect(db_url) as conn:
        resyncs = conn.execute(
            "SELECT count(*) FROM market.orderbook_snapshots WHERE source = 'resync'"
        ).fetchone()
    assert resyncs is not None
    assert resyncs[0] > 0


async def test_malformed_frames_are_counted_and_skipped(db_url: str, tmp_path: Path) -> None:
    sent: list[int] = []

    def every(sim: SimServer, daemon: Any, t: int) -> None:
        if t % 500 < 20:
            sim.send_malformed()
            sent.append(t)

    run = await scenario(db_url, tmp_path, seconds=12.0, every=every)
    assert len(sent) >= 15  # one per 500 ms of the 10 s with faults (19 or 20 by alignment)
    ws_stats = run.daemon.collector.ws.stats
    assert ws_stats.decode_errors >= len(sent)
    exported = dict(
        x.rsplit(" ", 1)
        for x in run.daemon.collector.metrics.render().splitlines()
        if not x.startswith("#")
    )
    assert float(exported["kalshibook_collector_ws_decode_errors_total"]) == ws_stats.decode_errors
    assert gap_rows(db_url) == []  # a malformed frame consumes no seq: nothing is lost
    assert run.daemon.task.done()
    assert run.daemon.task.exception() is None
    check_all(db_url, run)


async def test_terminal_errors_resubscribe(db_url: str, tmp_path: Path) -> None:
    sent: list[int] = []

    def every(sim: SimServer, daemon: Any, t: int) -> None:
        if t % 3000 < 20 and len(sent) < 4:
            sent.append(sim.send_error(10 if len(sent) % 2 == 0 else 25))

    run = await scenario(db_url, tmp_path, every=every)
    assert sum(sent) >= 4
    reasons = {g[3] for g in gap_rows(db_url)}
    assert {"error_10", "error_25"} <= reasons, reasons
    assert run.daemon.collector.metrics.resubscribes.total() >= 4
    check_all(db_url, run)


async def test_database_outage_spools_and_loses_nothing(db_url: str, tmp_path: Path) -> None:
    parts = urlsplit(db_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    proxied = urlunsplit(
        (
            parts.scheme,
            parts.netloc.replace(f":{parts.port}", f":{proxy.port}"),
            parts.path,
            parts.query,
            parts.fragment,
        )
    )
    cut_at: list[float] = []

    def every(sim: SimServer, daemon: Any, t: int) -> None:
        # cut the database for 3 s of wall time, a few seconds into the run
        now = time.monotonic()
        if not cut_at and t - sim.model.config.start_ms > 3000:
            proxy.cut()
            cut_at.append(now)
        elif len(cut_at) == 1 and now - cut_at[0] > 3.0:
            proxy.restore()
            cut_at.append(now)

    try:
        run = await scenario(
            db_url,
            tmp_path,
            seconds=16.0,
            every=every,
            settings_db_url=proxied,
            writer={"memory_rows": 1000, "batch_rows": 500, "retry_max": 0.3},
            pause=0.008,  # ~8 s of wall time: the 3 s outage falls inside the run
        )
    finally:
        await proxy.close()
    assert len(cut_at) == 2, "the outage did not happen"
    stats = run.daemon.writer.stats()
    assert stats.spooled_batches_total > 0, "the outage never outlasted the memory bound"
    assert stats.replayed_batches_total > 0
    assert stats.retries > 0
    assert stats.spool_files_pending == 0
    assert sum(t.rows_rejected for t in stats.tables.values()) == 0
    # Every row handed to the writer was committed.
    for name, t in stats.tables.items():
        assert t.rows_written + t.rows_duplicate == t.rows_put, name
    assert gap_rows(db_url) == []
    check_all(db_url, run)


async def test_rest_429_bursts_slow_work_but_nothing_fails(db_url: str, tmp_path: Path) -> None:
    bursts: list[int] = []

    def every(sim: SimServer, daemon: Any, t: int) -> None:
        if t % 1000 < 20:
            sim.start_429_burst(4)
            bursts.append(t)

    run = await scenario(db_url, tmp_path, every=every)
    assert len(bursts) >= 15
    rest = run.daemon.collector.rest.stats
    assert rest.http_429 > 10
    # A request that exhausts its own retries is retried by its task: the daemon stays up and
    # every comparison still holds (enrichment, settlement confirmations, discovery all done).
    assert run.daemon.task.exception() is None
    check_all(db_url, run)
