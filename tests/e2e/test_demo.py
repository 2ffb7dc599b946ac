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
from psycopg import sql

from kalshibook.storage.urls import with_database

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


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "kalshibook"), "status", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_make_help_lists_every_target() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = {
        line.split(":", 1)[0]
        for line in makefile.splitlines()
        if line and not line[0].isspace() and "## " in line and ":" in line
    }
    phony = set(next(ln for ln in makefile.splitlines() if ln.startswith(".PHONY:")).split()[1:])
    required = {
        "install",
        "db",
        "db-stop",
        "migrate",
        "collect",
        "serve",
        "demo",
        "demo-stop",
        "test",
        "bench",
        "lint",
        "typecheck",
        "sql-user",
        "api-key",
        "psql",
        "status",
    }
    assert required <= targets
    assert phony <= targets | {"help"}
    out = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert listed == targets


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
        # `kalshibook status` sees the demo's data and its collector: exit 0
        demo_env = dict(
            line.split("=", 1) for line in (state / "env").read_text().splitlines() if "=" in line
        )
        status_env = env | {
            "KALSHIBOOK_DATABASE_URL": with_database(server_url, db_name),
            "KALSHIBOOK_COLLECTOR_METRICS_PORT": demo_env["METRICS_PORT"],
        }
        status = _status(status_env, "--require-collector", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report, "empty status report"
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
    # with the daemon stopped past the threshold, status fails (for cron / monitoring)
    time.sleep(4)
    stale = _status(status_env, "--stale-after", "3")
    assert stale.returncode == 3, stale.stdout + stale.stderr
    assert _status(status_env, "--require-collector").returncode != 0
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
        )
