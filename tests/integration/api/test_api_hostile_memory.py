"""Clients that never read their responses (issue 16, point 2), against a real ``kalshibook serve``
process: its resident memory is measured from ``/proc`` while 100 such clients wait.

A response body goes out in 64 KiB pieces under the request deadline, so the server holds at most a
few pieces per unread client, and abandons the response (freeing it) at the deadline; connections
beyond ``KALSHIBOOK_API_MAX_CONNECTIONS`` get a 503 at once (uvicorn's ``limit_concurrency``).
Without those bounds every unread body stays buffered in the server for as long as the client
keeps its socket open. The bodies (10,000 one-minute candles, ~8 MiB) are larger than the kernel's
socket buffers, so they cannot hide there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from api_support import TEST_CURSOR_SECRET, free_port

pytestmark = pytest.mark.db

TICKER = "KXMEM-26JAN15-B1"
TRADES = 10
UNREAD = 100
DEADLINE = 10.0

SEED = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,
                           taker_outcome_side, taker_book_side, source, received_at)
SELECT '2026-01-15T00:00:00Z'::timestamptz + g * interval '1 second', gen_random_uuid(), %s,
       0.42, 0.58, 10, 'yes', 'bid', 'ws', now()
FROM generate_series(1, %s) g
"""


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def unread_request(port: int, path: str) -> socket.socket:
    """A client that sends one request and never reads: a tiny receive window."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def test_unread_responses_do_not_grow_memory(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SEED, (TICKER, TRADES))
    port = free_port()
    env = {
        **os.environ,
        "KALSHIBOOK_DATABASE_URL": db_url,
        "KALSHIBOOK_DATA_DIR": str(tmp_path),
        "KALSHIBOOK_LOG_LEVEL": "ERROR",
        "KALSHIBOOK_API_REQUIRE_AUTH": "false",  # no per-key cap: every client gets its body
        "KALSHIBOOK_API_CURSOR_SECRET": TEST_CURSOR_SECRET,
        "KALSHIBOOK_API_REQUEST_TIMEOUT": str(DEADLINE),
        # glibc gives large freed blocks back to the OS only below its (self-raising) mmap
        # threshold: pin it, so RSS shows the memory actually in use, not what malloc kept
        "MALLOC_MMAP_THRESHOLD_": "65536",
    }
    cmd = [sys.executable, "-m", "kalshibook", "serve", "--no-access-log", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env)
    path = (
        f"/v1/markets/{TICKER}/candles?interval=1m&fill=true"
        "&start=2026-01-15T00:00:00Z&end=2026-01-21T22:40:00Z"  # 10,000 periods
    )
    socks: list[socket.socket] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(400):
                try:
                    client.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            body = len(client.get(path).content)
            assert body > 4 * 1024 * 1024, body  # more than the kernel's socket buffers hold
            for _ in range(5):  # warm up: allocator pools, plans, connections
                client.get(path)
            baseline = rss_bytes(proc.pid)

            socks = [unread_request(port, path) for _ in range(UNREAD)]
            peak = baseline
            began = time.monotonic()
            while time.monotonic() - began < DEADLINE + 3.0:
                peak = max(peak, rss_bytes(proc.pid))
                time.sleep(0.1)
            after = rss_bytes(proc.pid)
            assert client.get("/health").status_code == 200  # the server still answers
        heads: list[bytes] = []
        for sock in socks:
            sock.setblocking(False)
            try:
                head = sock.recv(64)
            except BlockingIOError:
                head = b""
            heads.append(head[:12])
        started = heads.count(b"HTTP/1.1 200")
        # responses really sent, not read (the others ran past the deadline before they started,
        # on a busy machine: 504s)
        assert started >= 10, heads
    finally:
        for sock in socks:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)

    held_all = started * body
    mib = 1024 * 1024
    report = (
        f"body {body / mib:.2f} MiB x {started} unread = {held_all / mib:.0f} MiB if held; "
        f"RSS baseline {baseline / mib:.0f} MiB, peak {peak / mib:.0f}, after {after / mib:.0f}"
    )
    print(report)
    assert (
        started
    )  # after the deadline the abandoned bodies are gone: the growth is a small fraction of what
    # holding them takes (each unread client keeps at most the pieces already written)
    assert after - baseline < held_all / 8, report
