"""The daemon as a process (`python -m kalshibook collect`) against a simulator process: SIGKILL
and restart (no duplicate trade, a daemon_restart gap covering the downtime, downtime trades
backfilled), SIGTERM (drained, exit 0, checkpoints written), and secrets never logged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e_harness import check_books, load_stored, ms, wait_for

from kalshibook.kalshi.auth import HEADER_SIGNATURE, generate_key_pair
from kalshibook.sim.server import SimConfig, SimServer
from kalshibook.sim.truth import load_truth

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _env(db_url: str, data_dir: Path, rest: str, ws: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHIBOOK_")}
    env.update(
        KALSHIBOOK_DATABASE_URL=db_url,
        KALSHIBOOK_DATA_DIR=str(data_dir),
        KALSHIBOOK_KALSHI_REST_URL=rest,
        KALSHIBOOK_KALSHI_WS_URL=ws,
        KALSHIBOOK_KALSHI_RECONNECT_INITIAL="0.05",
        KALSHIBOOK_KALSHI_RECONNECT_MAX="0.5",
        KALSHIBOOK_KALSHI_REST_RATE="200",
        KALSHIBOOK_KALSHI_REST_BURST="50",
        KALSHIBOOK_COLLECTOR_METRICS_PORT="0",
        KALSHIBOOK_COLLECTOR_CHECKPOINT_DELTAS="80",
        KALSHIBOOK_WRITER_BATCH_AGE="0.05",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class SimProcess:
    def __init__(self, tmp: Path, *args: str) -> None:
        self.ready = tmp / "sim.ready"
        self.truth = tmp / "truth.jsonl"
        self.log = (tmp / "sim.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kalshibook",
                "sim",
                "--no-auth",
                "--port",
                "0",
                "--ready-file",
                str(self.ready),
                "--truth",
                str(self.truth),
                "--heartbeat",
                "1",
                *args,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while not self.ready.exists():
            assert self.proc.poll() is None, "simulator exited"
            assert time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.05)
        host, port = self.ready.read_text().strip().rsplit(":", 1)
        self.rest = f"http://{host}:{port}/trade-api/v2"
        self.ws = f"ws://{host}:{port}/trade-api/ws/v2"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def sim_process(tmp_path: Path) -> Iterator[SimProcess]:
    sim = SimProcess(tmp_path, "--markets", "60", "--rate", "600", "--lifetime", "40")
    try:
        yield sim
    finally:
        sim.stop()


def _daemon(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kalshibook", "collect", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _count(db_url: str, sql: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _wait_rows(
    db_url: str, sql: str, n: int, proc: subprocess.Popen[bytes], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while _count(db_url, sql) < n:
        assert proc.poll() is None, "the daemon exited"
        assert time.monotonic() < deadline, f"timed out waiting for {sql}"
        time.sleep(0.1)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_sigkill_and_restart(db_url: str, tmp_path: Path, sim_process: SimProcess) -> None:
    env = _env(db_url, tmp_path / "data", sim_process.rest, sim_process.ws)
    log = tmp_path / "daemon.log"
    first = _daemon(env, log, "--no-auth")
    try:
        _wait_rows(db_url, "SELECT count(*) FROM market.trades", 20, first)
        _wait_rows(db_url, "SELECT count(*) FROM market.orderbook_deltas", 200, first)
        time.sleep(1.5)
    finally:
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    killed_ms = _now_ms()
    time.sleep(2.5)  # downtime: trades and book changes happen without us
    restarted_ms = _now_ms()
    second = _daemon(env, log, "--no-auth")
    try:
        _wait_rows(
            db_url,
            "SELECT count(*) FROM market.book_gaps WHERE reason = 'daemon_restart'",
            1,
            second,
        )
        _wait_rows(db_url, "SELECT count(*) FROM market.trades WHERE source = 'rest'", 1, second)
        time.sleep(2.0)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log.read_text()[-3000:]
    sim_process.stop()
    truth = load_truth(sim_process.truth)

    with psycopg.connect(db_url) as conn:
        first_trade, last_trade = conn.execute(
            "SELECT min(ts), max(ts) FROM market.trades WHERE source = 'ws'"
        ).fetchone()
        gaps = conn.execute(
            "SELECT market_ticker, from_ts, to_ts FROM market.book_gaps "
            "WHERE reason = 'daemon_restart'"
        ).fetchall()
        booked = conn.execute(
            "SELECT DISTINCT market_ticker FROM market.orderbook_snapshots WHERE received_at < %s",
            (datetime.fromtimestamp(killed_ms / 1000, UTC),),
        ).fetchall()
    # every market that had a book before the kill and is still trading got a gap covering the
    # downtime
    assert gaps
    for ticker, a, b in gaps:
        assert ms(a) <= killed_ms, (ticker, a, b)
        assert ms(b) >= restarted_ms, (ticker, a, b)
    open_markets = {t for t, m in _sim_markets(truth).items() if m}
    covered = {g[0] for g in gaps}
    missing = {r[0] for r in booked} & open_markets - covered
    assert not missing, sorted(missing)[:5]
    # no duplicate trade, every trade from the first one received to the last one is stored,
    # including those of the downtime (backfilled over REST)
    n = check_trades_window(db_url, truth, ms(first_trade) + 1, ms(last_trade))
    downtime = [t for t in truth.trades() if killed_ms <= t.ts <= restarted_ms]
    assert downtime
    assert n > len(downtime)
    stored = load_stored(db_url)
    check_books(stored, truth, ms(first_trade), ms(last_trade), n=100)


def _sim_markets(truth: Any) -> dict[str, bool]:
    """ticker -> still open at the end of the run (no settled lifecycle seen)."""
    out: dict[str, bool] = {}
    for _, kind, msg in truth.lifecycle():
        t = msg.get("market_ticker")
        if t is None:
            continue
        if (
            kind == "market_lifecycle_v2" and msg.get("event_type") in ("determined", "settled")
        ) or kind == "closed":
            out[t] = False
    for t in truth.tickers():
        out.setdefault(t, True)
    return out


def check_trades_window(db_url: str, truth: Any, lo: int, hi: int) -> int:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT trade_id::text, count(*) FROM market.trades GROUP BY 1")
        counts = dict(rows.fetchall())
    assert all(c == 1 for c in counts.values()), "duplicate trades"
    want = [t.trade_id for t in truth.trades() if lo <= t.ts <= hi]
    missing = [t for t in want if t not in counts]
    assert not missing, f"{len(missing)} of {len(want)} trades missing"
    return len(want)


def test_sigterm_drains_and_checkpoints(
    db_url: str, tmp_path: Path, sim_process: SimProcess
) -> None:
    env = _env(
        db_url,
        tmp_path / "data",
        sim_process.rest,
        sim_process.ws,
        KALSHIBOOK_COLLECTOR_CHECKPOINT_DELTAS="100000",
        KALSHIBOOK_COLLECTOR_CHECKPOINT_SECONDS="3600",
    )
    log = tmp_path / "daemon.log"
    proc = _daemon(env, log, "--no-auth")
    try:
        _wait_rows(db_url, "SELECT count(*) FROM market.orderbook_deltas", 500, proc)
        time.sleep(1.0)
    finally:
        stop_ms = _now_ms()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "collector stopped" in text, text[-2000:]
    assert "drained=True" in text, text[-2000:]
    sim_process.stop()
    truth = load_truth(sim_process.truth)
    with psycopg.connect(db_url) as conn:
        checkpoints = conn.execute(
            "SELECT count(*), min(received_at) FROM market.orderbook_snapshots "
            "WHERE source = 'checkpoint'"
        ).fetchone()
        booked = conn.execute(
            "SELECT count(DISTINCT market_ticker) FROM market.orderbook_deltas"
        ).fetchone()
        first_trade = conn.execute("SELECT min(ts) FROM market.trades").fetchone()
    assert checkpoints is not None
    assert booked is not None
    assert first_trade is not None
    # one shutdown checkpoint per clean book that changed (thresholds were out of reach)
    assert checkpoints[0] >= booked[0] > 0
    assert ms(checkpoints[1]) >= stop_ms - 50
    # drained: every trade received before the signal is stored
    check_trades_window(db_url, truth, ms(first_trade[0]) + 1, stop_ms - 500)
    spool = tmp_path / "data" / "spool"
    assert not any(spool.glob("*.spool")) if spool.exists() else True
    stored = load_stored(db_url)
    check_books(stored, truth, ms(first_trade[0]), stop_ms - 500, n=100)


class RecordingSim(SimServer):
    """Records every signature header the simulator verified."""

    def __init__(self, config: SimConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.signatures: list[str] = []
        verify = self._http.auth_error  # REST and WebSocket requests are all checked here

        def recording(headers: Any, path: str) -> str | None:
            sig = headers.get(HEADER_SIGNATURE)
            if sig:
                self.signatures.append(sig)
            return verify(headers, path)

        self._http.auth_error = recording  # type: ignore[method-assign]


async def test_secrets_never_logged(db_url: str, tmp_path: Path) -> None:
    private_pem, public_pem = generate_key_pair("rsa")
    key_path = tmp_path / "kalshi.pem"
    key_path.write_bytes(private_pem)
    key_id = "2f6a1c1e-5f7e-4b8a-9c3d-7e2a9b1c0d4e"
    cfg = SimConfig(
        markets=30,
        rate=400.0,
        lifetime=30.0,
        heartbeat=1.0,
        public_keys={key_id: public_pem.decode()},
    )
    async with RecordingSim(cfg) as sim:
        env = _env(
            db_url,
            tmp_path / "data",
            sim.rest_url,
            sim.ws_url,
            KALSHIBOOK_LOG_LEVEL="DEBUG",
            KALSHIBOOK_KALSHI_KEY_ID=key_id,
            KALSHIBOOK_KALSHI_PRIVATE_KEY_PATH=str(key_path),
        )
        log_path = tmp_path / "daemon.log"
        with log_path.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kalshibook",
                "collect",
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
            try:
                await wait_for(lambda: sim.sessions >= 1, 30, "the daemon to connect")
                await asyncio.sleep(1.5)
                sim.drop_all()  # a second signed handshake
                await wait_for(lambda: sim.sessions >= 1, 30, "the daemon to reconnect")
                await asyncio.sleep(1.0)
            finally:
                proc.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(proc.wait(), 30)
        assert sim.stats["auth_rejected"] == 0
        signatures = list(sim.signatures)
    text = log_path.read_text()
    assert code == 0, text[-2000:]
    assert "DEBUG" in text  # the capture really ran at DEBUG level
    assert len(signatures) >= 3  # two WebSocket handshakes + signed REST requests
    body = [ln for ln in private_pem.decode().splitlines() if ln and not ln.startswith("-----")]
    leaks = [ln for ln in body if ln in text]
    assert not leaks, "private key material in the logs"
    assert "PRIVATE KEY" not in text
    assert not [s for s in signatures if s in text], "a request signature in the logs"
    for header in ("KALSHI-ACCESS-SIGNATURE", "KALSHI-ACCESS-KEY", "KALSHI-ACCESS-TIMESTAMP"):
        for line in text.splitlines():
            if header.lower() in line.lower():
                assert "[REDACTED]" in line, line
    assert key_id not in text
