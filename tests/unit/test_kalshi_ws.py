"""WebSocket client logic against an in-memory fake connection (kalshibook.kalshi.ws).

The fake stands in for websockets' ClientConnection (recv/send/close), so the control plane,
sequencing, backpressure, watchdog and reconnect loop run without a socket.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from kalshibook.errors import FatalFeedError, FeedDisconnected, FeedError, WsCommandError
from kalshibook.kalshi import auth
from kalshibook.kalshi.sequencing import GapDetected
from kalshibook.kalshi.ws import Disconnected, KalshiWebSocket, WsSession
from kalshibook.kalshi.ws_frames import (
    ErrorFrame,
    OrderbookSnapshot,
    SubscriptionInfo,
    Ticker,
    Trade,
    UnknownFrame,
)
from kalshibook.settings import KalshiSettings

Reply = Callable[["FakeConn", dict[str, Any]], Awaitable[None]]


class FakeConn:
    """Duck-typed FeedConnection: frames pushed by the test are delivered to the session's sink
    one per event-loop turn (like socket reads), honouring pause/resume of reading; commands are
    answered by ``reply``."""

    def __init__(self, reply: Reply | None = None) -> None:
        self.pending: collections.deque[bytes | BaseException] = collections.deque()
        self.sent: list[dict[str, Any]] = []
        self.reply = reply
        self.closed = False
        self.last_activity = 0.0
        self.seqs: dict[int, int] = {}
        self.sink: Callable[[list[bytes]], None] | None = None
        self.paused = False
        self.close_exc: BaseException | None = None
        self.protocol = self
        self.transport = self
        self._lost = asyncio.get_running_loop().create_future()
        self._scheduled = False

    # --- FeedConnection surface -------------------------------------------------------
    def attach(self, sink: Callable[[list[bytes]], None]) -> None:
        self.sink = sink
        self._schedule()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        self._schedule()

    def abort(self) -> None:
        self._lose(ConnectionClosedError(None, None))

    # --- test controls ----------------------------------------------------------------
    def push(self, obj: dict[str, Any]) -> None:
        if obj.get("sid") is not None and obj.get("seq") is not None:
            self.seqs[obj["sid"]] = obj["seq"]
        self.push_raw(json.dumps(obj).encode())

    def push_raw(self, raw: bytes) -> None:
        self.pending.append(raw)
        self._schedule()

    def push_batch(self, objs: list[dict[str, Any]]) -> None:
        """Several frames arriving in one socket read."""
        assert self.sink is not None
        self.sink([json.dumps(o).encode() for o in objs])

    def next_seq(self, sid: int) -> int:
        return self.seqs.get(sid, 0) + 1

    def drop(self) -> None:
        self.pending.append(ConnectionClosedError(None, None))
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._scheduled = False
        if self.paused or self.sink is None or not self.pending or self._lost.done():
            return
        item = self.pending.popleft()
        if isinstance(item, BaseException):
            self._lose(item)
            return
        self.sink([item])
        self._schedule()

    def _lose(self, exc: BaseException) -> None:
        if not self._lost.done():
            self.close_exc = exc
            self._lost.set_result(None)

    async def send(self, message: str | bytes, text: bool | None = None) -> None:
        assert text is True
        cmd = json.loads(message)
        self.sent.append(cmd)
        if self.reply is not None:
            await self.reply(self, cmd)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            close = Close(code, reason)
            self._lose(ConnectionClosedOK(close, close, True))


async def kalshi_like(conn: FakeConn, cmd: dict[str, Any]) -> None:
    """Minimal exchange behaviour for commands."""
    cid, params = cmd["id"], cmd.get("params", {})
    if cmd["cmd"] == "subscribe":
        for i, ch in enumerate(params["channels"]):
            if ch == "bogus":
                conn.push(
                    {"id": cid, "type": "error", "msg": {"code": 8, "msg": "Unknown channel"}}
                )
                return
            conn.push({"id": cid, "type": "subscribed", "msg": {"channel": ch, "sid": 10 + i}})
    elif cmd["cmd"] == "unsubscribe":
        for sid in params["sids"]:
            conn.push({"id": cid, "sid": sid, "seq": conn.next_seq(sid), "type": "unsubscribed"})
    elif cmd["cmd"] == "update_subscription":
        sid = params["sids"][0]
        if params["action"] == "get_snapshot":
            for t in params["market_tickers"]:
                conn.push(
                    {
                        "id": cid,
                        "type": "orderbook_snapshot",
                        "sid": sid,
                        "seq": conn.next_seq(sid),
                        "msg": {"market_ticker": t, "yes_dollars_fp": [["0.10", "1.00"]]},
                    }
                )
        else:
            conn.push(
                {
                    "id": cid,
                    "sid": sid,
                    "seq": conn.next_seq(sid),
                    "type": "ok",
                    "msg": {"market_tickers": params["market_tickers"]},
                }
            )
    elif cmd["cmd"] == "list_subscriptions":
        conn.push({"id": cid, "type": "ok", "msg": [{"channel": "trade", "sid": 10}]})


def trade(sid: int, seq: int, tid: str = "t") -> dict[str, Any]:
    return {
        "type": "trade",
        "sid": sid,
        "seq": seq,
        "msg": {
            "trade_id": f"{tid}{seq}",
            "market_ticker": "M",
            "yes_price_dollars": "0.40",
            "count_fp": "1.00",
            "ts_ms": 1700000000000,
        },
    }


def settings(**kw: Any) -> KalshiSettings:
    base: dict[str, Any] = {
        "ws_url": "ws://sim.test/trade-api/ws/v2",
        "key_id": "kid",
        "ws_silence_timeout": 0,
        "reconnect_initial": 0.5,
        "reconnect_max": 4.0,
    }
    base.update(kw)
    return KalshiSettings(**base)


async def open_session(
    conn: FakeConn, *, queue_size: int = 100, command_timeout: float = 1.0, **kw: Any
) -> tuple[KalshiWebSocket, WsSession]:
    async def connector(url: str, **options: Any) -> FakeConn:
        return conn

    ws = KalshiWebSocket(
        settings(**kw),
        connector=connector,
        queue_size=queue_size,  # type: ignore[arg-type]
        command_timeout=command_timeout,
    )
    return ws, await ws.connect()


async def drain(session: WsSession, n: int) -> list[Any]:
    """The next ``n`` data-plane items (fails instead of hanging)."""
    out = []
    async with asyncio.timeout(5):
        async for item in session:
            out.append(item)
            if len(out) == n:
                break
    return out


async def collect(session: WsSession) -> list[Any]:
    """Every remaining item up to the final Disconnected."""
    async with asyncio.timeout(5):
        return [i async for i in session]


async def test_subscribe_acks_stay_on_the_control_plane() -> None:
    conn = FakeConn(kalshi_like)
    ws, session = await open_session(conn)
    sids = await session.subscribe(["trade", "ticker", "trade"])  # duplicates collapsed
    assert sids == {"trade": 10, "ticker": 11}
    assert conn.sent == [{"id": 1, "cmd": "subscribe", "params": {"channels": ["trade", "ticker"]}}]
    assert session.subscriptions == {10: "trade", 11: "ticker"}
    conn.push(trade(10, 1))
    conn.push({"type": "ticker", "sid": 11, "msg": {"market_ticker": "M", "price_dollars": "0.5"}})
    items = await drain(session, 2)
    assert [type(i) for i in items] == [Trade, Ticker]
    assert items[0].received_at is not None
    assert await ws.subscribe(["orderbook_delta"], ["A"]) == {"orderbook_delta": 10}
    assert conn.sent[-1]["id"] == 2  # ids increase per session
    await ws.close()
    assert session.closed


async def test_command_error_raises_with_code() -> None:
    conn = FakeConn(kalshi_like)
    _, session = await open_session(conn)
    with pytest.raises(WsCommandError) as info:
        await session.subscribe(["bogus"])
    assert info.value.code == 8
    assert info.value.cmd == "subscribe"
    await session.close()


async def test_command_timeout() -> None:
    conn = FakeConn(None)  # never answers
    _, session = await open_session(conn, command_timeout=0.05)
    with pytest.raises(FeedError, match="no reply"):
        await session.list_subscriptions()
    await session.close()


async def test_gap_detected_and_stale_dropped() -> None:
    conn = FakeConn(kalshi_like)
    ws, session = await open_session(conn)
    for seq in (1, 2, 5, 5, 3, 6):
        conn.push(trade(10, seq))
    items = await drain(session, 5)
    kinds = [(type(i).__name__, getattr(i, "seq", None)) for i in items]
    assert kinds == [("Trade", 1), ("Trade", 2), ("GapDetected", 5), ("Trade", 5), ("Trade", 6)]
    gap = items[2]
    assert isinstance(gap, GapDetected)
    assert (gap.sid, gap.expected, gap.got) == (10, 3, 5)
    assert ws.stats.gaps == 1
    assert ws.stats.stale == 2
    assert session.last_seq(10) == 6
    await session.close()


async def test_control_replies_consume_sequence_numbers() -> None:
    conn = FakeConn(kalshi_like)
    _, session = await open_session(conn)
    conn.push(trade(10, 1))
    ok = await session.update_subscription(10, "add_markets", ["B"])  # ok carries seq 2
    assert ok is not None
    assert ok.market_tickers == ("B",)
    conn.push(trade(10, 3))
    conn.push({"type": "error", "sid": 10, "seq": 4, "msg": {"code": 25, "msg": "overflow"}})
    items = await drain(session, 3)
    assert [type(i) for i in items] == [Trade, Trade, ErrorFrame]  # no false gap
    assert isinstance(items[2], ErrorFrame)
    assert items[2].terminal
    await session.close()


async def test_get_snapshot_acked_by_snapshot_which_is_also_data() -> None:
    conn = FakeConn(kalshi_like)
    _, session = await open_session(conn)
    conn.push(trade(10, 1))
    assert await session.update_subscription(10, "get_snapshot", ["A", "B"]) is None
    items = await drain(session, 3)
    snaps = [i for i in items if isinstance(i, OrderbookSnapshot)]
    assert [s.market_ticker for s in snaps] == ["A", "B"]
    assert snaps[0].id == 1  # the command id of get_snapshot
    await session.close()


async def test_unsubscribe_and_list() -> None:
    conn = FakeConn(kalshi_like)
    _, session = await open_session(conn)
    await session.subscribe(["trade", "ticker"])
    assert await session.list_subscriptions() == (SubscriptionInfo("trade", 10),)
    await session.unsubscribe([10, 11])
    assert session.subscriptions == {}
    assert conn.sent[-1] == {"id": 3, "cmd": "unsubscribe", "params": {"sids": [10, 11]}}
    await session.unsubscribe([])
    await session.close()


async def test_disconnect_ends_iteration_and_fails_pending() -> None:
    conn = FakeConn(None)
    _, session = await open_session(conn, command_timeout=5.0)
    conn.push(trade(10, 1))
    pending = asyncio.create_task(session.list_subscriptions())
    await asyncio.sleep(0)
    conn.drop()
    items = await collect(session)
    assert isinstance(items[-1], Disconnected)
    assert "connection lost" in items[-1].reason
    assert not items[-1].by_client
    assert isinstance(items[0], Trade)
    with pytest.raises(FeedDisconnected):
        await pending
    with pytest.raises(FeedDisconnected):
        await session.subscribe(["trade"])
    await session.close()


async def test_undecodable_frames_are_skipped() -> None:
    conn = FakeConn(None)
    ws, session = await open_session(conn)
    conn.push_raw(b"{garbage")
    conn.push({"type": "brand_new", "sid": 1})
    conn.push(trade(10, 1))
    items = await drain(session, 2)
    assert isinstance(items[0], UnknownFrame)
    assert isinstance(items[1], Trade)
    assert ws.stats.decode_errors == 1
    assert ws.stats.decode.unknown_types == {"brand_new": 1}
    await session.close()


async def test_bounded_queue_applies_backpressure() -> None:
    conn = FakeConn(None)
    ws, session = await open_session(conn, queue_size=3)
    for seq in range(1, 11):
        conn.push(trade(10, seq))
    await asyncio.sleep(0.05)
    assert session.queue_depth == 3  # reading stops instead of buffering everything
    assert conn.paused
    assert len(conn.pending) == 7  # still "in the socket"
    items = await drain(session, 10)
    assert [i.seq for i in items] == list(range(1, 11))
    assert not conn.paused  # resumed once drained to half
    assert ws.stats.queue_high_water == 3
    await session.close()


async def test_one_read_may_overshoot_the_bound_then_reading_stops() -> None:
    conn = FakeConn(None)
    ws, session = await open_session(conn, queue_size=3)
    conn.push_batch([trade(10, seq) for seq in range(1, 6)])  # five frames in one socket read
    assert session.queue_depth == 5
    assert conn.paused
    conn.push(trade(10, 6))
    await asyncio.sleep(0.01)
    assert session.queue_depth == 5  # nothing more is read while paused
    items = await drain(session, 6)
    assert [i.seq for i in items] == list(range(1, 7))
    assert ws.stats.queue_high_water == 5
    await session.close()


async def test_receive_times_order_every_frame_of_the_connection() -> None:
    """Frames of one read get the read's time plus a microsecond each; a later read never goes
    back (a clock step, or a read within the same microsecond): a replay can order them."""
    conn = FakeConn(None)
    _, session = await open_session(conn)
    conn.push_batch([trade(10, 1), trade(10, 2)])
    conn.push(trade(10, 3))
    items = await drain(session, 3)
    assert items[1].received_at - items[0].received_at == timedelta(microseconds=1)
    assert items[2].received_at > items[1].received_at
    await session.close()


async def test_close_while_reader_is_blocked_still_ends_the_stream() -> None:
    conn = FakeConn(None)
    _, session = await open_session(conn, queue_size=1)
    for seq in range(1, 5):
        conn.push(trade(10, seq))
    await asyncio.sleep(0.01)
    await session.close()
    items = await collect(session)
    assert isinstance(items[-1], Disconnected)
    assert items[-1].by_client
    assert items[-1].reason == "closed by client"


async def test_silence_watchdog_closes_the_connection() -> None:
    conn = FakeConn(None)
    ws, session = await open_session(conn, ws_silence_timeout=0.1)
    items = await collect(session)
    assert isinstance(items[-1], Disconnected)
    assert items[-1].reason.startswith("silent")
    assert conn.closed
    assert ws.stats.silence_timeouts == 1
    await session.close()


async def test_watchdog_ignores_a_paused_socket_until_it_is_read_again() -> None:
    """Backpressure is not silence: while reading is paused (until the buffer drains to half),
    nothing arrives and the watchdog must not close the connection."""
    conn = FakeConn(None)
    _, session = await open_session(conn, queue_size=10, ws_silence_timeout=0.2)
    for seq in range(1, 13):
        conn.push(trade(10, seq))
    await asyncio.sleep(0.05)
    assert conn.paused
    assert len(session.take_nowait(4)) == 4  # 6 left: no longer full, still paused
    assert conn.paused
    await asyncio.sleep(0.5)  # well past the silence timeout, no activity at all
    assert not session.closed
    items = await drain(session, 8)
    assert [i.seq for i in items] == list(range(5, 13))
    await session.close()


async def test_watchdog_counts_any_activity() -> None:
    conn = FakeConn(None)
    _, session = await open_session(conn, ws_silence_timeout=0.2)
    loop = asyncio.get_running_loop()
    for _ in range(6):  # pings keep arriving (recorded by the connection), no data frames
        conn.last_activity = loop.time()
        await asyncio.sleep(0.05)
    assert not session.closed
    await session.close()


async def test_connect_forever_retries_then_raises_fatal(tmp_path: Path) -> None:
    private_pem, public_pem = auth.generate_key_pair("ed25519")
    (tmp_path / "k.pem").write_bytes(private_pem)
    key = auth.load_private_key(tmp_path / "k.pem")
    public = auth.load_public_key(public_pem)
    conns = [FakeConn(kalshi_like), FakeConn(kalshi_like)]
    outcomes: list[Any] = [
        OSError("refused"),
        InvalidStatus(Response(503, "busy", Headers())),
        conns[0],
        conns[1],
        InvalidStatus(Response(401, "no", Headers())),
    ]
    headers_seen: list[dict[str, str]] = []

    async def connector(url: str, **options: Any) -> FakeConn:
        headers_seen.append(options["additional_headers"])
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    clock_ms = iter(range(1_700_000_000_000, 1_700_000_100_000, 1000))
    ws = KalshiWebSocket(
        settings(),
        key,
        connector=connector,
        sleep=sleep,
        rng=random.Random(0),  # type: ignore[arg-type]
        clock=lambda: next(clock_ms) / 1000,
    )
    epochs = []

    async def run() -> None:
        async with contextlib.aclosing(ws.connect_forever()) as sessions:
            async for session in sessions:
                epochs.append(session.epoch)
                assert await session.subscribe(["trade"]) == {"trade": 10}
                conn = conns[session.epoch - 1]
                conn.push(trade(10, 1))
                conn.drop()
                items = await collect(session)
                assert isinstance(items[-1], Disconnected)

    with pytest.raises(FatalFeedError, match="401"):
        await run()
    assert epochs == [1, 2]
    assert ws.stats.connects == 2
    assert ws.stats.connect_failures == 2
    # two failures back off (0.5, 1.0 caps, jittered), success resets: then 0.5 again
    assert len(slept) == 4
    assert 0.25 <= slept[0] <= 0.5
    assert 0.5 <= slept[1] <= 1.0
    assert 0.25 <= slept[2] <= 0.5
    assert 0.25 <= slept[3] <= 0.5
    # every handshake is signed afresh
    stamps = [h["KALSHI-ACCESS-TIMESTAMP"] for h in headers_seen]
    assert len(set(stamps)) == len(stamps) == 5
    for h in headers_seen:
        assert h["KALSHI-ACCESS-KEY"] == "kid"
        assert auth.verify(
            public,
            h["KALSHI-ACCESS-SIGNATURE"],
            int(h["KALSHI-ACCESS-TIMESTAMP"]),
            "GET",
            "/trade-api/ws/v2",
        )


async def test_connect_forever_closes_session_on_early_exit() -> None:
    conn = FakeConn(kalshi_like)

    async def connector(url: str, **options: Any) -> FakeConn:
        assert options["additional_headers"] == {}  # no key: unsigned
        return conn

    ws = KalshiWebSocket(settings(), connector=connector)  # type: ignore[arg-type]
    async with contextlib.aclosing(ws.connect_forever()) as sessions:
        async for session in sessions:
            await session.subscribe(["ticker"])
            break
    assert conn.closed
    assert session.closed
    assert ws.session is None
    with pytest.raises(FeedDisconnected):
        await ws.subscribe(["trade"])


async def test_unexpected_connect_error_is_fatal() -> None:
    async def connector(url: str, **options: Any) -> FakeConn:
        raise ValueError("bug")

    ws = KalshiWebSocket(settings(), connector=connector)  # type: ignore[arg-type]
    with pytest.raises(FatalFeedError, match="bug"):
        async for _ in ws.connect_forever():
            pass
