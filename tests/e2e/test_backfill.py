"""History from day one (issue #19): ``kalshibook backfill`` against a simulator whose history
started hours before anyone connected (markets created, traded and settled; the historical cutoff
in the middle), checked against the simulator's truth file.

The backfill runs as a real process (``python -m kalshibook backfill``) so that it can be killed
with SIGKILL midway and resumed; 429 bursts are on in that test. The last test runs the collector
daemon at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e_harness import (
    check_reference,
    check_trades,
    run_daemon,
    settings_for,
    wait_for,
)
from litestar.testing import AsyncTestClient
from psycopg import sql

from kalshibook.api.app import create_app
from kalshibook.backfill.loader import Backfill, Selection
from kalshibook.backfill.progress import ProgressReport
from kalshibook.cli.service_user import login_url
from kalshibook.collector.backfill import Backfill as CollectorBackfill
from kalshibook.collector.catalog import Catalog
from kalshibook.collector.discovery import Discovery
from kalshibook.collector.enrichment import Enrichment
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.reference_sync import ReferenceSync
from kalshibook.collector.router import Router
from kalshibook.collector.settlements import Settlements
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import FeedError
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.settings import CoreSettings, Settings
from kalshibook.sim.rest_history import is_historical
from kalshibook.sim.server import SimConfig, SimServer
from kalshibook.sim.truth import Truth, parse_truth
from kalshibook.storage.api_keys import create_key
from kalshibook.storage.pool import Pool, make_pool
from kalshibook.storage.service_roles import create_service_login
from kalshibook.storage.writer import Writer

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def backfill_rig(
    db_url: str, tmp_path: Path, sim: SimServer, *, wait_start: bool = True
) -> AsyncIterator[tuple[Pool, Writer, KalshiRest]]:
    """A pool, the writer and a REST client to ``sim``, as the backfill and the collector's
    tasks use them. ``wait_start``: let the simulator's start second pass first (the history's
    last trades are in it, and a backfill loads whole seconds up to its start)."""
    settings = settings_for(db_url, tmp_path / "data", sim)
    pool = make_pool(settings, min_size=1, max_size=6, name="kalshibook-backfill-test")
    await pool.open(wait=True, timeout=30.0)
    if wait_start:
        await asyncio.sleep(1.2)
    try:
        async with Writer(settings, pool) as writer, KalshiRest(settings.kalshi, None) as rest:
            yield pool, writer, rest
    finally:
        await pool.close()


def history_config(tmp: Path, **kw: Any) -> SimConfig:
    base: dict[str, Any] = {
        "no_auth": True,
        "markets": 8,
        "history_hours": 2.0,
        "history_rate": 6.0,
        "lifetime": 1200.0,
        "autopump": False,
        "rate": 0.0,
        "trade_history": 2_000_000,
        "truth_path": str(tmp / "truth.jsonl"),
    }
    base.update(kw)
    return SimConfig(**base)


def env_for(db_url: str, data: Path, sim: SimServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHIBOOK_")}
    env.update(
        KALSHIBOOK_DATABASE_URL=db_url,
        KALSHIBOOK_DATA_DIR=str(data),
        KALSHIBOOK_KALSHI_REST_URL=sim.rest_url,
        KALSHIBOOK_KALSHI_WS_URL=sim.ws_url,
        KALSHIBOOK_KALSHI_REST_RATE="400",
        KALSHIBOOK_KALSHI_REST_BURST="50",
        KALSHIBOOK_KALSHI_RECONNECT_INITIAL="0.05",
        KALSHIBOOK_KALSHI_RECONNECT_MAX="0.5",
        KALSHIBOOK_WRITER_BATCH_AGE="0.05",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


async def start_backfill(env: dict[str, str], log: Path, *args: str) -> asyncio.subprocess.Process:
    return await start_cli(env, log, "backfill", "--no-auth", *args)


async def start_cli(env: dict[str, str], log: Path, *args: str) -> asyncio.subprocess.Process:
    out = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kalshibook",
            *args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    finally:
        out.close()


async def backfill(env: dict[str, str], log: Path, *args: str) -> int:
    proc = await start_backfill(env, log, *args)
    return await asyncio.wait_for(proc.wait(), 300)


def truth_of(sim: SimServer) -> Truth:
    assert sim.truth_path is not None
    sim._truth.flush()  # type: ignore[union-attr]
    return parse_truth(sim.truth_path.read_bytes())


def read_truth(path: str) -> Truth:
    return parse_truth(Path(path).read_bytes())


def counts(url: str) -> tuple[int, int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM market.trades), "
            "(SELECT count(*) FROM market.kalshi_candles), "
            "(SELECT count(*) FROM market.settlements), "
            "(SELECT count(*) FROM market.markets)"
        ).fetchone()
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def check_exchange_order(url: str, truth: Truth) -> None:
    """Stored order (ts, exchange_seq) of each market's trades = the simulator's order."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT market_ticker, trade_id::text FROM market.trades "
            "ORDER BY market_ticker, ts, exchange_seq"
        ).fetchall()
    stored: dict[str, list[str]] = {}
    for t, i in rows:
        stored.setdefault(t, []).append(i)
    want: dict[str, list[str]] = {}
    for tr in truth.trades():
        want.setdefault(tr.ticker, []).append(tr.trade_id)
    assert stored == want


def check_model_settlements(url: str, sim: SimServer) -> None:
    """Every market the simulator determined or settled (in the history or the initial
    catalogue) has its settlement, with its result and instant; no other."""
    with psycopg.connect(url) as conn:
        rows = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT market_ticker, result, settled_at FROM market.settlements"
            )
        }
    want = {
        m.ticker: (m.result, m.event.settled_ms // 1000 if m.status == "finalized" else None)
        for m in sim.model.market_list
        if m.status in ("finalized", "determined")
    }
    got = {t: (r, None if at is None else int(at.timestamp())) for t, (r, at) in rows.items()}
    assert got == want


def check_kalshi_candles(url: str, sim: SimServer) -> None:
    """Daily Kalshi candles stored = the volume the simulator traded per market."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT market_ticker, sum(volume) FROM market.kalshi_candles "
            "WHERE period_minutes = 1 GROUP BY market_ticker"
        ).fetchall()
    got = {t: v for t, v in rows if v}
    want: dict[str, int] = {}
    for tr in sim.model.trades.records():
        want[tr.ticker] = want.get(tr.ticker, 0) + tr.size
    # 1-minute candles cover every trade but the ones in the minute still in progress.
    assert set(got) <= set(want)
    assert len(got) >= len(want) - 2
    for t, v in got.items():
        assert v * 100 <= want[t]


@pytest.mark.both_editions
async def test_backfill_equals_truth_killed_and_resumed_with_429s(
    db_url: str, tmp_path: Path
) -> None:
    cfg = history_config(tmp_path, rest_429_every=3.0, rest_429_burst=5)
    async with SimServer(cfg) as sim:
        truth = truth_of(sim)
        assert len(truth.trades()) > 2000
        env = env_for(db_url, tmp_path / "data", sim)
        log = tmp_path / "backfill.log"
        # Killed midway: once some markets are done, SIGKILL. A first 429 burst now: on a fast
        # machine the whole run can end before the periodic bursts (every 3 s) begin.
        sim.start_429_burst(5)
        proc = await start_backfill(env, log, "--all", "--concurrency", "2")

        def some_done() -> bool:
            with psycopg.connect(db_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM market.backfill_progress WHERE trades_complete"
                ).fetchone()
            return row is not None and row[0] >= 3

        await wait_for(some_done, 60, "a few markets backfilled", why=log.read_text)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        partial = counts(db_url)
        assert 0 < partial[0] < len(truth.trades())
        # Resumed: the same result as one run.
        assert await backfill(env, log, "--all") == 0, log.read_text()[-3000:]
        assert sim.stats["rest_429"] > 0
        n = check_trades(db_url, truth)
        assert n == len(truth.trades())
        check_exchange_order(db_url, truth)
        check_model_settlements(db_url, sim)
        check_reference(db_url, sim, truth)
        check_kalshi_candles(db_url, sim)
        first = counts(db_url)
        # Twice adds nothing.
        assert await backfill(env, log, "--all") == 0, log.read_text()[-3000:]
        assert counts(db_url) == first
        # ... and fetches no trade again (every market is complete up to the last run's end).
        last = [ln for ln in log.read_text().splitlines() if ln.startswith("backfill: markets=")]
        assert len(last) == 2
        assert " trades=0 " in last[-1]
        assert " trades=0 " not in last[0]
        # verify: kalshibook's candles from the backfilled trades equal Kalshi's, every period.
        vlog = tmp_path / "verify.log"
        proc = await start_cli(env, vlog, "verify")
        assert await asyncio.wait_for(proc.wait(), 120) == 0, vlog.read_text()
        summary = vlog.read_text().splitlines()[0]
        assert summary.endswith(" mismatched=0"), summary
        fields = dict(kv.split("=") for kv in summary.split()[1:])
        assert int(fields["markets"]) >= len({t.ticker for t in truth.trades()})
        assert int(fields["exact"]) == int(fields["periods"]) > 1000
        # A wrong Kalshi candle is reported, and exits non-zero over the threshold.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE market.kalshi_candles SET volume = volume + 1 WHERE (market_ticker, "
                "period_minutes, end_ts) = (SELECT market_ticker, period_minutes, end_ts "
                "FROM market.kalshi_candles WHERE volume > 0 AND period_minutes = 60 LIMIT 1)"
            )
        vlog.unlink()
        proc = await start_cli(env, vlog, "verify")
        assert await asyncio.wait_for(proc.wait(), 120) == 1, vlog.read_text()
        text = vlog.read_text()
        assert " mismatched=1" in text.splitlines()[0]
        assert "60m ending" in text
        assert "volume: kalshi=" in text
        proc = await start_cli(env, vlog, "verify", "--threshold", "1")
        assert await asyncio.wait_for(proc.wait(), 120) == 0


async def test_backfill_a_selection_from_a_start(db_url: str, tmp_path: Path) -> None:
    async with SimServer(history_config(tmp_path)) as sim:
        truth = truth_of(sim)
        ev = next(e for e in sim.model.event_list if len(e.markets) > 1 and e.series_ticker)
        start_s = (sim.model.cutoff_ms - 1_800_000) // 1000
        env = env_for(db_url, tmp_path / "data", sim)
        log = tmp_path / "backfill.log"
        code = await backfill(
            env, log, "--event", ev.event_ticker, "--start", str(start_s), "--no-candles"
        )
        assert code == 0, log.read_text()
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("SELECT trade_id::text FROM market.trades").fetchall()
            candles = conn.execute("SELECT count(*) FROM market.kalshi_candles").fetchone()
        want = {
            t.trade_id
            for t in truth.trades()
            if t.ticker in {m.ticker for m in ev.markets} and t.ts >= start_s * 1000
        }
        assert {r[0] for r in rows} == want
        assert candles == (0,)
        # Bad input: one line, exit 2.
        code = await backfill(env, log)
        assert code == 2
        assert "choose what to backfill" in log.read_text()


async def test_backfill_as_the_collector_login_names_unknowns_and_the_refresh_to_run(
    db_url: str, tmp_path: Path
) -> None:
    """On the collector's login (not the aggregates' owner) a backfill loads everything but
    cannot refresh the candles: its summary says so, it exits 5 and prints the exact command,
    which then works as the owner. Unknown names are reported; only unknown ones exit 3. A bare
    UTC day is a --start."""
    name = f"kb_bfc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        password = create_service_login(conn, "collector", name)
    try:
        async with SimServer(history_config(tmp_path)) as sim:
            truth = truth_of(sim)
            ev = next(
                e
                for e in sim.model.event_list
                if e.series_ticker
                and {t.ticker for t in truth.trades()} & {m.ticker for m in e.markets}
            )
            env = env_for(login_url(db_url, name, password), tmp_path / "data", sim)
            log = tmp_path / "backfill.log"
            assert await backfill(env, log, "--market", "NOPE-XYZ", "--series", "NOPE") == 3
            text = log.read_text()
            assert (
                "kalshibook backfill: market 'NOPE-XYZ': the exchange lists no such market" in text
            )
            assert "kalshibook backfill: series 'NOPE': the exchange lists no such market" in text
            assert counts(db_url)[3] == 0
            log.unlink()
            yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
            code = await backfill(
                env, log, "--event", ev.event_ticker, "--market", "NOPE-XYZ", "--start", yesterday
            )
            text = log.read_text()
            assert code == 5, text
            assert "market 'NOPE-XYZ': the exchange lists no such market" in text
            [summary] = [ln for ln in text.splitlines() if ln.startswith("backfill: markets=")]
            assert summary.endswith(" aggregates=NOT-REFRESHED"), summary
            [line] = [ln for ln in text.splitlines() if "candle aggregates were NOT" in ln]
            assert "must be owner of view candles_trades_1m" in line
            command = line.split("run as the database owner: ")[1].split()
            assert command[:2] == ["kalshibook", "refresh-candles"]
            assert command[6:] == ["--source", "trades"]  # what it wrote
        want = {t.trade_id for t in truth.trades() if t.ticker in {m.ticker for m in ev.markets}}
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("SELECT trade_id::text, ts FROM market.trades").fetchall()
        assert {r[0] for r in rows} == want
        # The command covers every loaded trade, and the owner may run it.
        start, end = (datetime.fromisoformat(command[i].replace("Z", "+00:00")) for i in (3, 5))
        assert start <= min(r[1] for r in rows)
        assert max(r[1] for r in rows) < end
        rlog = tmp_path / "refresh.log"
        owner = env_for(db_url, tmp_path / "data", sim)
        proc = await start_cli(owner, rlog, *command[1:])
        assert await asyncio.wait_for(proc.wait(), 120) == 0, rlog.read_text()
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


async def test_backfill_while_the_collector_runs(db_url: str, tmp_path: Path) -> None:
    cfg = history_config(
        tmp_path, autopump=True, rate=40.0, lifetime=600.0, markets=40, history_hours=1.0
    )
    async with SimServer(cfg) as sim:
        settings = settings_for(db_url, tmp_path / "data", sim)
        env = env_for(db_url, tmp_path / "data2", sim)
        log = tmp_path / "backfill.log"
        hist_end_ms = sim.model.now_ms
        async with run_daemon(settings) as daemon:
            assert await backfill(env, log, "--all", "--no-candles") == 0, log.read_text()
            await asyncio.sleep(1.0)
            stop_ms = int(time.time() * 1000) - 1000
            await daemon.stop()
        await sim.stop()
    truth = read_truth(cfg.truth_path or "")
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT market_ticker, trade_id::text, source FROM market.trades "
            "ORDER BY market_ticker, ts, exchange_seq"
        ).fetchall()
    ids = [r[1] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate trades"
    made = {t.trade_id for t in truth.trades()}
    assert set(ids) <= made
    # Every trade from the history's start until just before the daemon stopped, exactly once,
    # whoever stored it (the backfill over REST, the collector over the WebSocket or its own
    # gap backfill), in exchange order.
    want = [t for t in truth.trades() if t.ts < stop_ms]
    missing = [t.trade_id for t in want if t.trade_id not in set(ids)]
    assert not missing, f"{len(missing)} of {len(want)} missing"
    sources = {r[2] for r in rows}
    assert [t for t in truth.trades() if t.ts > hist_end_ms], "nothing traded live"
    assert sources == {"ws", "rest"}
    order: dict[str, list[str]] = {}
    for tk, i, _ in rows:
        order.setdefault(tk, []).append(i)
    for tk, lst in order.items():
        exp = [t.trade_id for t in truth.trades(tk) if t.trade_id in set(lst)]
        assert lst == exp, tk
    await check_coverage(db_url, rows, env, tmp_path)


async def check_coverage(db_url: str, rows: list[Any], env: dict[str, str], tmp_path: Path) -> None:
    """``GET /v1/markets/{t}/coverage`` and ``kalshibook status --market``: trades from/to per
    source as stored, the backfill's progress, books from the first live snapshot, gaps."""
    with psycopg.connect(db_url) as conn:
        spans = {
            (r[0], r[1]): (r[2], r[3])
            for r in conn.execute(
                "SELECT market_ticker, source, min(ts), max(ts) FROM market.trades GROUP BY 1, 2"
            )
        }
        snaps = dict(
            conn.execute(
                "SELECT market_ticker, min(ts) FROM market.orderbook_snapshots GROUP BY 1"
            ).fetchall()
        )
        progress = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT market_ticker, trades_from, trades_through, trades_complete "
                "FROM market.backfill_progress"
            )
        }
    both = next(t for t, src in spans if src == "ws" and (t, "rest") in spans)
    key = create_key(db_url, name="coverage", credits=10**6).key
    app = create_app(Settings(core=CoreSettings(database_url=db_url)))
    headers = {"Authorization": f"Bearer {key}"}
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        r = await client.get(f"/v1/markets/{both}/coverage", headers=headers)
        assert r.status_code == 200, r.text
        d = r.json()["data"]
        got = {x["source"]: (x["first"], x["last"]) for x in d["trade_sources"]}
        for src, label in (("ws", "live"), ("rest", "rest")):
            lo, hi = spans[both, src]
            assert got[label] == (iso(lo), iso(hi))
        assert d["trades_from"] == min(got[k][0] for k in got)
        assert d["books_from"] == iso(snaps[both])
        assert "cannot be backfilled" in d["books_note"]
        assert (d["backfill_from"], d["backfill_through"], d["backfill_complete"]) == (
            iso(progress[both][0]),
            iso(progress[both][1]),
            progress[both][2],
        )
        assert isinstance(d["gaps"], list)
        r = await client.get("/v1/markets/NOPE-1/coverage", headers=headers)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
    log = tmp_path / "status.log"
    proc = await start_cli(env, log, "status", "--market", both, "--market", "NOPE-1")
    await asyncio.wait_for(proc.wait(), 60)
    text = log.read_text()
    assert f"coverage {both}:" in text
    assert "    live: " in text
    assert "    rest: " in text
    assert "books from " in text
    assert "coverage NOPE-1: unknown market" in text


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def candle_rows(url: str, before: datetime) -> set[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return {
            tuple(r)
            for r in conn.execute(
                "SELECT market_ticker, period_minutes, end_ts, volume FROM market.kalshi_candles "
                "WHERE end_ts < %s",
                (before,),
            )
        }


async def test_a_later_backfill_loads_what_is_before_an_earlier_runs_start(
    db_url: str, tmp_path: Path
) -> None:
    """``--all --start T`` then ``--all``: the second run loads the trades and Kalshi's candles
    from before T (the progress row is the range covered, not only its end). A ``--start`` in
    the future is refused (it would otherwise record progress there)."""
    async with SimServer(history_config(tmp_path)) as sim:
        truth = truth_of(sim)
        t_ms = sim.model.cutoff_ms - 1_800_000
        t = datetime.fromtimestamp(t_ms // 1000, UTC)
        spanning = {x.ticker for x in truth.trades() if x.ts < t_ms} & {
            x.ticker for x in truth.trades() if x.ts >= t_ms
        }
        assert spanning, "no market traded both before and after T"
        env = env_for(db_url, tmp_path / "data", sim)
        log = tmp_path / "backfill.log"
        future = str(int(time.time()) + 3600)
        assert await backfill(env, log, "--all", "--start", future) == 2
        assert "--start " + future + ": in the future" in log.read_text()
        assert counts(db_url)[3] == 0
        assert await backfill(env, log, "--all", "--start", str(t_ms // 1000)) == 0, (
            log.read_text()[-3000:]
        )
        assert check_trades(db_url, truth, since_ms=t_ms) > 0
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT min(ts) FROM market.trades").fetchone()
        assert row is not None
        assert row[0] >= t
        assert not candle_rows(db_url, t - timedelta(minutes=1))
        assert await backfill(env, log, "--all") == 0, log.read_text()[-3000:]
        n = check_trades(db_url, truth)
        assert n == len(truth.trades())
        check_exchange_order(db_url, truth)
        earlier = candle_rows(db_url, t)
        assert {r[0] for r in earlier} >= spanning
        # The same Kalshi candles before T as a backfill from scratch stores.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("TRUNCATE market.kalshi_candles, market.backfill_progress")
        assert await backfill(env, log, "--all") == 0, log.read_text()[-3000:]
        assert candle_rows(db_url, t) == earlier
        last = [ln for ln in log.read_text().splitlines() if ln.startswith("backfill: markets=")]
        assert len(last) == 3


async def test_a_retried_market_counts_its_trades_once_and_the_progress_line_ticks(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The busiest market's trades fail midway once (as a 5xx that outlasts the REST client's
    retries): the market is retried, the summary counts its trades once (= stored), and the
    progress line keeps coming while the market waits for its retry and while markets are listed.
    """
    caplog.set_level(logging.INFO, logger="kalshibook.backfill")
    async with SimServer(history_config(tmp_path)) as sim:
        truth = truth_of(sim)
        busiest = Counter(t.ticker for t in truth.trades()).most_common(1)[0][0]
        failures = [0]
        async with backfill_rig(db_url, tmp_path, sim) as (pool, writer, rest):

            def failing(
                fn: Callable[..., AsyncIterator[Any]],
            ) -> Callable[..., AsyncIterator[Any]]:
                async def gen(ticker: str, *a: Any, **kw: Any) -> AsyncIterator[Any]:
                    n = 0
                    async for t in fn(ticker, *a, **kw):
                        yield t
                        n += 1
                        if ticker == busiest and not failures[0] and n == 20:
                            failures[0] += 1
                            raise FeedError("HTTP 503 (injected)")

                return gen

            monkeypatch.setattr(rest, "get_trades", failing(rest.get_trades))
            monkeypatch.setattr(rest, "get_historical_trades", failing(rest.get_historical_trades))
            report = ProgressReport(io.StringIO(), tty=False, every=0.1)
            job = Backfill(rest=rest, writer=writer, pool=pool, report=report, concurrency=2)
            s = await job.run(Selection(all=True, candles=False))
        assert failures == [1]
        assert s.markets_failed == 0
        n = check_trades(db_url, truth)
        assert n == len(truth.trades())
        assert s.trades_fetched == n
        assert report.trade_count == n
        assert report.in_flight == 0
        lines = [r.getMessage() for r in caplog.records if r.name == "kalshibook.backfill"]
        assert any(" retrying 1 " in ln for ln in lines), lines
        assert lines[-1].startswith(f"backfill done: markets {s.markets}/{s.markets} trades {n} ")


async def test_retried_markets_count_settlements_candles_and_trades_once(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run from T, then a run from the start whose first Kalshi-candles request of each market
    fails (a 5xx that outlasts the REST client's retries) once the market's trades before T are
    loaded: every market is retried, and the summary counts each settlement once, the candles as
    stored and the trades as stored; the progress line keeps no trade of a failed attempt."""
    async with SimServer(history_config(tmp_path)) as sim:
        truth = truth_of(sim)
        t = datetime.fromtimestamp((sim.model.cutoff_ms - 1_800_000) // 1000, UTC)
        failed: set[str] = set()
        async with backfill_rig(db_url, tmp_path, sim) as (pool, writer, rest):

            def run(report: ProgressReport) -> Backfill:
                return Backfill(rest=rest, writer=writer, pool=pool, report=report)

            first = await run(ProgressReport(io.StringIO(), tty=False)).run(
                Selection(all=True, start=t)
            )
            assert first.markets_failed == 0
            with psycopg.connect(db_url) as conn:
                candles_before = _count(conn, "market.kalshi_candles")
                trades_before = _count(conn, "market.trades")

            def failing(fn: Callable[..., Any]) -> Callable[..., Any]:
                async def call(*a: Any, **kw: Any) -> Any:
                    ticker = next(x for x in a if isinstance(x, str) and x in tickers)
                    if ticker not in failed:
                        failed.add(ticker)
                        raise FeedError("HTTP 503 (injected)")
                    return await fn(*a, **kw)

                return call

            tickers = {m.ticker for m in sim.model.market_list}
            monkeypatch.setattr(rest, "get_candlesticks", failing(rest.get_candlesticks))
            monkeypatch.setattr(
                rest, "get_historical_candlesticks", failing(rest.get_historical_candlesticks)
            )
            report = ProgressReport(io.StringIO(), tty=False)
            s = await run(report).run(Selection(all=True))
        assert failed, "no candle request was made"
        assert s.markets_failed == 0
        n = check_trades(db_url, truth)
        assert n == len(truth.trades())
        with psycopg.connect(db_url) as conn:
            settled = _count(conn, "market.settlements")
            candles_after = _count(conn, "market.kalshi_candles")
        assert settled > 0
        assert s.settlements == settled
        assert s.trades_fetched == n - trades_before
        assert report.trade_count == s.trades_fetched
        assert report.in_flight == 0
        # every candle the second run stored was new (the first stored only those from T on)
        assert s.candles_fetched >= candles_after - candles_before > 0


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(table))).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("moves", [False, True], ids=["cutoff still", "cutoff moves"])
async def test_the_collectors_outage_backfill_routes_by_the_cutoff(
    db_url: str, tmp_path: Path, moves: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage window older than the historical cutoff (a collector down for months): its
    trades before the cutoff are only in ``/historical/trades``; the collector's window backfill
    stores every trade of the window, on both sides of the cutoff, each once; also when Kalshi
    moves the cutoff forward while the live part is listed (its trades of the band between the
    two cutoffs move to ``/historical/trades``)."""
    async with SimServer(history_config(tmp_path)) as sim:
        truth = truth_of(sim)
        cutoff_ms = sim.model.cutoff_ms
        assert any(t.ts < cutoff_ms for t in truth.trades())
        assert any(t.ts >= cutoff_ms for t in truth.trades())
        first = datetime.fromtimestamp(min(t.ts for t in truth.trades()) // 1000, UTC)
        async with backfill_rig(db_url, tmp_path, sim) as (pool, writer, rest):
            task = CollectorBackfill(
                rest=rest, writer=writer, pool=pool, work=WorkQueues(), catalog=Catalog(),
                metrics=Metrics(), stop=asyncio.Event(),
            )  # fmt: skip
            task.progress_every = 0.0  # a progress line per trade listed
            caplog.set_level(logging.INFO, logger="kalshibook.collector.backfill")
            if moves:
                live = rest.get_trades

                def moving(*a: Any, **kw: Any) -> AsyncIterator[Any]:
                    sim.model.cutoff_ms += 1_800_000  # Kalshi advances it meanwhile
                    return live(*a, **kw)

                rest.get_trades = moving  # type: ignore[method-assign]
            n = await task.backfill(first, datetime.now(UTC))
            await writer.drain()
    assert n >= len(truth.trades())  # listed: the band between two cutoffs, twice
    assert check_trades(db_url, truth) == len(truth.trades())
    progress = [r.getMessage() for r in caplog.records if "in progress" in r.getMessage()]
    assert len(progress) > 100  # a line per trade listed, with the count and how far back


async def test_a_settlement_before_the_cutoff_is_confirmed_from_historical_markets(
    db_url: str, tmp_path: Path
) -> None:
    """A market settled before the historical cutoff (a collector back from a long outage):
    ``GET /markets/{ticker}`` no longer serves it; the collector's confirmation finds it in
    ``/historical/markets/{ticker}`` and stores its settlement."""
    async with SimServer(history_config(tmp_path)) as sim:
        old = [m for m in sim.model.market_list if is_historical(sim.model, m)]
        assert old, "no market settled before the cutoff"
        m = old[0]
        async with backfill_rig(db_url, tmp_path, sim, wait_start=False) as (_, writer, rest):
            assert await rest.get_market(m.ticker) is None
            catalog = Catalog()
            task = Settlements(
                rest=rest, writer=writer, refs=ReferenceSync(rest, writer, catalog),
                catalog=catalog, work=WorkQueues(), metrics=Metrics(), retries=1,
                stop=asyncio.Event(),
            )  # fmt: skip
            assert await task._confirm(m.ticker)
            await writer.drain()
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT result, confirmed FROM market.settlements WHERE market_ticker = %s",
            (m.ticker,),
        ).fetchone()
    assert row == (m.result, True)


async def test_discovery_finds_a_followed_market_settled_before_the_cutoff(
    db_url: str, tmp_path: Path
) -> None:
    """A market the collector still believes active settled during an outage longer than Kalshi's
    live window: the sweep's look-up of ``/markets?tickers=`` does not return it, the look-up of
    ``/historical/markets`` does; it is unfollowed and its settlement confirmed, not asked for
    again at every sweep."""
    async with SimServer(history_config(tmp_path)) as sim:
        m = next(m for m in sim.model.market_list if is_historical(sim.model, m))
        async with backfill_rig(db_url, tmp_path, sim, wait_start=False) as (_, writer, rest):
            catalog = Catalog()
            catalog.note_market(m.ticker, m.event.event_ticker, None, "active")
            work = WorkQueues()
            sweep = Discovery(
                rest=rest, refs=ReferenceSync(rest, writer, catalog), catalog=catalog,
                work=work, metrics=Metrics(), interval=300.0, stop=asyncio.Event(),
                ready=asyncio.Event(),
            )  # fmt: skip
            await sweep.sweep()
            await writer.drain()
    assert m.ticker in work.confirms
    assert m.ticker in work.removes
    assert m.ticker not in catalog.unsettled_markets()


async def test_backfill_loses_nothing_when_the_cutoff_moves_during_the_run(
    db_url: str, tmp_path: Path
) -> None:
    """``kalshibook backfill --all`` over hours of Kalshi: the cutoff moves forward while a
    market's live trades are listed, and the trades of the band between the two cutoffs move to
    ``/historical/trades``; they are listed there, not lost (their market marked complete)."""
    async with SimServer(history_config(tmp_path)) as sim:
        truth = truth_of(sim)
        moved = [0]
        async with backfill_rig(db_url, tmp_path, sim) as (pool, writer, rest):
            live = rest.get_trades

            def moving(*a: Any, **kw: Any) -> AsyncIterator[Any]:
                if not moved[0]:
                    moved[0] += 1
                    sim.model.cutoff_ms += 1_800_000  # Kalshi advances it meanwhile
                return live(*a, **kw)

            rest.get_trades = moving  # type: ignore[method-assign]
            report = ProgressReport(io.StringIO(), tty=False)
            job = Backfill(rest=rest, writer=writer, pool=pool, report=report, concurrency=2)
            s = await job.run(Selection(all=True, candles=False))
    assert moved == [1]
    assert s.markets_failed == 0
    assert check_trades(db_url, truth) == len(truth.trades())


async def test_markets_met_only_by_the_outage_backfill_get_their_rows(
    db_url: str, tmp_path: Path
) -> None:
    """Markets that opened and settled while the collector was down are met only through their
    backfilled trades: the enrichment task looks them up (live ones in ``/markets``, those
    settled before the cutoff in ``/historical/markets``) and stores their markets, events and
    settlements. Before, they had trades and no market, event or settlement row."""
    async with SimServer(history_config(tmp_path)) as sim:
        truth = truth_of(sim)
        traded = {t.ticker for t in truth.trades()}
        settled = {
            m.ticker
            for m in sim.model.market_list
            if m.ticker in traded and m.status in ("finalized", "determined")
        }
        assert settled
        first = datetime.fromtimestamp(min(t.ts for t in truth.trades()) // 1000, UTC)
        async with backfill_rig(db_url, tmp_path, sim) as (pool, writer, rest):
            catalog, work, metrics, stop = Catalog(), WorkQueues(), Metrics(), asyncio.Event()
            refs = ReferenceSync(rest, writer, catalog, subscribe=work.subscribe_markets)
            task = CollectorBackfill(
                rest=rest, writer=writer, pool=pool, work=work, catalog=catalog,
                metrics=metrics, stop=stop,
            )  # fmt: skip
            await task.backfill(first, datetime.now(UTC))
            assert set(work.enrich_markets) == traded

            async def no_rows() -> None:
                return None

            enrich = Enrichment(
                rest=rest, refs=refs, catalog=catalog, router=Router(), pump_rows=no_rows,
                work=work, metrics=metrics, stop=stop,
            )  # fmt: skip
            running = asyncio.create_task(enrich.run())
            try:
                for _ in range(300):
                    if not work.enrich_markets:
                        break
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                work.enrich_wake.set()
                await running
            assert not work.enrich_markets
            assert not set(work.confirms) & settled  # stored from the view fetched
            await writer.drain()
    with psycopg.connect(db_url) as conn:
        markets = {r[0] for r in conn.execute("SELECT ticker FROM market.markets")}
        events = {r[0] for r in conn.execute("SELECT event_ticker FROM market.events")}
        settlements = {r[0] for r in conn.execute("SELECT market_ticker FROM market.settlements")}
    assert markets >= traded
    assert events >= {m.event.event_ticker for m in sim.model.market_list if m.ticker in traded}
    assert settlements >= settled
