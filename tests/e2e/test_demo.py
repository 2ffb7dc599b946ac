"""`make demo` headless: it starts, records, answers its curl examples, and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RUN_SECONDS = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_make_demo_runs_answers_and_stops(tmp_path: Path, server_url: str) -> None:
    state = tmp_path / "demo"
    db_name = f"kb_demo_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHIBOOK_")}
    env |= {
        "KALSHIBOOK_DEMO_DIR": str(state),
        "KALSHIBOOK_DEMO_DB": db_name,
        "KALSHIBOOK_API_PORT": str(_free_port()),
        "KALSHIBOOK_DEMO_MARKETS": "100",
    }
    started = time.monotonic()
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "demo"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = started + 300
        while "demo is ready" not in log.read_text():
            assert proc.poll() is None, f"make demo exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"demo not ready:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        pids = {n: int((state / f"{n}.pid").read_text()) for n in ("sim", "collector", "api")}
        text = log.read_text()
        printed = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("curl ")]
        assert len(printed) == 4, text
        # let it record for about a minute in all
        time.sleep(max(0.0, RUN_SECONDS - (time.monotonic() - started)))
        answers = []
        for command in printed:
            res = subprocess.run(
                ["bash", "-c", command], capture_output=True, text=True, timeout=30, check=True
            )
            answers.append(json.loads(res.stdout))
        markets, trades, candles, book = answers
        assert markets["data"], "no open markets"
        assert trades["data"], "no trades"
        assert all(t["ticker"] == trades["data"][0]["ticker"] for t in trades["data"])
        assert any(c["volume"] != "0.00" for c in candles["data"]), "no candle with trades"
        assert book["data"]["yes_bids"] or book["data"]["no_bids"], "empty order book"
        # a second run is fast and reuses everything (no duplicate processes or keys)
        again = subprocess.run(
            ["make", "--no-print-directory", "demo"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env | {"DEMO_DETACH": "1"},
            timeout=60,
            check=True,
        )
        assert "already running" in again.stdout
        assert {n: int((state / f"{n}.pid").read_text()) for n in pids} == pids
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=60)
    assert "stopping" in log.read_text()
    for name, pid in pids.items():
        assert not _group_alive(pid), f"{name} (pid {pid}) left running"
    assert not list(state.glob("*.pid"))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
