"""`make demo` headless: it starts, records, answers its curl examples, and stops cleanly."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import socket
import subprocess
import termios
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kalshibook.storage.urls import with_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RECORD_WITHIN = 120
"""Seconds the demo's examples may take to show recorded data."""


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


def _run_json(command: str) -> Any:
    res = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(res.stdout)


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
        "test-unit",
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


def _as_a_terminal_shell() -> None:
    """In the child: the pty is its controlling terminal, and SIGINT has its default action, as in
    a user's shell (a test process may have inherited it ignored: ignored signals survive exec,
    and a shell cannot trap a signal ignored on entry)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _session_state(sid: int, master: int) -> str:
    """The terminal's foreground process group and, per process of session ``sid``, its group
    and ignored signals: what a lost Ctrl-C is diagnosed from."""
    try:
        lines = [f"terminal foreground group {os.tcgetpgrp(master)}"]
    except OSError as exc:
        lines = [f"terminal foreground group unknown ({exc})"]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:
                continue
            ignored = next(
                ln.split()[1] for ln in (proc / "status").read_text().splitlines()
                if ln.startswith("SigIgn:")
            )  # fmt: skip
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
        except (OSError, ValueError, IndexError, StopIteration):
            continue
        lines.append(f"pid {proc.name} group {fields[2]} SigIgn {ignored} {cmd}")
    return "\n".join(lines)


class TerminalRun:
    """A command on a pseudo-terminal of its own, as typed in a shell: Ctrl-C is the byte the
    terminal turns into SIGINT for its foreground process group (whatever that is then)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.log = log
        log.touch()
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_as_a_terminal_shell,
        )
        os.close(slave)
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        with self.log.open("ab") as out:
            while True:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: every process holding the terminal has exited
                    return
                if not chunk:
                    return
                out.write(chunk)
                out.flush()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, marker: str, within: float) -> None:
        deadline = time.monotonic() + within
        while marker not in self.text():
            assert self.proc.poll() is None, f"exited early:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"{marker!r} not seen:\n{self.text()[-3000:]}"
            time.sleep(0.5)

    def ctrl_c(self) -> None:
        self.at_ctrl_c = _session_state(self.proc.pid, self.master)
        os.write(self.master, b"\x03")

    def finish(self, timeout: float = 60) -> int:
        """The demo's exit code once it has stopped everything; a demo still running then is
        killed and reaped, so its process does not fail another test."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the demo did not stop within {timeout:g} s of Ctrl-C; at Ctrl-C:\n"
                + getattr(self, "at_ctrl_c", "?")
            ) from None
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            self._copier.join(timeout=5)
            os.close(self.master)
        return code


def test_make_demo_runs_answers_and_stops(
    tmp_path: Path, server_url: str, request: pytest.FixtureRequest
) -> None:
    state = tmp_path / "demo"
    db_name = f"kb_demo_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALSHIBOOK_")}
    env |= {
        "KALSHIBOOK_DEMO_DIR": str(state),
        "KALSHIBOOK_DEMO_DB": db_name,
        "KALSHIBOOK_API_PORT": str(_free_port()),
        "KALSHIBOOK_DEMO_MARKETS": "100",
    }

    def clean_up() -> None:  # whatever happened: no services left, no database left
        subprocess.run(
            [str(ROOT / "scripts" / "demo.sh"), "stop"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
            )

    request.addfinalizer(clean_up)
    demo = TerminalRun(["make", "--no-print-directory", "demo"], env, tmp_path / "demo.out")
    code: int | None = None
    try:
        demo.wait_for("demo is ready", within=300)
        pids = {n: int((state / f"{n}.pid").read_text()) for n in ("sim", "collector", "api")}
        text = demo.text()
        with psycopg.connect(server_url, autocommit=True) as conn:
            license_row = conn.execute("SELECT current_setting('timescaledb.license')").fetchone()
        if license_row == ("timescale",):  # the banner says the engine runs real aggregates
            assert "TimescaleDB  Community edition: 9 continuous aggregates" in text, text
        else:
            assert "TimescaleDB  Apache-2 edition: candles are plain views" in text, text
        # the examples follow the banner a moment later (a loaded machine shows the gap)
        deadline = time.monotonic() + 30
        while True:
            text = demo.text()
            printed = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("curl ")]
            if len(printed) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(printed) == 4, text
        # the examples answer once the demo has recorded a trade, a candle with volume and a
        # book: asked again until they do (a loaded machine records more slowly)
        deadline = time.monotonic() + RECORD_WITHIN
        while True:
            markets, trades, candles, book = (_run_json(command) for command in printed)
            if (
                markets["data"]
                and trades["data"]
                and any(c["volume"] != "0.00" for c in candles["data"])
                and (book["data"]["yes_bids"] or book["data"]["no_bids"])
            ) or time.monotonic() > deadline:
                break
            time.sleep(1)
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
        demo.wait_for("press Ctrl-C", within=30)
    finally:
        demo.ctrl_c()
        code = demo.finish()
    assert code == 0, demo.text()[-3000:]  # Ctrl-C: everything stopped, make exits 0
    assert "stopping" in demo.text()
    assert "Error" not in demo.text()
    for name, pid in pids.items():
        assert not _group_alive(pid), f"{name} (pid {pid}) left running"
    assert not list(state.glob("*.pid"))
    # with the daemon stopped past the threshold, status fails (for cron / monitoring)
    time.sleep(4)
    stale = _status(status_env, "--stale-after", "3")
    assert stale.returncode == 3, stale.stdout + stale.stderr
    assert _status(status_env, "--require-collector").returncode != 0
    # started again, and stopped from another shell with `make demo-stop`: exit 0 as well
    again_run = TerminalRun(["make", "--no-print-directory", "demo"], env, tmp_path / "demo2.out")
    try:
        again_run.wait_for("press Ctrl-C", within=300)
        pids = {n: int((state / f"{n}.pid").read_text()) for n in ("sim", "collector", "api")}
        subprocess.run(
            ["make", "--no-print-directory", "demo-stop"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=120,
            check=True,
        )
    finally:
        code = again_run.finish(timeout=30)
    assert code == 0, again_run.text()[-3000:]
    assert "stopped by make demo-stop" in again_run.text()
    for name, pid in pids.items():
        assert not _group_alive(pid), f"{name} (pid {pid}) left running"
