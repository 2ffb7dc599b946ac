"""API benchmark: a 1,000-row trades page and the book at an instant, against a constant route.

    python bench/bench_api.py [--database-url URL] [--deltas 1000000 10000000] [--duration 10]

What it does, on this machine, over loopback:

1. creates a scratch database on the server of ``--database-url`` (default
   ``KALSHIBOOK_DATABASE_URL``, else ``.data/database_url``), migrates it and fills it with
   generated rows (``generate_series``): ``--trades`` trades of one market, and an order-book
   history of one market with a snapshot, N deltas (1 every 100 ms) and a checkpoint snapshot
   every ``--checkpoint-every`` deltas, as the collector writes them;
2. runs the API (``create_app``, auth on, a real key: every request is authenticated and charged)
   and a minimal Litestar app returning a constant, each in its own uvicorn process;
3. drives them with ``wrk`` (or an httpx load generator when wrk is not installed): requests/s,
   p50 and p99 latency, and the ratio to the constant route;
4. for the 1,000-row page, one client: the endpoint through one keep-alive ``http.client``
   connection, interleaved with the bare query of the same rows as text on one psycopg
   connection (:data:`BARE_TRADES`), and that query's own rate under the same connections
   (``pgbench``, when installed);
5. measures the order book at the end of the history for each N, with the checkpoints and then
   without them (deleted), which shows that checkpoints bound the replay; one client too, and on
   the Community edition again with every book chunk compressed; at the first N also under 1, 2
   and 4 connections (:data:`SWEEP`), which shows where the machine saturates;
6. rewrites its section of BENCHMARKS.md between ``<!-- bench:api -->`` and ``<!-- /bench:api -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import urlsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchlib import (  # noqa: E402
    BENCHMARKS_MD,
    create_database,
    default_url,
    drop_database,
    free_port,
    pct_round,
    stop_process,
    write_section,
)
from constant_app import ConstantServer  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BOOK = "BENCH-BOOK"
TRADES = "BENCH-TRADES"
DELTA_STEP = timedelta(milliseconds=100)
SWEEP = (1, 2, 4)
"""Connections the book is also loaded with (below ``--connections``), at the first size."""
LEVELS = 49

# -- data ----------------------------------------------------------------------------------------

# Community edition: the scratch database's policy jobs (ids >= 1000) are paused, so that no
# compression policy compresses the generated (months old) trades at some moment of the run: the
# trades page is measured on uncompressed chunks, then explicitly on compressed ones.
SEED_REFERENCE = """
SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs
WHERE job_id >= 1000;
INSERT INTO market.series (ticker, raw) VALUES ('BENCH', '{}');
INSERT INTO market.events (event_ticker, series_ticker, raw) VALUES ('BENCH-EV', 'BENCH', '{}');
INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw)
VALUES ('BENCH-TRADES', 'BENCH-EV', 'BENCH', 'active', '{}'),
       ('BENCH-BOOK', 'BENCH-EV', 'BENCH', 'active', '{}');
"""

# Numbers have the scales the collector stores from Kalshi's strings ("0.5600" dollars, "12.00"
# counts); a bare ``/ 100.0`` has 20 decimal places.
SEED_TRADES = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,
                           taker_outcome_side, taker_book_side, source, received_at)
SELECT %(t0)s + i * interval '250 milliseconds', gen_random_uuid(), 'BENCH-TRADES',
       round((1 + i %% 99) / 100.0, 4), round(1 - (1 + i %% 99) / 100.0, 4),
       round(1 + (i %% 1000) / 100.0, 2),
       CASE WHEN i %% 2 = 0 THEN 'yes' ELSE 'no' END, 'bid', 'ws',
       %(t0)s + i * interval '250 milliseconds'
FROM generate_series(0, %(n)s::bigint - 1) AS i
"""

SEED_BOOK_SNAPSHOT = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
VALUES (%(t0)s, 'BENCH-BOOK', %(t0)s, 'snapshot', 1, 1, 1, %(levels)s::jsonb, %(levels)s::jsonb)
"""

# Delta k (seq k + 2) belongs to pair k/2: +1.00 then -1.00 at one level, so the book after an
# even number of deltas equals the first snapshot, which is what the checkpoints then store.
SEED_DELTAS = """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT %(t0)s + k * %(step)s, 'BENCH-BOOK', %(t0)s + k * %(step)s,
       CASE WHEN (k / 2) %% 2 = 0 THEN 'yes' ELSE 'no' END,
       round((1 + (k / 4) %% 49) / 100.0, 4),
       CASE WHEN k %% 2 = 0 THEN 1.00 ELSE -1.00 END,
       1, 1, k + 2
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS k
"""

SEED_CHECKPOINTS = """
INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, seq,
                                        yes_bids, no_bids)
SELECT %(t0)s + (s - 2) * %(step)s, 'BENCH-BOOK', %(t0)s + (s - 2) * %(step)s, 'checkpoint',
       1, 1, s, %(levels)s::jsonb, %(levels)s::jsonb
FROM generate_series(%(every)s::bigint + 1, %(n)s::bigint + 1, %(every)s::bigint) AS s
"""

# Community edition: the same history with every chunk of the book tables compressed (what the
# compression policies do to data older than a couple of days), then back for the next size.
COMPRESS_BOOK = """
SELECT count(compress_chunk(c, true))
FROM (SELECT show_chunks('market.orderbook_deltas') UNION ALL
      SELECT show_chunks('market.orderbook_snapshots')) AS chunks(c)
"""
DECOMPRESS_BOOK = """
SELECT count(decompress_chunk(c, true))
FROM (SELECT show_chunks('market.orderbook_deltas') UNION ALL
      SELECT show_chunks('market.orderbook_snapshots')) AS chunks(c)
"""

ALONE_ROUNDS = 200
"""Sequential requests of one client (the service time of one request)."""

BARE_TRADES: LiteralString = """
SELECT t.ts::text, t.created_time::text, t.exchange_seq::text, t.trade_id::text, t.market_ticker,
       t.yes_price::text, t.no_price::text, t.count::text, t.taker_outcome_side,
       t.taker_book_side, t.is_block_trade::text, t.source
FROM market.trades t
WHERE t.market_ticker = %(ticker)s AND t.ts >= %(start)s AND t.ts < %(end)s
ORDER BY t.ts, t.exchange_seq, t.trade_id
LIMIT 1001
"""
"""The rows of the 1,000-row page (plus the one that tells ``has_more``), every column as text,
straight from the table, bounded like the endpoint's first time window (one hour, which holds
them): the floor the endpoint is compared with."""

COMPRESS_TRADES = "SELECT count(compress_chunk(c, true)) FROM show_chunks('market.trades') c"
DECOMPRESS_TRADES = "SELECT count(decompress_chunk(c, true)) FROM show_chunks('market.trades') c"

DROP_CHECKPOINTS = """
DELETE FROM market.orderbook_snapshots WHERE market_ticker = 'BENCH-BOOK' AND source = 'checkpoint'
"""


def levels_json() -> str:
    return "[" + ",".join(f"[{(i + 1) / 100:.2f},100.00]" for i in range(LEVELS)) + "]"


# -- servers -------------------------------------------------------------------------------------


def serve(port: int, url: str) -> None:
    """Child process: run the API under uvicorn (the constant app: bench/constant_app.py)."""
    import logging

    import uvicorn

    from kalshibook.api.app import create_app
    from kalshibook.settings import ApiSettings, CoreSettings, Settings

    logging.basicConfig(level=logging.WARNING)

    settings = Settings(
        core=CoreSettings(database_url=url),
        api=ApiSettings(rate_limit_per_second=1e9, max_limit=1000, max_concurrent_per_key=1000),
    )
    app = create_app(settings)
    from kalshibook.gctune import tune_gc

    tune_gc()  # as `kalshibook serve` does once its app is built
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Server:
    """The API (:func:`serve`) in its own process on a free local port."""

    def __init__(self, url: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                "--port",
                str(self.port),
                "--database-url",
                url,
            ],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit("the API server did not start")

    def stop(self) -> None:
        stop_process(self.proc)


# -- load ----------------------------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(url: str, headers: dict[str, str], duration: int, connections: int) -> Result:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "30s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    return Result(rps, p50, p99, total, errors, f"wrk -t1 -c{connections}")


async def _httpx_load(
    url: str, headers: dict[str, str], duration: float, connections: int
) -> Result:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = await client.get(url)
                latencies.append((time.perf_counter() - t) * 1000)
                errors += r.status_code >= 300

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return Result(
        len(latencies) / elapsed, q[49], q[98], len(latencies), errors, f"httpx x{connections}"
    )


def load(url: str, headers: dict[str, str], duration: int, connections: int) -> Result:
    if shutil.which("wrk"):
        return run_wrk(url, headers, duration, connections)
    return asyncio.run(_httpx_load(url, headers, duration, connections))


def pgbench_rate(
    url: str,
    statements: list[tuple[LiteralString, dict[str, Any]]],
    duration: int,
    connections: int,
) -> float:
    """Transactions/s of ``statements`` (parameters inlined as literals, run one after the other
    as one pgbench transaction) over ``connections`` connections for ``duration`` s, with the
    API's connection settings: what the database alone sustains."""
    if shutil.which("pgbench") is None:
        return float("nan")
    with psycopg.connect(url) as conn:
        mogrify = psycopg.ClientCursor(conn).mogrify
        lines = [" ".join(mogrify(q, params).split()) + ";\n" for q, params in statements]
    script = ROOT / ".data" / "bench-bare.sql"
    script.parent.mkdir(exist_ok=True)
    script.write_text("".join(lines))
    from kalshibook.api.app import CONNECTION_OPTIONS

    env = {**os.environ, "PGOPTIONS": CONNECTION_OPTIONS}
    try:
        out = subprocess.run(
            ["pgbench", "-n", "-M", "extended", "-c", str(connections), "-j", "1",
             "-T", str(duration), "-f", str(script), url],
            capture_output=True, text=True, check=True, env=env,
        ).stdout  # fmt: skip
    finally:
        script.unlink(missing_ok=True)
    return float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]


def key_id_of(url: str, key_prefix: str) -> int:
    """The id of the bench's API key (the charge and usage statements take it)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT id FROM private.api_keys WHERE prefix = %s", (key_prefix,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def endpoint_statements(
    url: str, key_prefix: str, bare_params: dict[str, Any]
) -> list[tuple[LiteralString, dict[str, Any]]]:
    """The statements one trades-page request runs, with the values the bench's request gives
    them: the charge, the extent look-up and the first window (the page fills it), the usage row
    (pgbench reads ``:name`` as a variable, so the route's template is given without one)."""
    from kalshibook.storage import api_keys, trade_reads

    key_id = key_id_of(url, key_prefix)
    lo = bare_params["start"]
    window = {"ticker": TRADES, "lo": lo, "hi": bare_params["end"], "limit": 1001}
    window |= {"c_ts": None, "c_seq": None, "c_id": None}
    usage = {"key_id": key_id, "endpoint": "/v1/markets/TICKER/trades", "cost": 2}
    usage |= {"refund": 0, "extra": 0, "status": 200, "request_id": "bench"}
    return [
        (api_keys.CHARGE, {"id": key_id, "cost": 2}),
        (trade_reads.EXTENT_OF, {"tickers": [TRADES]}),
        (trade_reads.TRADES_OF_MARKET, window),
        (api_keys.RECORD_USAGE, usage),
    ]


def book_statements(
    url: str, key_prefix: str, at: datetime
) -> list[tuple[LiteralString, dict[str, Any]]]:
    """The statements one order-book request at ``at`` runs in the bench's history: the charge,
    the latest snapshot and gap (the day before ``at``), the snapshot epoch's deltas up to ``at``
    (at most a checkpoint interval), the usage row. The deltas floor is cached by the API (read
    at most every 5 s) and the snapshot is within a day of ``at``, so nothing else runs."""
    from kalshibook.storage import api_keys, book_reads

    key_id = key_id_of(url, key_prefix)
    with psycopg.connect(url) as conn:
        base = {"ticker": BOOK, "at": at, "since": at - book_reads.SNAPSHOT_WINDOW}
        snap = conn.execute(book_reads.BOOK_BASE, base).fetchone()
    assert snap is not None
    assert snap[0] is not None, "the bench's book must have a snapshot within a day"
    snap_ts, epoch, seq = snap[0], snap[1], snap[2]
    deltas = {"ticker": BOOK, "epoch": epoch, "at": at, "limit": book_reads.REPLAY_BATCH}
    deltas |= {"from_ts": snap_ts - book_reads.DELTA_SLACK, "after_seq": seq}
    usage = {"key_id": key_id, "endpoint": "/v1/markets/TICKER/orderbook", "cost": 1}
    usage |= {"refund": 0, "extra": 0, "status": 200, "request_id": "bench"}
    return [
        (api_keys.CHARGE, {"id": key_id, "cost": 1}),
        (book_reads.BOOK_BASE, base),
        (book_reads.BOOK_DELTAS, deltas),
        (api_keys.RECORD_USAGE, usage),
    ]


class OneClient:
    """One keep-alive HTTP/1.1 connection of the standard library's lean client (httpx costs
    about a millisecond of its own per request): the server's service time, body read in full."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.headers = headers
        self.conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=60
        )

    def get(self) -> tuple[float, int]:
        """One request: (latency ms, status)."""
        t = time.perf_counter()
        self.conn.request("GET", self.target, headers=self.headers)
        response = self.conn.getresponse()
        response.read()
        return (time.perf_counter() - t) * 1000, response.status

    def times(self, n: int) -> list[float]:
        out = []
        for _ in range(n):
            ms, status = self.get()
            if status != 200:
                raise SystemExit(f"{self.target}: HTTP {status}")
            out.append(ms)
        return out

    def close(self) -> None:
        self.conn.close()


def one_client(url: str, headers: dict[str, str], n: int) -> list[float]:
    client = OneClient(url, headers)
    try:
        return client.times(n)
    finally:
        client.close()


def sequential(
    url: str, headers: dict[str, str], n: int
) -> tuple[list[float], dict[str, Any], int]:
    """``n`` requests one after the other: latencies (ms), the last body and status."""
    times: list[float] = []
    body: dict[str, Any] = {}
    status = 0
    with httpx.Client(headers=headers, timeout=600) as client:
        for _ in range(n):
            t = time.perf_counter()
            r = client.get(url)
            times.append((time.perf_counter() - t) * 1000)
            status, body = r.status_code, r.json()
            if status != 200:
                break
    return times, body, status


# -- report --------------------------------------------------------------------------------------


def one_client_page(
    bench_url: str,
    trades_url: str,
    auth: dict[str, str],
    same_size: OneClient,
    bare_params: dict[str, Any],
) -> tuple[list[float], list[float], list[float]]:
    """``ALONE_ROUNDS`` rounds of the trades page, the bare query of its rows and a body of its
    size from the constant route, interleaved (drift hits all three alike): their latencies, ms."""
    page_alone, bare_alone, bytes_alone = [], [], []
    client = OneClient(trades_url, auth)
    with psycopg.connect(bench_url, autocommit=True) as conn:
        for _ in range(ALONE_ROUNDS):
            t = time.perf_counter()
            rows = conn.execute(BARE_TRADES, bare_params).fetchall()
            bare_alone.append((time.perf_counter() - t) * 1000)
            assert len(rows) == 1001
            ms, status = client.get()
            page_alone.append(ms)
            assert status == 200, status
            ms, status = same_size.get()
            bytes_alone.append(ms)
            assert status == 200, status
    client.close()
    return page_alone, bare_alone, bytes_alone


def page_rows(
    label: str, page: list[float], bare: list[float], same_size: list[float]
) -> list[str]:
    """The one-client table's rows for one state of the trades' chunks."""
    bare_p50 = statistics.median(bare)
    return [
        f"| {label}endpoint (auth, charge, page, JSON, HTTP) | {statistics.median(page):.2f} | "
        f"{pct_round(page, 0.99):.2f} |",
        f"| {label}bare query: the same 1,001 rows, every column as text | "
        f"{bare_p50:.2f} | {pct_round(bare, 0.99):.2f} |",
        f"| {label}HTTP alone: a constant route sending a body of the page's size (no auth, no "
        f"database, no JSON) | {statistics.median(same_size):.2f} | "
        f"{pct_round(same_size, 0.99):.2f} |",
        f"| {label}**endpoint / bare query** (medians) | "
        f"**{statistics.median(page) / bare_p50:.2f}** | |",
        f"| {label}(bare query + HTTP alone) / bare query (medians): the ratio before any of the "
        f"endpoint's own work | {(bare_p50 + statistics.median(same_size)) / bare_p50:.2f} | |",
    ]


def fmt(r: Result) -> str:
    return f"{r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--database-url", default=None)
    p.add_argument("--deltas", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--trades", type=int, default=200_000)
    p.add_argument("--duration", type=int, default=10, help="seconds per load run")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--keep", action="store_true", help="keep the scratch database")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    url = args.database_url or default_url()
    if args.serve:
        serve(args.port, url)
        return 0

    sizes = sorted(set(args.deltas))
    db_name = f"kb_bench_api_{os.getpid()}"
    print(f"scratch database {db_name}", flush=True)
    bench_url = create_database(url, db_name, replace=True)
    from kalshibook.storage import migrate

    migrate.upgrade(bench_url)
    servers: list[Server | ConstantServer] = []
    try:
        from kalshibook.api.auth import create_key

        with psycopg.connect(bench_url, autocommit=True) as conn:
            pg = conn.execute("SHOW server_version").fetchone()
            ts_version = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
            pg_text = pg[0] if pg else "?"
            ts_text = ts_version[0] if ts_version else "?"
            license_row = conn.execute("SELECT current_setting('timescaledb.license')").fetchone()
            community = license_row == ("timescale",)
            server_version = f"PostgreSQL {pg_text}, TimescaleDB {ts_text}"
            server_version += " Community" if community else " Apache-2"
            conn.execute(SEED_REFERENCE)
            t = time.perf_counter()
            conn.execute(SEED_TRADES, {"t0": T0, "n": args.trades})
            conn.execute(SEED_BOOK_SNAPSHOT, {"t0": T0, "levels": levels_json()})
            conn.execute("ANALYZE")
            print(f"{args.trades:,} trades in {time.perf_counter() - t:.1f} s", flush=True)
        issued = create_key(bench_url, name="bench", credits=10**15)
        auth = {"Authorization": f"Bearer {issued.key}"}

        api = Server(bench_url)
        servers.append(api)
        constant = ConstantServer()
        servers.append(constant)

        d, c = args.duration, args.connections
        base = load(f"{constant.base}/constant", {}, d, c)
        print(f"constant: {fmt(base)}", flush=True)
        trades_start = (T0 + timedelta(minutes=60)).isoformat().replace("+00:00", "Z")
        trades_url = f"{api.base}/v1/markets/{TRADES}/trades?limit=1000&start={trades_start}"
        check = httpx.get(trades_url, headers=auth, timeout=30).json()
        assert len(check["data"]) == 1000, "the trades page must hold 1,000 rows"
        trades = load(trades_url, auth, d, c)
        print(f"trades page: {fmt(trades)}", flush=True)
        # one client: the endpoint's service time beside the bare query of the same rows
        same_size = OneClient(
            f"{constant.base}/bytes?n={len(httpx.get(trades_url, headers=auth).content)}", {}
        )
        bare_params = {
            "ticker": TRADES,
            "start": T0 + timedelta(minutes=60),
            "end": T0 + timedelta(minutes=120),
        }
        page_alone, bare_alone, bytes_alone = one_client_page(
            bench_url, trades_url, auth, same_size, bare_params
        )
        packed: tuple[list[float], list[float], list[float]] | None = None
        if community:  # the same page once the trades' chunks are compressed
            with psycopg.connect(bench_url, autocommit=True) as conn:
                conn.execute(COMPRESS_TRADES)
                conn.execute("ANALYZE market.trades")
            packed = one_client_page(bench_url, trades_url, auth, same_size, bare_params)
            with psycopg.connect(bench_url, autocommit=True) as conn:
                conn.execute(DECOMPRESS_TRADES)
                conn.execute("ANALYZE market.trades")
        same_size.close()
        bare_load = pgbench_rate(bench_url, [(BARE_TRADES, bare_params)], d, c)
        print(f"bare query under {c} connections (pgbench): {bare_load:,.0f} queries/s")
        own_sql = endpoint_statements(bench_url, issued.prefix, bare_params)
        sql_load = pgbench_rate(bench_url, own_sql, d, c)
        print(f"the endpoint's statements under {c} connections (pgbench): {sql_load:,.0f}/s")
        for state, (page, bare, same) in (
            (("", (page_alone, bare_alone, bytes_alone)), ("compressed ", packed))
            if packed
            else (("", (page_alone, bare_alone, bytes_alone)),)
        ):
            print(
                f"{state}trades page one client: p50 {statistics.median(page):.2f} ms, bare "
                f"query p50 {statistics.median(bare):.2f} ms, the same bytes from a constant "
                f"route p50 {statistics.median(same):.2f} ms",
                flush=True,
            )

        book_rows: list[str] = []
        sweep: dict[int, Result] = {}
        headline: Result | None = None
        book_sql = float("nan")
        loaded = 0
        with psycopg.connect(bench_url, autocommit=True) as conn:
            for n in sizes:
                t = time.perf_counter()
                conn.execute(
                    SEED_DELTAS,
                    {"t0": T0, "step": DELTA_STEP, "first": loaded, "last": n - 1},
                )
                conn.execute(DROP_CHECKPOINTS)
                conn.execute(
                    SEED_CHECKPOINTS,
                    {
                        "t0": T0,
                        "step": DELTA_STEP,
                        "every": args.checkpoint_every,
                        "n": n,
                        "levels": levels_json(),
                    },
                )
                # loaded by SQL, not by the collector's writer: the delta extents (0009) are
                # rebuilt, as `kalshibook rebuild-extents` does after such a load
                conn.execute("SELECT market.rebuild_delta_extents()")
                conn.execute("VACUUM ANALYZE market.orderbook_deltas")
                conn.execute("VACUUM ANALYZE market.orderbook_snapshots")
                loaded = n
                print(f"{n:,} deltas loaded in {time.perf_counter() - t:.1f} s", flush=True)
                # the worst instant for the checkpointed replay: the last delta before the last
                # checkpoint (every - 1 deltas to replay); the no-checkpoint replay is ~n there
                every = args.checkpoint_every
                last_cp = 1 + every * (n // every)
                k = max(0, last_cp - 3)
                at = (T0 + k * DELTA_STEP).isoformat().replace("+00:00", "Z")
                book_url = f"{api.base}/v1/markets/{BOOK}/orderbook?at={at}"
                _, body, status = sequential(book_url, auth, 1)
                assert status == 200, body
                replayed_cp = body["data"]["deltas_applied"]
                with_cp = load(book_url, auth, d, c)
                if headline is None:
                    headline = with_cp
                    at_dt = datetime.fromisoformat(at.replace("Z", "+00:00"))
                    book_sql = pgbench_rate(
                        bench_url, book_statements(bench_url, issued.prefix, at_dt), d, c
                    )
                    print(
                        f"the book's statements under {c} connections (pgbench): {book_sql:,.0f}/s",
                        flush=True,
                    )
                    for k_conns in SWEEP:  # where the machine saturates: latency vs connections
                        if k_conns < c:
                            sweep[k_conns] = load(book_url, auth, d, k_conns)
                            print(f"book @ {k_conns} connections: {fmt(sweep[k_conns])}")
                    sweep[c] = with_cp
                plain_alone = one_client(book_url, auth, ALONE_ROUNDS)
                print(f"book @ {n:,} with checkpoints: {fmt(with_cp)}", flush=True)
                conn.execute(DROP_CHECKPOINTS)
                times, body, status = sequential(book_url, auth, 3 if n <= 2_000_000 else 1)
                no_cp = statistics.median(times)
                if status == 200:
                    replayed = f"{body['data']['deltas_applied']:,}"
                    outcome = f"{no_cp:,.0f} (n={len(times)})"
                else:  # e.g. the API's 30 s statement timeout: a 503 problem
                    replayed = f"~{n:,}"
                    outcome = f"HTTP {status} after {no_cp:,.0f} ({body.get('detail', '')})"
                print(f"book @ {n:,} without checkpoints: {outcome}", flush=True)
                conn.execute(
                    SEED_CHECKPOINTS,
                    {
                        "t0": T0,
                        "step": DELTA_STEP,
                        "every": args.checkpoint_every,
                        "n": n,
                        "levels": levels_json(),
                    },
                )
                compressed = "n/a (Apache-2 edition)"
                if community:
                    _, plain_body, _ = sequential(book_url, auth, 1)
                    conn.execute(COMPRESS_BOOK)
                    conn.execute("ANALYZE market.orderbook_deltas, market.orderbook_snapshots")
                    _, packed_body, status = sequential(book_url, auth, 1)
                    assert status == 200, packed_body
                    same = packed_body["data"] == plain_body["data"]
                    assert same, "the book read from compressed chunks differs"
                    comp = load(book_url, auth, d, c)
                    alone = one_client(book_url, auth, ALONE_ROUNDS)  # one client: service time
                    compressed = (
                        f"{comp.rps:,.0f} | {comp.p50_ms:.2f} | {comp.p99_ms:.2f} | "
                        f"{statistics.median(alone):.2f} / {pct_round(alone, 0.99):.2f}"
                    )
                    print(f"book @ {n:,} compressed, with checkpoints: {fmt(comp)}", flush=True)
                    conn.execute(DECOMPRESS_BOOK)
                else:
                    compressed += " | | | "
                book_rows.append(
                    f"| {n:,} | {replayed_cp} | {with_cp.rps:,.0f} | {with_cp.p50_ms:.2f} | "
                    f"{with_cp.p99_ms:.2f} | {statistics.median(plain_alone):.2f} / "
                    f"{pct_round(plain_alone, 0.99):.2f} | {compressed} | {replayed} | {outcome} |"
                )
        assert headline is not None
        for r in (base, trades, headline):
            if r.errors:
                raise SystemExit(f"{r.errors} non-2xx responses during a load run")
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            drop_database(url, db_name)

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    machine += f", {server_version}"
    every = args.checkpoint_every
    # never the database URL (it holds a password) in BENCHMARKS.md
    given = list(argv if argv is not None else sys.argv[1:])
    run = " ".join(
        [
            "python bench/bench_api.py",
            *(
                "URL"
                if i > 0 and given[i - 1] == "--database-url"
                else ("--database-url=URL" if a.startswith("--database-url=") else a)
                for i, a in enumerate(given)
            ),
        ]
    )
    lines = [
        "## API (`bench/bench_api.py`)",
        "",
        f"Loopback, one uvicorn worker per server process, load by {base.tool} for {d} s per "
        f"row, on {machine}; load generator, API and PostgreSQL share the machine. The API runs "
        "with auth on: each request is authenticated with a real key and charged (one "
        "`UPDATE … RETURNING`, beside the handler once the key's balance is known, plus a usage "
        "row after the response). Generated data: "
        f"{args.trades:,} trades in one market; an order-book history of one market with one "
        f"delta every 100 ms and a checkpoint snapshot every {every} deltas.",
        f"Run: `{run}` ({datetime.now(UTC):%Y-%m-%d}).",
        "",
        "| route | req/s | p50 ms | p99 ms | vs constant |",
        "|---|---:|---:|---:|---:|",
        f"| minimal Litestar route returning a constant | {fmt(base)} | 1.00 |",
        f"| `GET /v1/markets/{{ticker}}/trades?limit=1000` (1,000-row page) | {fmt(trades)} "
        f"| {trades.rps / base.rps:.3f} |",
        f"| `GET /v1/markets/{{ticker}}/orderbook?at=` ({sizes[0]:,} deltas in history, "
        f"checkpoints) | {fmt(headline)} | {headline.rps / base.rps:.3f} |",
        "",
        f"One client ({ALONE_ROUNDS} sequential requests on one keep-alive connection of "
        "Python's `http.client`, body read in full, "
        "interleaved with the bare query on one psycopg connection and with a request for a "
        "body of the same size from the constant route's server):",
        "",
        "| 1,000-row trades page | p50 ms | p99 ms |",
        "|---|---:|---:|",
        *page_rows("", page_alone, bare_alone, bytes_alone),
        *(page_rows("compressed: ", *packed) if packed else []),
        "",
        "The trades' chunks are uncompressed (the scratch database's policy jobs are paused for "
        "the run)"
        + (
            "; *compressed*: the same rounds after compressing every chunk of `market.trades` "
            "(what the compression policy does to trades older than its compress-after)."
            if packed
            else "."
        ),
        "",
        f"The bare query alone under the same {c} connections (pgbench, no HTTP, no auth, rows "
        f"not even decoded): {bare_load:,.0f} queries/s, {bare_load / base.rps:.3f} of the "
        "constant route: the ceiling of any endpoint that must read those rows on this machine. "
        "The statements the endpoint runs for one request (the key's charge, the extent look-up, "
        "the window, the usage row; the API's connection settings), alone under the same "
        f"connections: {sql_load:,.0f} requests/s, {sql_load / base.rps:.3f} of the constant "
        "route: the ceiling of this endpoint with its auth and credits, before any of its Python "
        "work.",
        "",
        "Order book at an instant near the end of the history, just before the last checkpoint: "
        f"the worst case with checkpoints ({every} - 1 deltas to replay), nearly the whole "
        "history without them (checkpoints deleted, a few sequential requests):",
        "",
        "| deltas in history | replayed (checkpoints) | req/s | p50 ms | p99 ms "
        "| one client: p50 / p99 ms "
        "| compressed: req/s | compressed: p50 ms | compressed: p99 ms "
        "| compressed, one client: p50 / p99 ms "
        "| replayed (no checkpoints) | latency ms, no checkpoints |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *book_rows,
        "",
        f"The book's statements for one request at the first size (the key's charge, the "
        "latest snapshot and gap, the snapshot epoch's deltas up to the instant, the usage row; "
        f"the API's connection settings), alone under the same {c} connections (pgbench, no "
        f"HTTP, no Python, no replay): {book_sql:,.0f} requests/s. With {c} connections each "
        f"waiting for its answer, the mean latency is {c} / throughput (Little's law): "
        f"{1000 * c / book_sql:.1f} ms at that rate, with no API at all; a p50 of 5 ms at {c} "
        f"connections needs {1000 * c / 5:,.0f} requests/s.",
        "",
        f"The book at the first size (checkpoints) under 1 to {c} connections, {d} s each: "
        "the throughput stops growing once the 2 CPUs are busy, and from there each further "
        "connection only waits (the latency grows as connections / throughput):",
        "",
        "| connections | req/s | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|",
        *(f"| {k} | {fmt(r)} |" for k, r in sorted(sweep.items())),
        "",
        "*compressed*: the same requests with every chunk of `orderbook_deltas` and "
        "`orderbook_snapshots` compressed (Community edition; segment by market, ordered by "
        "time; the book returned is checked equal to the uncompressed one). Under the load's "
        f"{c} connections the latency is mostly queueing on {os.cpu_count()} CPUs; *one client* is "
        f"{ALONE_ROUNDS} sequential requests on one `http.client` connection (the service time of "
        "one request).",
        "",
        "With checkpoints a request's service time (one client) does not depend on the length "
        f"of the history (at most {every} deltas are replayed); under the load's connections the "
        "latency is queueing, and its tail moves from run to run. Without checkpoints every "
        "request replays the whole history since the last snapshot, linearly in its length.",
    ]
    text = "\n".join(lines) + "\n"
    write_section(BENCHMARKS_MD, "api", text)
    print(f"wrote the api section of {BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
