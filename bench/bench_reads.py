"""List endpoints against history size: trades, deltas and settlements pages at 1M and 10M rows.

    python bench/bench_reads.py [--rows 1000000 10000000] [--requests 30] [--replica]

For each size N, a scratch database on ``KALSHIBOOK_DATABASE_URL``'s server gets (server-side
``INSERT ... SELECT``, seeded): N trades of 1,000 markets over a year (daily chunks) plus one
market with 2,000 trades in the last hour; N deltas of 200 markets over 60 days (6-hour chunks),
each market with a snapshot at its start; N / 100 settlements. Then, through the real app
in-process (Litestar ``AsyncTestClient``, auth on: every request authenticated and charged), each
page is requested ``--requests`` times (after one warm-up) at ``limit`` 1, 10, 100 and 1000:

- ``/v1/markets/{recent}/trades`` (a market whose trades are all in the last hour),
- ``/v1/markets/{old}/trades`` (one of the 1,000 markets, from its first trade),
- ``/v1/trades?series_ticker=NOPE`` and ``/v1/markets/NOPE/trades`` (empty answers),
- ``/v1/markets/{book}/deltas`` (from the market's first delta),
- ``/v1/settlements``.

The sizes' requests are interleaved (one on each database in turn), so the machine's drift hits
them alike. With ``--replica`` the data goes into a private primary (``tests/e2e/replica_harness``:
``initdb`` under ``.data/test-replicas/``) and, once loaded, a streaming replica of it
(``pg_basebackup -R``) serves the largest size's pages as one more column (an app with
``KALSHIBOOK_REPLICA_URLS`` and fallback ``unavailable``, so no page can come from the primary).
It reports p50/p99 per size and the ratio of the medians 10M/1M (target <= 1.5: the cost follows
the page, not the history), and rewrites the ``<!-- bench:reads -->`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import replica_harness as harness  # type: ignore[import-not-found]  # noqa: E402

from kalshibook.storage import migrate  # noqa: E402

from benchlib import (  # noqa: E402
    BENCHMARKS_MD,
    create_database,
    default_url,
    drop_database,
    pct_floor,
    write_section,
)

LIMITS = (1, 10, 100, 1000)
REPLICA_TAG = "bench-reads"
LOAD_BATCH = 100_000
"""Generated rows per INSERT (one transaction each)."""
PRIMARY_SETTINGS = {"shared_buffers": "512MB", "max_wal_size": "4GB", "work_mem": "16MB"}
"""The private primary of ``--replica`` (the replica inherits them): the test harness's small
defaults are for many short-lived clusters, not for 10M-row tables."""

SEED = """
SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs
WHERE job_id >= 1000;
INSERT INTO market.series (ticker, raw) VALUES ('S', '{}');
INSERT INTO market.events (event_ticker, series_ticker, raw) VALUES ('S-E', 'S', '{}');
INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)
SELECT 'M-' || k, 'S-E', 'S', 'settled', '{}' FROM generate_series(0, 999) k;
INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)
SELECT 'B-' || k, 'S-E', 'S', 'active', '{}' FROM generate_series(0, 199) k;
INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)
VALUES ('RECENT', 'S-E', 'S', 'active', '{}');
"""
TRADES = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '366 days' + (k::float8 / %(n)s) * INTERVAL '365 days', gen_random_uuid(),
       'M-' || (k %% 1000), 0.5, 0.5, 1, 'ws', now()
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) k;
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
SELECT now() - INTERVAL '1 hour' + k * INTERVAL '1 second', gen_random_uuid(), 'RECENT', 0.5,
       0.5, 1, 'ws', now()
FROM generate_series(1, 2000) k;
"""
BOOKS = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
SELECT now() - INTERVAL '61 days', 'B-' || k, now(), 'snapshot', 1, 1, 0, '[]', '[]'
FROM generate_series(0, 199) k;
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT now() - INTERVAL '61 days' + (k::float8 / %(n)s) * INTERVAL '60 days', 'B-' || (k %% 200),
       now(), 'yes', 0.5, 1, 1, 1, k
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) k;
SELECT market.rebuild_delta_extents();
"""
SETTLEMENTS = """
INSERT INTO market.settlements (market_ticker, event_ticker, series_ticker, result,
                                settlement_value, settled_at, source, confirmed, raw)
SELECT 'X-' || k, 'S-E', 'S', 'yes', 1, now() - k * INTERVAL '1 minute', 'rest', true, '{}'
FROM generate_series(1, %(n)s::bigint) k;
ANALYZE
"""


def load(server: str, rows: int) -> str:
    url = create_database(server, f"kb_bench_reads_{rows}", replace=True)
    migrate.upgrade(url)
    t = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED)
        for script, n in ((TRADES, rows), (BOOKS, rows), (SETTLEMENTS, max(1, rows // 100))):
            for statement in script.split(";\n"):
                if not statement.strip():
                    continue
                if "%(lo)s" not in statement:
                    conn.execute(statement, {"n": n} if "%(n)s" in statement else None)
                    continue
                # one transaction per batch, as the collector commits: the extents trigger
                # (0006) updates a market's row about once per hour of trades, and one huge
                # transaction would leave every such row a chain of versions to walk
                for lo in range(1, n + 1, LOAD_BATCH):
                    hi = min(n, lo + LOAD_BATCH - 1)
                    conn.execute(statement, {"n": n, "lo": lo, "hi": hi})
    print(f"loaded {rows:,} rows per table in {time.perf_counter() - t:.0f} s", flush=True)
    return url


CASES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("recent market trades", "/v1/markets/RECENT/trades", {}),
    ("old market trades", "/v1/markets/M-7/trades", {}),
    ("series NOPE trades", "/v1/trades", {"series_ticker": "NOPE"}),
    ("unknown market trades", "/v1/markets/NOPE/trades", {}),
    ("market deltas", "/v1/markets/B-7/deltas", {}),
    ("settlements", "/v1/settlements", {}),
)


@dataclass(frozen=True)
class Target:
    """One column of the table: an app on a database (its reads on a replica when ``replica``)."""

    label: str
    url: str
    replica: str | None = None


async def _healthy_replica(client: Any) -> None:
    """Wait until the app counts its replica healthy (its first lag reading)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = await client.get("/v1/status")
        replicas = r.json()["data"].get("replicas") or []
        if replicas and all(state["healthy"] for state in replicas):
            return
        await asyncio.sleep(0.5)
    raise SystemExit("the replica never became healthy")


async def measure(targets: list[Target], requests: int) -> dict[tuple[str, str, int], list[float]]:
    """Every page of :data:`CASES` at every limit on every target, the targets' requests
    interleaved (one on each in turn) so that the machine's drift hits them alike."""
    from litestar.testing import AsyncTestClient

    from kalshibook.api.app import create_app
    from kalshibook.gctune import tune_gc
    from kalshibook.settings import ApiSettings, CoreSettings, ReplicaSettings, Settings
    from kalshibook.storage.api_keys import create_key

    out: dict[tuple[str, str, int], list[float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for target in targets:
            key = create_key(target.url, name="bench reads", credits=10**9).key
            settings = Settings(
                core=CoreSettings(database_url=target.url),
                api=ApiSettings(rate_limit_per_second=1e9, max_limit=1000),
                replica=ReplicaSettings(urls=target.replica or "", fallback="unavailable"),
            )
            client = await stack.enter_async_context(AsyncTestClient(app=create_app(settings)))
            client.headers["Authorization"] = f"Bearer {key}"
            if target.replica:
                await _healthy_replica(client)
            clients.append((target, client))
        tune_gc()  # as `kalshibook serve` does once its app is built
        for name, path, params in CASES:
            for limit in LIMITS:
                q = {**params, "limit": str(limit)}
                for target, client in clients:
                    r = await client.get(path, params=q)
                    if r.status_code not in (200, 404):
                        raise SystemExit(
                            f"{target.label} {path} {q}: {r.status_code} {r.text[:200]}"
                        )
                    out[target.label, name, limit] = []
                for _ in range(requests):
                    for target, client in clients:
                        t = time.perf_counter()
                        r = await client.get(path, params=q)
                        out[target.label, name, limit].append((time.perf_counter() - t) * 1000)
                        if r.status_code not in (200, 404):
                            raise SystemExit(f"{target.label} {path}: {r.status_code}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--requests", type=int, default=30)
    p.add_argument(
        "--replica",
        action="store_true",
        help="load into a private primary with a streaming replica (pg_basebackup -R) and also "
        "serve the largest size's pages from the replica",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch databases")
    p.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = p.parse_args(argv)
    sizes = sorted(set(args.rows))
    primary = replica = None
    if args.replica:
        harness.remove(REPLICA_TAG)
        primary = harness.start_primary(REPLICA_TAG)
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            for setting, value in PRIMARY_SETTINGS.items():
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(setting), sql.Literal(value)
                    )
                )
        primary.stop()
        primary.start()
        server = primary.url()
    else:
        server = default_url()
    urls: dict[int, str] = {}
    try:
        for rows in sizes:
            urls[rows] = load(server, rows)
        targets = [Target(f"{n:,}", urls[n]) for n in sizes]
        if primary is not None:
            t = time.perf_counter()
            replica = harness.start_replica(primary, REPLICA_TAG)
            print(f"replica ready in {time.perf_counter() - t:.0f} s", flush=True)
            db = urls[sizes[-1]].rsplit("/", 1)[1]
            targets.append(Target(f"{sizes[-1]:,} replica", urls[sizes[-1]], replica.url(db)))
        results = asyncio.run(measure(targets, args.requests))
    finally:
        if replica is not None:
            replica.stop()
        if primary is not None:
            primary.stop()
            harness.remove(REPLICA_TAG)
        elif not args.keep:
            for url in urls.values():
                drop_database(server, url.rsplit("/", 1)[1])
    text = report(targets, sizes, results, args.requests)
    print(text)
    if not args.no_write:
        write_section(BENCHMARKS_MD, "reads", text)
    return 0


def report(
    targets: list[Target],
    sizes: list[int],
    results: dict[tuple[str, str, int], list[float]],
    requests: int,
) -> str:
    head = " | ".join(f"{t.label} p50 / p99 ms" for t in targets)
    small, large = f"{sizes[0]:,}", f"{sizes[-1]:,}"
    lines = [
        "## List endpoints vs history size (`bench/bench_reads.py`)",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{datetime.now(UTC):%Y-%m-%d}, load average {os.getloadavg()[0]:.1f} at the end; "
        f"in-process app (auth and credits on), {requests} requests per cell after a warm-up, "
        "the columns' requests interleaved (one on each in turn). Rows per table: trades over a "
        "year (1,000 markets + one with 2,000 trades in the last hour), deltas over 60 days "
        "(200 markets), settlements = rows / 100. Target: median "
        f"{large} / {small} <= 1.5."
        + (
            f" *replica*: the {large}-row database read through the API from a streaming "
            "replica (`pg_basebackup -R`, `KALSHIBOOK_REPLICA_URLS`, fallback `unavailable`: "
            "every page came from the replica; credits charged on the primary)."
            if any(t.replica for t in targets)
            else ""
        ),
        "",
        f"| page | limit | {head} | ratio {large} / {small} |",
        "|---|---:|" + "---:|" * len(targets) + "---:|",
    ]
    for name, _path, _params in CASES:
        for limit in LIMITS:
            cells = []
            for t in targets:
                s = results[t.label, name, limit]
                cells.append(f"{statistics.median(s):.1f} / {pct_floor(s, 0.99):.1f}")
            ratio = statistics.median(results[large, name, limit]) / max(
                1e-9, statistics.median(results[small, name, limit])
            )
            lines.append(f"| {name} | {limit} | {' | '.join(cells)} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
