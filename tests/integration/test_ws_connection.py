"""The WebSocket client's bulk frame path over a real socket (kalshibook.kalshi.wsconn).

A websockets server writes hand-made frames in awkward pieces (one byte at a time, headers split
from payloads, all three length encodings), interleaved with pings and a fragmented message, and
finally a protocol violation. The client must deliver every message whole, once, in order, answer
the ping, and fail the connection with close code 1002 on the violation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from kalshibook.kalshi.ws import Disconnected, KalshiWebSocket, WsSession
from kalshibook.kalshi.ws_frames import Trade
from kalshibook.kalshi.wsconn import EARLY_LIMIT, FeedConnection, _BulkClientProtocol
from kalshibook.settings import KalshiSettings


def frame(payload: bytes, *, opcode: int = 0x1, fin: bool = True, mask: bytes = b"") -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mbit | 127]) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + payload


def trade(seq: int, pad: int = 0) -> bytes:
    body = {
        "type": "trade",
        "sid": 1,
        "seq": seq,
        "msg": {
            "trade_id": f"t{seq}",
            "market_ticker": "M",
            "yes_price_dollars": "0.40",
            "count_fp": "1.00",
            "ts_ms": 1_700_000_000_000 + seq,
        },
    }
    return json.dumps(body).encode() + b" " * pad  # JSON allows trailing whitespace


Script = Callable[[ServerConnection], Awaitable[None]]


async def client_items(script: Script) -> tuple[list[Any], KalshiWebSocket]:
    """Run ``script`` as the server for one connection; every item the client session yields."""

    async def handler(conn: ServerConnection) -> None:
        await script(conn)
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        settings = KalshiSettings(ws_url=f"ws://127.0.0.1:{port}/", ws_silence_timeout=0)
        ws = KalshiWebSocket(settings, ping_interval=None)
        session = await ws.connect()
        assert isinstance(session._conn, FeedConnection)
        assert isinstance(session._conn.protocol, _BulkClientProtocol)  # the bulk path is on
        items = await collect(session)
        await session.close()
        return items, ws


async def collect(session: WsSession) -> list[Any]:
    async with asyncio.timeout(20):
        return [i async for i in session]


async def trickle(conn: ServerConnection, data: bytes, sizes: list[int]) -> None:
    """Write ``data`` in pieces of the given sizes (cycled), yielding between writes."""
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        conn.transport.write(data[i : i + n])
        await asyncio.sleep(0.001)
        i += n
        k += 1


async def test_awkwardly_split_frames_arrive_whole_in_order_with_pings_and_fragments() -> None:
    pads = [0, 300, 70_000, 5, 126, 65_535 - 200, 1, 0, 1000, 0]  # 7-bit, 16-bit, 64-bit lengths
    pongs: list[float] = []

    async def script(conn: ServerConnection) -> None:
        first = b"".join(frame(trade(i + 1, pad)) for i, pad in enumerate(pads))
        await trickle(conn, first, [1, 2, 3, 5, 7, 11, 4096])
        pong = await conn.ping(b"hi")  # whole ping frame between data frames
        # a fragmented message (text + continuation) with a ping inside it
        big = trade(len(pads) + 1)
        half = len(big) // 2
        parts = (
            frame(big[:half], fin=False) + frame(b"x", opcode=0x9) + frame(big[half:], opcode=0x0)
        )
        await trickle(conn, parts, [3])
        pongs.append(await asyncio.wait_for(pong, 5))
        # then a burst in one write, then a clean close
        burst = b"".join(frame(trade(len(pads) + 2 + i)) for i in range(200))
        conn.transport.write(burst)
        await conn.close(1000, "bye")

    items, ws = await client_items(script)
    trades = [i for i in items if isinstance(i, Trade)]
    assert [t.seq for t in trades] == list(range(1, len(pads) + 202))
    assert all(t.trade_id == f"t{t.seq}" for t in trades)
    assert pongs, "the client answered the ping"
    assert isinstance(items[-1], Disconnected)
    assert items[-1].reason == "closed (code 1000 bye)"
    assert ws.stats.frames == len(trades)
    assert ws.stats.gaps == 0


async def test_protocol_violation_fails_the_connection_after_delivering_what_came_before() -> None:
    async def script(conn: ServerConnection) -> None:
        good = frame(trade(1)) + frame(trade(2))
        masked = frame(trade(3), mask=b"\x01\x02\x03\x04")  # servers must not mask
        conn.transport.write(good + masked + frame(trade(4)))

    items, _ = await client_items(script)
    assert [i.seq for i in items if isinstance(i, Trade)] == [1, 2]
    assert isinstance(items[-1], Disconnected)
    assert "1002" in items[-1].reason  # protocol error


async def test_reserved_opcode_is_not_taken_as_data() -> None:
    async def script(conn: ServerConnection) -> None:
        conn.transport.write(frame(trade(1)) + frame(b"{}", opcode=0x3))  # opcode 3 is reserved

    items, _ = await client_items(script)
    assert [i.seq for i in items if isinstance(i, Trade)] == [1]
    assert "1002" in items[-1].reason


async def test_a_slow_consumer_pauses_the_socket_and_loses_nothing() -> None:
    """20,000 frames in one burst into a 64-item buffer drained slowly: the session stops reading
    the socket (TCP backpressure) and resumes, every frame arrives once, in order, and the buffer
    never holds more than one socket read beyond its bound."""
    n = 20_000
    burst = b"".join(frame(trade(i + 1)) for i in range(n))

    async def handler(conn: ServerConnection) -> None:
        cmd = json.loads(await conn.recv())  # like Kalshi: data only after a subscription
        ack = {"id": cmd["id"], "type": "subscribed", "msg": {"channel": "trade", "sid": 1}}
        await conn.send(json.dumps(ack))
        conn.transport.write(burst)
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        settings = KalshiSettings(ws_url=f"ws://127.0.0.1:{port}/", ws_silence_timeout=0)
        ws = KalshiWebSocket(settings, ping_interval=None, queue_size=64)
        session = await ws.connect()
        assert await session.subscribe(["trade"]) == {"trade": 1}
        seqs: list[int] = []
        async with asyncio.timeout(60):
            async for item in session:
                assert isinstance(item, Trade)
                seqs.append(item.seq or 0)
                if len(seqs) % 500 == 0:
                    await asyncio.sleep(0.01)  # a slow consumer
                if len(seqs) == n:
                    break
        await session.close()
    assert seqs == list(range(1, n + 1))
    assert ws.stats.read_pauses > 0
    per_read = 256 * 1024 // len(frame(trade(1))) + 1  # asyncio reads at most 256 KiB at once
    assert 64 <= ws.stats.queue_high_water <= 64 + per_read
    assert ws.stats.gaps == 0


async def test_frames_before_the_session_attaches_are_bounded_and_kept() -> None:
    """A peer that floods before we are ready: reading stops after EARLY_LIMIT messages (plus
    one socket read) and everything is delivered, in order, once a sink is attached."""
    n = 10_000
    burst = b"".join(frame(trade(i + 1)) for i in range(n))

    async def handler(conn: ServerConnection) -> None:
        conn.transport.write(burst)
        await conn.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        conn = await connect(
            f"ws://127.0.0.1:{port}/", create_connection=FeedConnection, ping_interval=None
        )
        assert isinstance(conn, FeedConnection)
        async with asyncio.timeout(10):
            while conn.transport.is_reading():  # noqa: ASYNC110 - no event for this state
                await asyncio.sleep(0.01)
        per_read = 256 * 1024 // len(frame(trade(1))) + 1
        assert EARLY_LIMIT <= len(conn.early) <= EARLY_LIMIT + per_read
        got: list[bytes] = []
        complete = asyncio.Event()

        def sink(payloads: list[bytes]) -> None:
            got.extend(payloads)
            if len(got) >= n:
                complete.set()

        conn.attach(sink)
        async with asyncio.timeout(10):
            await complete.wait()
        await conn.close()
    assert [json.loads(p)["seq"] for p in got] == list(range(1, n + 1))
