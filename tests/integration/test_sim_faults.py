"""Fault injection: on demand (deterministic) and periodic (the CLI flags' code path)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import msgspec
import pytest
from sim_support import recv, recv_all, rest_client, running_sim, send, seq_gaps, ws_client
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from kalshibook.sim import SimServer


async def subscribe_books(sim: SimServer, ws: ClientConnection, n: int = 10) -> dict[str, int]:
    tickers = [m.ticker for m in sim.model.market_list if m.status == "active"][:n]
    await send(
        ws,
        {
            "id": 1,
            "cmd": "subscribe",
            "params": {
                "channels": ["orderbook_delta", "trade", "ticker"],
                "market_tickers": tickers,
            },
        },
    )
    sids: dict[str, int] = {}
    while len(sids) < 3:
        f = await recv(ws)
        if f["type"] == "subscribed":
            sids[f["msg"]["channel"]] = f["msg"]["sid"]
    return sids


async def read_for(ws: ClientConnection, seconds: float) -> list[str | bytes]:
    out: list[str | bytes] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while (left := end - loop.time()) > 0:
            async with asyncio.timeout(left):
                out.append(await ws.recv())
    except TimeoutError:
        pass
    return out


def decode_ok(raws: list[str | bytes]) -> tuple[list[dict[str, Any]], int]:
    frames, bad = [], 0
    for raw in raws:
        try:
            frames.append(msgspec.json.decode(raw))
        except msgspec.DecodeError:
            bad += 1
    return frames, bad


async def wait_no_sessions(sim: SimServer) -> None:
    while sim.sessions:  # noqa: ASYNC110 - polling a plain counter
        await asyncio.sleep(0.01)


async def recv_until_closed(ws: ClientConnection) -> None:
    async with asyncio.timeout(2):
        while True:
            await ws.recv()


async def test_drop_all_now() -> None:
    async with running_sim(no_auth=True) as sim, ws_client(sim) as ws:
        await sim.wait_for_sessions(1)
        assert sim.drop_all() == 1
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(2):
                await ws.recv()
        async with asyncio.timeout(2):
            await wait_no_sessions(sim)


async def test_clean_drop_sends_a_close_frame() -> None:
    async with running_sim(no_auth=True) as sim, ws_client(sim) as ws:
        await sim.wait_for_sessions(1)
        sim.drop_all(abrupt=False)
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(2):
                await ws.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1012


async def test_skip_seq_now() -> None:
    async with running_sim(no_auth=True) as sim, ws_client(sim) as ws:
        sids = await subscribe_books(sim, ws, 100)
        before = await recv_all(ws)
        sim.skip_seq()
        for _ in range(5):
            sim.step(50)
        frames = await recv_all(ws)
        gaps = seq_gaps(before + frames)
        assert len(gaps) == 1
        sid, expected, got = gaps[0]
        assert got == expected + 1
        assert sid in (sids["orderbook_delta"], sids["trade"])


async def test_send_malformed_now() -> None:
    async with running_sim(no_auth=True) as sim, ws_client(sim) as ws:
        await sim.wait_for_sessions(1)
        sim.send_malformed()
        raw = await read_for(ws, 0.3)
        frames, bad = decode_ok(raw)
        assert bad == 1
        assert frames == []


@pytest.mark.parametrize("code", [10, 25])
async def test_terminal_error_now(code: int) -> None:
    async with running_sim(no_auth=True) as sim, ws_client(sim) as ws:
        sids = await subscribe_books(sim, ws)
        before = await recv_all(ws)
        book = sids["orderbook_delta"]
        last = max(f["seq"] for f in before if f.get("sid") == book)
        assert sim.send_error(code) == 1
        err = await recv(ws)
        assert err == {
            "type": "error",
            "sid": book,
            "seq": last + 1,
            "msg": {"code": code, "msg": err["msg"]["msg"]},
        }
        for _ in range(10):
            sim.step(100)
        after = await recv_all(ws)
        assert after
        assert all(f["sid"] != book for f in after), "the failed subscription is gone"
        # Resubscribing gives a new sid whose seq starts again.
        t = next(m.ticker for m in sim.model.market_list if m.status == "active")
        await send(
            ws,
            {
                "id": 9,
                "cmd": "subscribe",
                "params": {"channels": ["orderbook_delta"], "market_ticker": t},
            },
        )
        ack = await recv(ws)
        assert ack["msg"]["sid"] not in sids.values()
        assert (await recv(ws))["seq"] == 1


async def test_stall_holds_frames_then_resumes_without_loss() -> None:
    async with running_sim(no_auth=True) as sim, ws_client(sim) as ws:
        await subscribe_books(sim, ws, 100)
        before = await recv_all(ws)
        sim.stall(0.6)
        for _ in range(5):
            sim.step(50)
        assert await read_for(ws, 0.4) == []
        frames, _ = decode_ok(await read_for(ws, 0.6))
        assert len(frames) >= 250
        assert not seq_gaps(before + frames)


async def test_overflow_gives_error_25() -> None:
    async with running_sim(no_auth=True, max_buffer_bytes=20_000) as sim, ws_client(sim) as ws:
        sids = await subscribe_books(sim, ws)
        await recv_all(ws)
        sim.stall(5)
        for _ in range(20):
            sim.step(100)
        sim.resume()
        frames = await recv_all(ws)
        errors = [f for f in frames if f["type"] == "error"]
        assert {e["msg"]["code"] for e in errors} == {25}
        assert {e["sid"] for e in errors} == set(sids.values())
        assert sim.stats["overflows"] == 1


async def test_429_now() -> None:
    async with running_sim() as sim, rest_client(sim) as client:
        sim.start_429_burst(2)
        codes = [(await client.get("/markets")).status_code for _ in range(3)]
        assert codes == [429, 429, 200]


# --- periodic faults (what the CLI flags configure) -----------------------------------------


async def test_periodic_drop() -> None:
    async with running_sim(no_auth=True, drop_every=0.2) as sim:
        drops = 0
        for _ in range(2):
            async with ws_client(sim, signed=False) as ws:
                with pytest.raises(ConnectionClosed):
                    await recv_until_closed(ws)
                drops += 1
        assert drops == 2


async def test_periodic_skip_and_malformed() -> None:
    async with (
        running_sim(
            no_auth=True, autopump=True, rate=3000, skip_seq_every=50, malformed_every=70
        ) as sim,
        ws_client(sim) as ws,
    ):
        await subscribe_books(sim, ws, 30)
        frames, bad = decode_ok(await read_for(ws, 0.6))
        data = [f for f in frames if f["type"] in ("orderbook_delta", "trade", "ticker")]
        assert bad >= len(data) // 70 - 1 > 0
        gaps = seq_gaps(frames)
        assert gaps
        assert all(got == expected + 1 for _, expected, got in gaps)


async def test_periodic_error() -> None:
    async with (
        running_sim(no_auth=True, autopump=True, rate=500, error_every=0.2, error_code=25) as sim,
        ws_client(sim) as ws,
    ):
        await subscribe_books(sim, ws)
        frames, _ = decode_ok(await read_for(ws, 0.5))
        errors = [f for f in frames if f["type"] == "error"]
        assert errors
        assert errors[0]["msg"]["code"] == 25


async def test_periodic_429() -> None:
    async with running_sim(rest_429_burst=2, rest_429_every=0.2) as sim, rest_client(sim) as client:
        await asyncio.sleep(0.25)
        codes = [(await client.get("/exchange/status")).status_code for _ in range(3)]
        assert codes == [429, 429, 200]
        await asyncio.sleep(0.2)
        assert (await client.get("/exchange/status")).status_code == 429


async def test_periodic_stall() -> None:
    async with (
        running_sim(no_auth=True, autopump=True, rate=2000, stall_every=0.3, stall_for=0.25) as sim,
        ws_client(sim) as ws,
    ):
        await subscribe_books(sim, ws)
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []
        end = loop.time() + 1.0
        frames: list[dict[str, Any]] = []
        try:
            while (left := end - loop.time()) > 0:
                async with asyncio.timeout(left):
                    frames.append(msgspec.json.decode(await ws.recv()))
                arrivals.append(loop.time())
        except TimeoutError:
            pass
        silences = [b - a for a, b in itertools.pairwise(arrivals)]
        assert max(silences) >= 0.15, "a stall is a silence"
        assert not seq_gaps(frames), "stalled frames are delivered late, not lost"


async def test_heartbeat_pings_are_answered() -> None:
    async with running_sim(no_auth=True, heartbeat=0.05) as sim, ws_client(sim) as ws:
        await sim.wait_for_sessions(1)
        server_side = sim._sessions[0].ws
        async with asyncio.timeout(2):
            while server_side.latency == 0:  # noqa: ASYNC110 - set when our ping's pong arrives
                await asyncio.sleep(0.02)
        assert ws.state.name == "OPEN"


async def test_unsigned_rest_is_refused_even_during_429_free_periods() -> None:
    async with running_sim() as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
        assert (await client.get("/markets")).status_code == 401
