"""``kalshibook sim`` / ``python -m kalshibook.sim`` as a user runs it."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
import pytest
from sim_support import Signer, rsa_pair, seq_gaps
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kalshibook.cli.sim import add_arguments, main
from kalshibook.sim import load_truth

FLAGS = [
    "--host",
    "--port",
    "--seed",
    "--markets",
    "--rate",
    "--lifetime",
    "--new-markets-per-min",
    "--public-key",
    "--no-auth",
    "--truth",
    "--ready-file",
    "--drop-every",
    "--skip-seq-every",
    "--malformed-every",
    "--error-every",
    "--error-code",
    "--rest-429-burst",
    "--rest-429-every",
    "--stall-every",
    "--stall-for",
    "--heartbeat",
    "--auth-window",
    "--history-hours",
    "--history-rate",
]


def sim_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kalshibook.sim", *args]


def test_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in out, flag
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    documented = {opt for a in parser._actions for opt in a.option_strings} - {"-h", "--help"}
    assert documented == set(FLAGS)
    assert all(a.help for a in parser._actions)


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["--port", "http"],
        ["--port", "70000"],
        ["--rate", "-5", "--no-auth"],
        ["--error-code", "11", "--no-auth"],
        ["--public-key", "nokeyid"],
        ["--public-key", "k=/does/not/exist.pem"],
        [],
        ["--no-auth", "--stall-every", "1"],
        ["--no-auth", "--rest-429-burst", "3"],
    ],
)
def test_bad_flags_give_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code: int | str | None
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("kalshibook sim: error: ")
    assert "Traceback" not in err


def test_bad_flag_in_a_subprocess_has_no_traceback() -> None:
    proc = subprocess.run(
        sim_cmd("--markets", "many"), capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "kalshibook sim: error: argument --markets: expected a whole number, got 'many' "
        "(see --help)"
    ]


def read_ready(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


async def wait_file(path: Path, proc: subprocess.Popen[str]) -> str:
    async with asyncio.timeout(15):
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"simulator exited: {proc.communicate()}")
            text = read_ready(path)
            if text.endswith("\n"):
                return text.strip()
            await asyncio.sleep(0.02)


async def test_run_with_keys_truth_and_fault_flags(tmp_path: Path) -> None:
    pub = tmp_path / "kalshi.pub.pem"
    pub.write_bytes(rsa_pair()[1])
    ready = tmp_path / "ready"
    truth = tmp_path / "truth.jsonl"
    from sim_support import KEY_ID, ws_headers

    proc = subprocess.Popen(  # noqa: ASYNC220
        sim_cmd(
            "--port",
            "0",
            "--seed",
            "3",
            "--markets",
            "30",
            "--rate",
            "3000",
            "--public-key",
            f"{KEY_ID}={pub}",
            "--truth",
            str(truth),
            "--ready-file",
            str(ready),
            "--skip-seq-every",
            "40",
            "--malformed-every",
            "60",
            "--drop-every",
            "0.8",
            "--rest-429-burst",
            "1",
            "--rest-429-every",
            "0.3",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        hostport = await wait_file(ready, proc)
        host, port = hostport.split(":")
        assert int(port) > 0
        base = f"http://{hostport}/trade-api/v2"
        async with httpx.AsyncClient(base_url=base, auth=Signer()) as client:
            statuses = set()
            for _ in range(20):
                statuses.add((await client.get("/exchange/status")).status_code)
                if statuses == {200, 429}:
                    break
                await asyncio.sleep(0.05)
            assert statuses == {200, 429}
            markets = (await client.get("/markets", params={"status": "open"})).json()["markets"]
        tickers = [m["ticker"] for m in markets]
        frames, bad = [], 0
        closed = False
        async with connect(
            f"ws://{hostport}/trade-api/ws/v2", additional_headers=ws_headers(), max_queue=None
        ) as ws:
            await ws.send(
                msgspec.json.encode(
                    {
                        "id": 1,
                        "cmd": "subscribe",
                        "params": {
                            "channels": ["orderbook_delta", "trade"],
                            "market_tickers": tickers,
                        },
                    }
                ).decode()
            )
            try:
                async with asyncio.timeout(3):
                    async for raw in ws:
                        try:
                            frames.append(msgspec.json.decode(raw))
                        except msgspec.DecodeError:
                            bad += 1
            except ConnectionClosed:
                closed = True
        assert closed, "--drop-every closed the socket"
        assert bad > 0, "--malformed-every"
        assert seq_gaps(frames), "--skip-seq-every"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert f"listening on {host}:{port}" in out
    assert not ready.exists()
    t = load_truth(truth)
    assert t.meta["seed"] == 3
    assert t.trades()
    assert len(t.markets) >= 30


def test_python_dash_m_runs_and_stops_cleanly(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        sim_cmd("--no-auth", "--ready-file", str(ready), "--markets", "5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        hostport = ready.read_text().strip()
        r = httpx.get(f"http://{hostport}/trade-api/v2/markets")
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            sim_cmd("--no-auth", "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"kalshibook sim: error: cannot listen on 127.0.0.1:{port}")
