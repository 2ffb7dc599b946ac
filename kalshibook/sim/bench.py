"""Measure the simulator's WebSocket throughput (``python -m kalshibook.cli.sim_bench``).

Starts ``kalshibook sim`` in a subprocess (so server and reader use different CPUs), subscribes
one connection to every channel for every open market and counts data frames for a while. Prints
one line per rate: asked, received, and whether the stream stayed whole (no seq gap, no error).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec
from websockets.asyncio.client import connect

__all__ = ("measure",)


class _Head(msgspec.Struct):
    type: str
    sid: int = 0
    seq: int | None = None


def _read_ready(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


async def _wait_ready(path: Path, proc: subprocess.Popen[bytes]) -> str:
    async with asyncio.timeout(20):
        while (hostport := _read_ready(path)) is None:
            if proc.poll() is not None:
                raise RuntimeError("simulator exited early")
            await asyncio.sleep(0.05)
    return hostport


async def measure(
    rate: float, markets: int, seconds: float, truth: bool = False
) -> tuple[float, bool]:
    """Frames per second received at ``rate``, and whether the stream had no gap/error."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        extra = ["--truth", str(Path(tmp) / "truth.jsonl")] if truth else []
        proc = subprocess.Popen(  # noqa: ASYNC220, S603 - our own module, fixed arguments
            [
                sys.executable,
                "-m",
                "kalshibook.sim",
                "--no-auth",
                "--rate",
                str(rate),
                "--markets",
                str(markets),
                "--ready-file",
                str(ready),
                "--lifetime",
                "3600",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            hostport = await _wait_ready(ready, proc)
            return await _read(hostport, seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def _read(hostport: str, seconds: float) -> tuple[float, bool]:
    tickers: list[str] = []
    cursor = ""
    async with httpx.AsyncClient(base_url=f"http://{hostport}/trade-api/v2") as client:
        while True:
            page = (
                await client.get(
                    "/markets", params={"status": "open", "limit": 1000, "cursor": cursor}
                )
            ).json()
            tickers += [m["ticker"] for m in page["markets"]]
            cursor = page["cursor"]
            if not cursor:
                break
    decode = msgspec.json.Decoder(_Head).decode
    whole = True
    last: dict[int, int] = {}
    async with connect(f"ws://{hostport}/trade-api/ws/v2", max_size=None, max_queue=None) as ws:
        await ws.send(
            msgspec.json.encode(
                {
                    "id": 1,
                    "cmd": "subscribe",
                    "params": {
                        "channels": ["orderbook_delta", "ticker", "trade", "market_lifecycle_v2"],
                        "market_tickers": tickers,
                    },
                }
            )
        )
        n = 0
        start = time.perf_counter()
        counting_from = start + 1.0  # warm-up
        end = counting_from + seconds
        counting = False
        try:
            async with asyncio.timeout(seconds + 5):
                async for raw in ws:
                    head = decode(raw)
                    if head.type == "error":
                        whole = False
                        break
                    if head.seq is not None:
                        prev = last.get(head.sid)
                        if prev is not None and head.seq != prev + 1:
                            whole = False
                        last[head.sid] = head.seq
                    now = time.perf_counter()
                    if not counting and now >= counting_from:
                        counting, n, counting_from = True, 0, now
                    n += 1
                    if now >= end:
                        break
        except TimeoutError:
            whole = False
        elapsed = time.perf_counter() - counting_from
    return n / elapsed if elapsed > 0 else 0.0, whole
