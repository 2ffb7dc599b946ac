"""The API after a database outage (issue 16, point 6): answers 503 while the database is away and
is back within seconds once it returns, however long the outage was (the pools' reconnection
backoff is bounded). A real uvicorn server reaches the real database through a TCP proxy the test
cuts and restores."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from api_support import api_settings

from kalshibook.api.auth import create_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_writer import TcpProxy  # the writer tests' cuttable proxy

pytestmark = pytest.mark.db


class ThreadedProxy:
    """:class:`TcpProxy` on its own event loop thread (the server under test starts while the
    test's loop is blocked waiting for it)."""

    def __init__(self, host: str, port: int) -> None:
        self.proxy = TcpProxy(host, port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _run(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start(self) -> None:
        self._run(self.proxy.start())

    def stop(self) -> None:
        if self.proxy._server is not None:
            self._run(self.proxy.stop())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


OUTAGE = 60.0
RECOVERY_BOUND = 5.0


async def test_the_api_recovers_within_seconds_of_the_database(
    seeded_rw_url: str, live_server_factory: Any
) -> None:
    parts = urlsplit(seeded_rw_url)
    assert parts.hostname is not None
    assert parts.port is not None
    proxy = ThreadedProxy(parts.hostname, parts.port)
    proxy.start()
    key = create_key(seeded_rw_url, name="recovery", credits=10_000).key
    server = live_server_factory(api_settings(proxy.proxy.url(seeded_rw_url), request_timeout=3.0))
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            assert (await client.get("/v1/markets", headers=headers)).status_code == 200
            proxy.stop()  # the database goes away: every connection cut, none accepted
            cut = time.monotonic()
            statuses: set[int] = set()
            while time.monotonic() - cut < OUTAGE:
                statuses.add((await client.get("/health")).status_code)
                statuses.add((await client.get("/v1/markets", headers=headers)).status_code)
                await asyncio.sleep(0.5)
            assert statuses <= {503, 504}, statuses
            proxy.start()  # back, same port
            back = time.monotonic()
            while True:
                health = (await client.get("/health")).status_code
                data = (await client.get("/v1/markets", headers=headers)).status_code
                if health == 200 and data == 200:
                    break
                assert time.monotonic() - back < 90, "the API never recovered"
                await asyncio.sleep(0.2)
            recovered = time.monotonic() - back
    finally:
        proxy.close()
    print(f"recovered {recovered:.1f} s after the database came back ({OUTAGE:g} s outage)")
    assert recovered < RECOVERY_BOUND, recovered
