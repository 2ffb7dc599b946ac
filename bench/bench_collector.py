"""Collector ingest: simulator frames -> committed rows, beside a raw binary COPY of the same rows.

What runs (all on this machine, three processes: feed, daemon, PostgreSQL):

1. **Frames.** The simulator's exchange model (:class:`kalshibook.sim.model.Exchange`, seeded)
   generates a realistic channel mix (orderbook deltas, trades, ticker updates in the proportions
   the model produces) over ``--markets`` open markets, encoded exactly as the simulator sends
   them. A feed process (this file with ``--serve``) pre-frames them and then acts as the
   exchange: REST discovery is answered by the simulator's own REST handlers, the WebSocket
   answers the daemon's subscriptions and streams the frames as fast as the daemon reads them
   (TCP flow control), so the feed costs almost no CPU and the measurement is the daemon's.
2. **Daemon.** ``python -m kalshibook collect`` (the real CLI, with its writer's COPY worker
   processes) against the feed and a scratch database; progress is read from its ``/metrics``
   (frames received, rows put and committed per table). Throughput = data frames / (last row
   committed - first frame streamed).
3. **Raw COPY**, alternating with the daemon's runs (``--repeat`` each; medians reported): the
   same rows (the router run offline over the same frames) written by a minimal psycopg script:
   one binary ``COPY`` per table, no decoding, no books.
4. **Latency.** The same with the feed paced at ``--paced-rate`` frames/s: frame-to-commit latency
   of every ``orderbook_deltas`` row, from the curves of rows handed to the writer (at frame
   receipt) and rows committed, sampled every 20 ms (FIFO per table).
5. **RSS.** The resident memory of the daemon and its COPY workers with ``--rss-markets`` live
   books.

Rewrites the ``<!-- bench:collector -->`` section of BENCHMARKS.md.

    python bench/bench_collector.py                 # defaults: 2,000 markets, 600,000 frames
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from benchlib import (
    BENCHMARKS_MD,
    create_database,
    drop_database,
    free_port,
    pct_floor,
    rss_kib,
    write_section,
)

ROOT = Path(__file__).resolve().parents[1]
SIDS = {"market_lifecycle_v2": 1, "trade": 2, "ticker": 3, "orderbook_delta": 4}


# ---------------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------------


def make_model(markets: int, seed: int) -> Any:
    from kalshibook.sim.model import Exchange
    from kalshibook.sim.records import ModelConfig

    return Exchange(
        ModelConfig(
            seed=seed,
            markets=markets,
            lifetime_s=10_000_000.0,  # no market closes during the run
            new_markets_per_min=0.0,  # and none is created: the subscription set is fixed
            start_ms=1_780_000_000_000,
        )
    )


def generate(markets: int, frames: int, seed: int) -> tuple[list[bytes], list[bytes], list[str]]:
    """``(snapshot frames, data frames, subscribed tickers)``, as the simulator encodes them."""
    from kalshibook.sim.records import DELTA, TICKER, TRADE

    enc = msgspec.json.Encoder()
    ex = make_model(markets, seed)
    tickers = [m.ticker for m in ex.market_list if m.status == "active"]
    seq = dict.fromkeys(SIDS.values(), 0)
    snaps = []
    for t in tickers:
        seq[4] += 1
        snaps.append(
            b'{"type":"orderbook_snapshot","sid":4,"seq":%d,"msg":%s}'
            % (seq[4], enc.encode(ex.snapshot_msg(ex.markets[t])))
        )
    data: list[bytes] = []
    now = ex.now_ms
    kinds = {DELTA: 4, TRADE: 2, TICKER: 3}
    while len(data) < frames:
        now += 2
        for e in ex.advance(now, 40):
            sid = kinds.get(e.kind)
            if sid is None:
                continue
            body = enc.encode(e.msg)
            if sid == 3:
                data.append(b'{"type":"ticker","sid":3,"msg":%s}' % body)
            else:
                seq[sid] += 1
                data.append(
                    b'{"type":"%s","sid":%d,"seq":%d,"msg":%s}'
                    % (e.kind.encode(), sid, seq[sid], body)
                )
    return snaps, data[:frames], tickers


def ws_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


# ---------------------------------------------------------------------------------------------
# the feed process
# ---------------------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve
    from websockets.datastructures import Headers
    from websockets.http11 import Request, Response

    from kalshibook.sim import rest

    snaps, data, tickers = generate(args.markets, args.frames, args.seed)
    frozen = make_model(args.markets, args.seed)
    chunk = 256
    snap_bytes = b"".join(ws_frame(f) for f in snaps)
    chunks = [
        b"".join(ws_frame(f) for f in data[i : i + chunk]) for i in range(0, len(data), chunk)
    ]
    del data
    stats: dict[str, float] = {"frames": float(args.frames), "snapshots": float(len(snaps))}
    done = asyncio.Event()

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path.startswith(rest.REST_PREFIX + "/"):
            q = urllib.parse.parse_qs(query, keep_blank_values=True)
            status, body = rest.handle(frozen, path, q, frozen.now_ms)
            headers = Headers(
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                ]
            )
            return Response(status, "OK" if status == 200 else "ERR", headers, body)
        return None

    async def stream(conn: ServerConnection) -> None:
        transport = conn.transport
        transport.write(snap_bytes)
        stats["stream_start"] = time.time()
        interval = chunk / args.rate if args.rate > 0 else 0.0
        next_at = time.perf_counter()
        for c in chunks:
            while transport.get_write_buffer_size() > (1 << 20):  # noqa: ASYNC110 - poll
                await asyncio.sleep(0.0005)
            if transport.is_closing():
                return
            transport.write(c)
            if interval:
                next_at += interval
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        while transport.get_write_buffer_size() > 0 and not transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        stats["stream_end"] = time.time()
        Path(args.stats_file).write_text(json.dumps(stats))  # noqa: ASYNC240 - tiny, once
        done.set()

    wanted = set(tickers)

    async def handler(conn: ServerConnection) -> None:
        streamer: asyncio.Task[None] | None = None
        subscribed: set[str] = set()
        try:
            async for message in conn:
                cmd = json.loads(message)
                cid = cmd.get("id")
                params = cmd.get("params") or {}
                if cmd.get("cmd") == "subscribe":
                    for ch in params.get("channels", []):
                        await conn.send(
                            json.dumps(
                                {
                                    "id": cid,
                                    "type": "subscribed",
                                    "msg": {"channel": ch, "sid": SIDS[ch]},
                                }
                            )
                        )
                    if "orderbook_delta" in params.get("channels", []):
                        subscribed |= set(params.get("market_tickers") or [])
                else:
                    if params.get("action") == "add_markets":
                        subscribed |= set(params.get("market_tickers") or [])
                    await conn.send(json.dumps({"id": cid, "type": "ok", "msg": {}}))
                # One orderbook subscription (sid 4) of every open market: stream once complete.
                if streamer is None and subscribed >= wanted:
                    streamer = asyncio.create_task(stream(conn))
        finally:
            if streamer is not None:  # owned: never left running past its connection
                streamer.cancel()
                await asyncio.gather(streamer, return_exceptions=True)

    async with ws_serve(
        handler,
        "127.0.0.1",
        0,
        process_request=process_request,
        compression=None,
        max_size=1 << 24,
        ping_interval=None,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(str(port))  # noqa: ASYNC240 - tiny, once
        tmp.replace(args.port_file)  # noqa: ASYNC240
        await asyncio.Event().wait()


# ---------------------------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------------------------


def cpu_seconds(pids: set[int]) -> tuple[float, float]:
    """CPU seconds used so far by (the processes ``pids``, every PostgreSQL process)."""
    tick = os.sysconf("SC_CLK_TCK")
    ours = pg = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(stat.parent.name) in pids:
            ours += used
        elif head.endswith("(postgres"):
            pg += used
    return ours, pg


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def _sum(m: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in m.items() if k.startswith(prefix))


class Run:
    """One feed process + one daemon process on a fresh database."""

    def __init__(
        self,
        admin_url: str,
        tmp: Path,
        *,
        markets: int,
        frames: int,
        rate: float,
        seed: int,
        name: str,
        batch_rows: int | None = None,
    ) -> None:
        self.admin_url = admin_url
        self.tmp = tmp / name
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.markets, self.frames, self.rate, self.seed = markets, frames, rate, seed
        self.batch_rows = batch_rows
        self.db = f"kb_bench_collector_{uuid.uuid4().hex[:8]}"
        self.feed: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()

    @property
    def db_url(self) -> str:
        from kalshibook.storage.urls import with_database

        return with_database(self.admin_url, self.db)

    def start(self) -> None:
        from kalshibook.storage import migrate

        create_database(self.admin_url, self.db)
        migrate.upgrade(self.db_url)
        port_file = self.tmp / "feed.port"
        self.stats_file = self.tmp / "feed.json"
        port_file.unlink(missing_ok=True)
        self.stats_file.unlink(missing_ok=True)
        self.feed = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                "--markets",
                str(self.markets),
                "--frames",
                str(self.frames),
                "--rate",
                str(self.rate),
                "--seed",
                str(self.seed),
                "--port-file",
                str(port_file),
                "--stats-file",
                str(self.stats_file),
            ],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 600
        while not port_file.exists():
            if self.feed.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the feed process did not start")
            time.sleep(0.1)
        port = int(port_file.read_text())
        env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHIBOOK_")}
        env.update(
            KALSHIBOOK_DATABASE_URL=self.db_url,
            KALSHIBOOK_DATA_DIR=str(self.tmp / "data"),
            KALSHIBOOK_LOG_LEVEL="WARNING",
            KALSHIBOOK_KALSHI_REST_URL=f"http://127.0.0.1:{port}/trade-api/v2",
            KALSHIBOOK_KALSHI_WS_URL=f"ws://127.0.0.1:{port}/trade-api/ws/v2",
            KALSHIBOOK_KALSHI_REST_RATE="500",
            KALSHIBOOK_KALSHI_REST_BURST="100",
            KALSHIBOOK_COLLECTOR_ORDERBOOK_SUB_SIZE=str(max(self.markets * 2, 100)),
            KALSHIBOOK_COLLECTOR_DISCOVERY_INTERVAL="3600",
            KALSHIBOOK_COLLECTOR_METRICS_PORT=str(self.metrics_port),
        )
        if self.batch_rows is not None:
            env["KALSHIBOOK_WRITER_BATCH_ROWS"] = str(self.batch_rows)
            env["KALSHIBOOK_WRITER_QUEUE_ROWS"] = str(max(5 * self.batch_rows, 50_000))
        for k, v in os.environ.items():  # overrides for experiments: BENCH_DAEMON_KALSHIBOOK_*
            if k.startswith("BENCH_DAEMON_KALSHIBOOK_"):
                env[k.removeprefix("BENCH_DAEMON_")] = v
        self.log = (self.tmp / "daemon.log").open("wb")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "kalshibook", "collect", "--no-auth"],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def metrics(self) -> dict[str, float]:
        assert self.daemon is not None
        if self.daemon.poll() is not None:
            raise SystemExit(f"the daemon exited; see {self.tmp / 'daemon.log'}")
        try:
            return scrape(self.metrics_port)
        except OSError:
            return {}

    def wait(self, interval: float, timeout: float = 900) -> list[tuple[float, dict[str, float]]]:
        """Sample metrics until the feed has streamed everything and every row is committed."""
        samples: list[tuple[float, dict[str, float]]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = time.time()
            m = self.metrics()
            if m:
                m["_cpu_daemon"], m["_cpu_postgres"] = self.cpu_seconds()
                samples.append((t, m))
                put = _sum(m, "kalshibook_collector_writer_rows_put_total")
                written = _sum(m, "kalshibook_collector_writer_rows_written_total") + _sum(
                    m, "kalshibook_collector_writer_rows_duplicate_total"
                )
                if self.stats_file.exists() and put > 0 and written >= put:
                    feed = json.loads(self.stats_file.read_text())
                    received = m.get("kalshibook_collector_ws_frames_received_total", 0)
                    if received >= feed["frames"] + feed["snapshots"]:
                        return samples
            time.sleep(interval)
        raise SystemExit("timed out waiting for the daemon")

    def tree(self) -> list[int]:
        """The daemon and its child processes (the writer's COPY workers)."""
        assert self.daemon is not None
        pids = [self.daemon.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.daemon.pid:
                pids.append(int(stat.parent.name))
        return pids

    def rss_kib(self) -> int:
        """Resident memory of the daemon and its COPY workers."""
        return sum(rss_kib(pid) or 0 for pid in self.tree())

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds used so far by (the daemon and its workers, every PostgreSQL process)."""
        return cpu_seconds(set(self.tree()))

    def stop(self) -> None:
        for p in (self.daemon, self.feed):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if hasattr(self, "log"):
            self.log.close()
        drop_database(self.admin_url, self.db)


def throughput(run: Run, samples: list[tuple[float, dict[str, float]]]) -> dict[str, float]:
    feed = json.loads(run.stats_file.read_text())
    m = samples[-1][1]
    # The end is the last commit (the daemon's gauge, same clock), not the sample that saw it:
    # sampling every `interval` s would add up to one interval to every run.
    t_end = m.get("kalshibook_collector_writer_last_commit_timestamp_seconds") or samples[-1][0]
    rows = _sum(m, "kalshibook_collector_writer_rows_written_total") + _sum(
        m, "kalshibook_collector_writer_rows_duplicate_total"
    )
    seconds = t_end - feed["stream_start"]
    start = min(samples, key=lambda s: abs(s[0] - feed["stream_start"]))[1]
    return {
        "frames": feed["frames"],
        "seconds": seconds,
        "fps": feed["frames"] / seconds,
        "rows": rows,
        "cpu_daemon_us": (m["_cpu_daemon"] - start["_cpu_daemon"]) / feed["frames"] * 1e6,
        "cpu_postgres_us": (m["_cpu_postgres"] - start["_cpu_postgres"]) / feed["frames"] * 1e6,
    }


def latency_p(samples: list[tuple[float, dict[str, float]]], q: float) -> float:
    """Frame-to-commit latency quantile of orderbook_deltas rows (FIFO, sampled curves)."""
    put_key = 'kalshibook_collector_writer_rows_put_total{table="orderbook_deltas"}'
    done_key = 'kalshibook_collector_writer_rows_written_total{table="orderbook_deltas"}'
    puts = [(t, m.get(put_key, 0.0)) for t, m in samples]
    dones = [(t, m.get(done_key, 0.0)) for t, m in samples]
    lat: list[float] = []
    prev_done = 0.0
    j = 0
    for t_c, done in dones:
        if done <= prev_done:
            continue
        # rows (prev_done, done] committed by t_c; each was put when the put curve passed it
        k = prev_done + 1
        step = max(1.0, (done - prev_done) / 200)  # sample rows within this commit step
        while k <= done:
            while j < len(puts) and puts[j][1] < k:
                j += 1
            if j < len(puts):
                lat.append(max(0.0, t_c - puts[j][0]))
            k += step
        prev_done = done
        j = max(0, j - 2)
    return pct_floor(lat, q) if lat else float("nan")


def daemon_rows(frames: list[bytes], snaps: list[bytes]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the daemon stores for these frames (its router, run offline), per table."""
    from kalshibook.collector.router import Router
    from kalshibook.kalshi.ws_decode import decode_frame

    router = Router(checkpoint_deltas=500)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    now = datetime.now(UTC)
    for raw in [*snaps, *frames]:
        router.handle(decode_frame(raw, received_at=now))
    router.flush_unstamped(now)
    for table, part in router.take():
        rows.setdefault(table, []).extend(part)
    return rows


# Community edition: every chunk of the simulated rows compressed, and how well, per table.
CHUNKS = "SELECT c::text FROM show_chunks(%s::regclass) c"
COMPRESS_CHUNK = "SELECT compress_chunk(%s::regclass, true)"
COMPRESSION_STATS = """
SELECT sum(before_compression_total_bytes), sum(after_compression_total_bytes)
FROM hypertable_compression_stats(%s::regclass)
"""
LICENSE = "SELECT current_setting('timescaledb.license')"


def compression_ratios(url: str, tables: list[str]) -> dict[str, tuple[int, int]]:
    """Bytes before and after compressing every chunk of ``tables`` (Community edition only)."""
    out: dict[str, tuple[int, int]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute(LICENSE).fetchone() != ("timescale",):
            return out
        for table in tables:
            rel = f"market.{table}"
            enabled = conn.execute(
                "SELECT compression_enabled FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = 'market' AND hypertable_name = %s",
                (table,),
            ).fetchone()
            if not enabled or not enabled[0]:
                continue
            for (chunk,) in conn.execute(CHUNKS, (rel,)).fetchall():
                # chunk by chunk: the compression policy (job scheduler on) may compress one
                # between the check of if_not_compressed and the compression
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    conn.execute(COMPRESS_CHUNK, (chunk,))
            row = conn.execute(COMPRESSION_STATS, (rel,)).fetchone()
            if row and row[0] and row[1]:
                out[table] = (int(row[0]), int(row[1]))
    return out


def raw_copy(
    admin_url: str,
    rows: dict[str, list[tuple[Any, ...]]],
    frames: int,
    *,
    measure_compression: bool = False,
) -> dict[str, Any]:
    """``rows`` (for ``frames`` data frames) written by a minimal binary COPY script; with
    ``measure_compression``, the compression ratio of each table afterwards (not timed)."""
    from kalshibook.storage import migrate
    from kalshibook.storage.tables import TABLES

    name = f"kb_bench_rawcopy_{uuid.uuid4().hex[:8]}"
    url = create_database(admin_url, name)
    try:
        migrate.upgrade(url)
        with psycopg.connect(url) as conn:
            jsonb = psycopg.postgres.types["jsonb"].oid

            class JsonText(psycopg.adapt.Dumper):
                format = psycopg.pq.Format.BINARY
                oid = jsonb

                def dump(self, obj: Any) -> bytes:
                    return b"\x01" + bytes(obj)

            conn.adapters.register_dumper(bytes, JsonText)
            me = {os.getpid()}
            cpu0 = cpu_seconds(me)
            t0 = time.perf_counter()
            for table, batch in rows.items():
                spec = TABLES[table]
                stmt = sql.SQL("COPY market.{} ({}) FROM STDIN (FORMAT BINARY)").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, spec.columns))
                )
                with conn.cursor() as cur, cur.copy(stmt) as copy:
                    copy.set_types(list(spec.pg_types))
                    for row in batch:
                        copy.write_row(row)
            conn.commit()
            seconds = time.perf_counter() - t0
            cpu1 = cpu_seconds(me)
        compression = compression_ratios(url, list(rows)) if measure_compression else {}
    finally:
        drop_database(admin_url, name)
    total = sum(len(v) for v in rows.values())
    return {
        "seconds": seconds,
        "rows": float(total),
        "fps": frames / seconds,
        "per_table": {k: len(v) for k, v in rows.items()},
        "cpu_client_us": (cpu1[0] - cpu0[0]) / frames * 1e6,
        "cpu_postgres_us": (cpu1[1] - cpu0[1]) / frames * 1e6,
        "compression": compression,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--markets", type=int, default=2000)
    p.add_argument("--frames", type=int, default=600_000)
    p.add_argument("--paced-rate", type=float, default=20_000.0)
    p.add_argument("--paced-frames", type=int, default=300_000)
    p.add_argument("--rss-markets", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--repeat", type=int, default=5, help="runs of each path, alternating; medians reported"
    )
    p.add_argument(
        "--batch-rows",
        type=int,
        default=None,
        help="override the daemon's KALSHIBOOK_WRITER_BATCH_ROWS (default: its own default)",
    )
    p.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    # feed process
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--port-file", help=argparse.SUPPRESS)
    p.add_argument("--stats-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        asyncio.run(serve(args))
        return 0

    from kalshibook.storage.urls import with_database

    url = os.environ.get("KALSHIBOOK_DATABASE_URL")
    if not url:
        raise SystemExit("KALSHIBOOK_DATABASE_URL is not set (run make db)")
    admin = with_database(url, "postgres")
    tmp = ROOT / ".data" / "bench_collector"
    tmp.mkdir(parents=True, exist_ok=True)

    print(f"max throughput: {args.markets} markets, {args.frames:,} frames", flush=True)
    # Daemon and raw COPY runs alternate, so both see the same phases of a machine whose speed
    # drifts (a shared VM); each side's median run is reported.
    snaps, data, _ = generate(args.markets, args.frames, args.seed)
    rows = daemon_rows(data, snaps)
    del snaps, data
    runs: list[dict[str, float]] = []
    raws: list[dict[str, Any]] = []
    for i in range(args.repeat):
        run = Run(
            admin,
            tmp,
            markets=args.markets,
            frames=args.frames,
            rate=0.0,
            seed=args.seed,
            name=f"max{i}",
            batch_rows=args.batch_rows,
        )
        try:
            run.start()
            samples = run.wait(0.2)
            runs.append(throughput(run, samples))
        finally:
            run.stop()
        r = runs[-1]
        print(f"  daemon: {r['fps']:,.0f} frames/s ({r['rows']:,.0f} rows in {r['seconds']:.2f} s)")
        raws.append(raw_copy(admin, rows, args.frames, measure_compression=i == 0))
        r = raws[-1]
        print(
            f"  raw COPY: {r['fps']:,.0f} frames/s ({r['rows']:,.0f} rows in {r['seconds']:.2f} s)"
        )
    del rows
    runs.sort(key=lambda r: r["fps"])
    tp = runs[len(runs) // 2]  # the median run
    raws.sort(key=lambda r: r["fps"])
    raw = raws[len(raws) // 2]  # the median run, like the daemon's
    compression: dict[str, tuple[int, int]] = next(
        (r["compression"] for r in raws if r["compression"]), {}
    )
    all_raw = ", ".join(f"{r['fps']:,.0f}" for r in raws)
    all_fps = ", ".join(f"{r['fps']:,.0f}" for r in runs)

    print(f"paced at {args.paced_rate:,.0f} frames/s", flush=True)
    run = Run(
        admin,
        tmp,
        markets=args.markets,
        frames=args.paced_frames,
        rate=args.paced_rate,
        seed=args.seed,
        name="paced",
        batch_rows=args.batch_rows,
    )
    try:
        run.start()
        samples = run.wait(0.02)
        p50 = latency_p(samples, 0.50)
        p99 = latency_p(samples, 0.99)
        paced = throughput(run, samples)
    finally:
        run.stop()
    print(f"  frame-to-commit p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")

    print(f"RSS with {args.rss_markets:,} live books", flush=True)
    run = Run(
        admin,
        tmp,
        markets=args.rss_markets,
        frames=50_000,
        rate=0.0,
        seed=args.seed,
        name="rss",
        batch_rows=args.batch_rows,
    )
    try:
        run.start()
        samples = run.wait(0.2)
        books = samples[-1][1].get("kalshibook_collector_books", 0.0)
        rss = run.rss_kib()
    finally:
        run.stop()
    print(f"  {books:,.0f} books, RSS {rss / 1024:.0f} MiB")

    ratio = tp["fps"] / raw["fps"]
    with psycopg.connect(url) as conn:
        server = conn.execute("SHOW server_version").fetchone()
        ts = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        license_row = conn.execute(LICENSE).fetchone()
    community = license_row == ("timescale",)
    edition = (
        "Community edition (job scheduler on: the candle refresh and compression policies run "
        "beside the daemon)"
        if community
        else "Apache-2 edition (no policies)"
    )
    if compression:
        ratios = ", ".join(
            f"{t} {before / after:.1f}x ({before / 2**20:,.1f} -> {after / 2**20:,.1f} MiB)"
            for t, (before, after) in sorted(compression.items())
        )
        compression_line = (
            "- Compression (every chunk of the simulated rows compressed, segment by market, "
            f"time-ordered; total bytes incl. indexes): {ratios}."
        )
    else:
        compression_line = "- Compression: n/a (Apache-2 edition)."
    mix = raw["per_table"]
    daemon_row = (
        "| daemon: WS read, decode, books, quotes, writer (batched binary COPY in its worker "
        f"processes), committed | {tp['fps']:,.0f} | {tp['rows'] / tp['seconds']:,.0f} | "
        f"{ratio:.2f} | {tp['cpu_daemon_us']:.1f} | {tp['cpu_postgres_us']:.1f} |"
    )
    raw_row = (
        "| raw binary COPY of the same rows (one script, no feed, no decoding) | "
        f"{raw['fps']:,.0f} | {raw['rows'] / raw['seconds']:,.0f} | 1.00 | "
        f"{raw['cpu_client_us']:.1f} | {raw['cpu_postgres_us']:.1f} |"
    )
    from kalshibook.settings import WriterSettings

    wd = WriterSettings()
    settings_note = (
        f"`KALSHIBOOK_WRITER_BATCH_ROWS={args.batch_rows}` (and `QUEUE_ROWS` at least 5x that),"
        " otherwise the defaults"
        if args.batch_rows is not None
        else (
            f"the defaults (`KALSHIBOOK_WRITER_BATCH_ROWS={wd.batch_rows}`, "
            f"`BATCH_AGE={wd.batch_age:g}`, `CONNECTIONS={wd.connections}`)"
        )
    )
    text = f"""## Collector ingest (`bench/bench_collector.py`)

Simulator frames -> daemon (`python -m kalshibook collect`: the feed process and its writer's COPY
worker processes) -> committed rows, beside a minimal psycopg script doing one binary `COPY` per
table of the very same rows. Feed, daemon and PostgreSQL share this machine: {os.cpu_count()} CPUs,
Python {platform.python_version()}, psycopg {psycopg.__version__}, PostgreSQL
{server[0] if server else "?"}, TimescaleDB {ts[0] if ts else "?"} {edition}.
{datetime.now(UTC):%Y-%m-%d}.
Frames: the simulator's model, {args.markets:,} open markets, {args.frames:,} data frames
(rows per table: {", ".join(f"{k} {v:,}" for k, v in sorted(mix.items()))}), streamed by a feed
process as fast as the daemon reads (TCP flow control).

| path | frames/s | rows/s | vs raw COPY | client CPU us/frame | PostgreSQL CPU us/frame |
|---|---:|---:|---:|---:|---:|
{daemon_row}
{raw_row}

- Frames/s over {args.repeat} runs each, daemon and raw COPY alternating: daemon {all_fps};
  raw COPY {all_raw} (sorted; the medians are in the table; feed, daemon and PostgreSQL share
  the machine, whose speed drifts, so runs vary). CPU
  columns: CPU seconds per data frame of the client side (the daemon and its workers / the COPY
  script) and of all PostgreSQL processes, over the measured interval.
- Frame-to-commit latency at {args.paced_rate:,.0f} frames/s ({paced["fps"]:,.0f} achieved):
  p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (orderbook_deltas rows; from the daemon's
  counters of rows handed to the writer and rows committed, sampled every 20 ms; batch_age
  {wd.batch_age:g} s bounds it from above while the database keeps up).
- Daemon RSS (with its worker processes) with {books:,.0f} live books: {rss / 1024:.0f} MiB.
- Daemon writer settings: {settings_note}.
{compression_line}
- Targets: >= 0.5 of raw COPY ({"met" if ratio >= 0.5 else "NOT met"}), >= 50,000 frames/s
  ({"met" if tp["fps"] >= 50_000 else "NOT met"}).

Run: `make bench` or
`python bench/bench_collector.py --markets {args.markets} --frames {args.frames}`.
"""
    print(text)
    if not args.no_write:
        write_section(BENCHMARKS_MD, "collector", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
