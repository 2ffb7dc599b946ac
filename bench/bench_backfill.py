"""Backfill throughput: ``kalshibook backfill`` against the simulator at Kalshi's Basic-tier rate.

The simulator generates ``--hours`` of compressed history (markets created, traded and settled;
the historical cutoff in the middle) and serves it over a real socket; the backfill (the same
``Backfill`` the CLI runs, writer and all) loads it into a scratch database (created next to
``KALSHIBOOK_DATABASE_URL``'s, migrated, dropped at the end) with the REST client's token bucket at
``--rate`` requests/s (Kalshi Basic: 200 tokens/s at 10 per request = 20/s). Two modes, each
``--repeat`` times on an emptied database: trades only (``--no-candles``) and everything (Kalshi's
1m/1h/1d candles too). From the measured request rate and trades per request it projects what a
year of N markets costs. Rewrites the ``bench:backfill`` section of BENCHMARKS.md.

    python bench/bench_backfill.py --hours 2 --markets 20 --rate 20
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg

from kalshibook.backfill.loader import Backfill, Selection
from kalshibook.backfill.plan import MAX_CANDLES_PER_REQUEST
from kalshibook.backfill.progress import ProgressReport
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.settings import CoreSettings, KalshiSettings, Settings
from kalshibook.sim.server import SimConfig, SimServer
from kalshibook.storage.pool import make_pool
from kalshibook.storage.writer import Writer

from benchlib import median_min_max, run_in_scratch_database, write_section

ROOT = Path(__file__).resolve().parents[1]
TRUNCATE = (
    "TRUNCATE market.trades, market.kalshi_candles, market.backfill_progress, "
    "market.settlements, market.markets, market.events, market.series"
)


async def one_run(url: str, sim: SimServer, rate: float, candles: bool) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TRUNCATE)
    with TemporaryDirectory() as tmp:
        settings = Settings(
            core=CoreSettings(database_url=url, data_dir=tmp),
            kalshi=KalshiSettings(
                rest_url=sim.rest_url, rest_rate=rate, rest_burst=max(1, int(rate))
            ),
        )
        pool = make_pool(settings, min_size=1, max_size=8, name="kb-bench-backfill")
        await pool.open(wait=True, timeout=30)
        try:
            async with Writer(settings, pool) as writer, KalshiRest(settings.kalshi) as rest:
                job = Backfill(
                    rest=rest,
                    writer=writer,
                    pool=pool,
                    report=ProgressReport(io.StringIO(), tty=False),
                    concurrency=4,
                )
                t0 = time.perf_counter()
                s = await job.run(Selection(all=True, candles=candles))
                seconds = time.perf_counter() - t0
                requests, r429 = rest.stats.requests, rest.stats.http_429
        finally:
            await pool.close()
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM market.trades").fetchone()
    stored = int(row[0]) if row else 0
    assert stored == len(sim.model.trades), (stored, len(sim.model.trades))
    return {
        "seconds": seconds,
        "trades": s.trades_fetched,
        "candles": s.candles_fetched,
        "markets": s.markets,
        "requests": requests,
        "http_429": r429,
    }


async def bench(url: str, args: argparse.Namespace) -> str:
    cfg = SimConfig(
        no_auth=True,
        markets=args.markets,
        history_hours=args.hours,
        history_rate=args.history_rate,
        lifetime=args.lifetime,
        autopump=False,
        rate=0.0,
        trade_history=10_000_000,
    )
    async with SimServer(cfg) as sim:
        runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for _ in range(args.repeat):
            for candles in (False, True):
                runs[candles].append(await one_run(url, sim, args.rate, candles))
        n_trades = len(sim.model.trades)
        n_markets = len(sim.model.markets)
    t_only, full = runs[False], runs[True]
    tps = [r["trades"] / r["seconds"] for r in t_only]
    rps = [r["requests"] / r["seconds"] for r in t_only]
    tps_full = [r["trades"] / r["seconds"] for r in full]
    rps_full = [r["requests"] / r["seconds"] for r in full]
    per_req = statistics.median(r["trades"] / r["requests"] for r in t_only)
    rate = statistics.median(rps_full)
    # A year of one market: 1m candles in 5,000-candle requests, 1h and 1d in one or two.
    candle_reqs = -(-525_600 // MAX_CANDLES_PER_REQUEST) + 2 + 1
    year_rows = []
    for n in (100, 1_000, 10_000):
        for trades_per_market in (1_000, 100_000):
            trade_reqs = n * (-(-trades_per_market // 1000) + 1)  # + the other side of the cutoff
            hours_trades = trade_reqs / args.rate / 3600
            hours_all = (trade_reqs + n * candle_reqs) / args.rate / 3600
            year_rows.append(
                f"| {n:,} | {trades_per_market:,} | {hours_trades:,.2f} | {hours_all:,.2f} |"
            )
    year_table = "\n".join(year_rows)
    body = f"""## Backfill (`bench/bench_backfill.py`)

Simulator history of {args.hours:g} h ({n_markets} markets, {n_trades:,} trades, the historical cutoff in the middle), loaded by `Backfill` (`kalshibook backfill --all`, 4 markets at a time) into a scratch database with the REST token bucket at {args.rate:g} requests/s (Kalshi Basic tier); median (min–max) of {args.repeat} runs per mode.
{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} CPUs (shared with other work while measured), Python {platform.python_version()}, simulator, database and backfill on the same machine.

| mode | trades/s | requests/s | seconds | requests | 429s |
|---|---:|---:|---:|---:|---:|
| trades, hierarchy, settlements (`--no-candles`) | {median_min_max(tps)} | {median_min_max(rps)} | {median_min_max([r["seconds"] for r in t_only])} | {median_min_max([r["requests"] for r in t_only])} | {sum(r["http_429"] for r in t_only)} |
| everything (+ Kalshi's 1m/1h/1d candles) | {median_min_max(tps_full)} | {median_min_max(rps_full)} | {median_min_max([r["seconds"] for r in full])} | {median_min_max([r["requests"] for r in full])} | {sum(r["http_429"] for r in full)} |

- The pace is the token bucket's: {rate:.1f} requests/s measured against {args.rate:g} allowed. In this history a trades request brought {per_req:,.0f} trades on average (per market, pages of up to 1,000; the sim's short-lived markets trade little, so most markets fit in one page per side of the cutoff).
- **A year of N markets** at {args.rate:g} requests/s: trades cost one request per 1,000 trades per market, plus one for the other side of the cutoff (the hierarchy, a few requests per 1,000 markets, is left out); Kalshi's candles cost {candle_reqs} requests per market-year (1-minute candles, {MAX_CANDLES_PER_REQUEST:,} per request, dominate). Hours:

| markets | trades per market | hours, trades only | hours, with candles |
|---:|---:|---:|---:|
{year_table}
"""  # noqa: E501
    write_section(args.out, "backfill", body)
    return body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hours", type=float, default=2.0, help="simulated history, hours")
    parser.add_argument("--markets", type=int, default=20, help="open markets at any time")
    parser.add_argument("--history-rate", type=float, default=20.0, help="frames/exchange s")
    parser.add_argument("--lifetime", type=float, default=1800.0, help="market life, seconds")
    parser.add_argument("--rate", type=float, default=20.0, help="REST requests/s allowed")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--database-url", default=os.environ.get("KALSHIBOOK_DATABASE_URL", ""))
    args = parser.parse_args(argv)
    args.repeat = max(1, args.repeat)
    return run_in_scratch_database(
        args.database_url,
        "kb_bench_backfill",
        lambda scratch_url: print(asyncio.run(bench(scratch_url, args))),
    )


if __name__ == "__main__":
    raise SystemExit(main())
