"""A WsSession's per-sid state across the lifecycle of a subscription (fake connection).

Terminal errors (10/25) end a subscription whether or not they answer a command; a ``subscribed``
ack starts a sid afresh (Kalshi may hand a sid number out again); older acks without ``msg`` get
their channel from the command.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_kalshi_ws import FakeConn, drain, kalshi_like, open_session, trade

from kalshibook.collector.metrics import Metrics
from kalshibook.collector.router import Router
from kalshibook.collector.subscriber import Subscriber
from kalshibook.collector.subscriptions import GLOBAL_CHANNELS, SubscriptionPlan
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import FeedError, WsCommandError
from kalshibook.kalshi.sequencing import GapDetected
from kalshibook.kalshi.ws_frames import ErrorFrame, Ticker, Trade

TICKER = {"type": "ticker", "sid": 99, "msg": {"market_ticker": "A", "ts_ms": 1}}
"""An unsequenced frame that marks the end of what a test pushed."""


def channel_error(sid: int, seq: int, cmd_id: int | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"id": cmd_id} if cmd_id is not None else {}
    frame.update(type="error", sid=sid, seq=seq, msg={"code": 10, "msg": "Channel error"})
    return frame


async def until_ticker(session: Any, conn: FakeConn) -> list[Any]:
    """Every data-plane item up to the end marker (excluded)."""
    conn.push(TICKER)
    out: list[Any] = []
    while True:
        (item,) = await drain(session, 1)
        if isinstance(item, Ticker):
            return out
        out.append(item)


async def test_a_terminal_error_answering_a_command_fails_it_and_reaches_the_data_plane() -> None:
    async def reply(conn: FakeConn, cmd: dict[str, Any]) -> None:
        if cmd["cmd"] == "update_subscription":
            sid = cmd["params"]["sids"][0]
            conn.push(channel_error(sid, conn.next_seq(sid), cmd["id"]))
        else:
            await kalshi_like(conn, cmd)

    conn = FakeConn(reply)
    ws, s = await open_session(conn)
    sid = (await s.subscribe(["orderbook_delta"], ["A"]))["orderbook_delta"]
    with pytest.raises(WsCommandError) as raised:
        await s.update_subscription(sid, "add_markets", ["B"])
    assert raised.value.code == 10
    items = await until_ticker(s, conn)
    assert [(type(i), i.sid, i.code) for i in items] == [(ErrorFrame, sid, 10)]
    assert items[0].id is not None
    assert s.subscriptions[sid] == "orderbook_delta", "the data plane can tell its channel"
    assert s.last_seq(sid) is None, "the subscription is over: its sequence too"
    await ws.close()


async def test_a_terminal_error_without_a_sid_answering_a_command_ends_its_subscription() -> None:
    """KALSHI_API.md §2.1: an error's sid is optional. A terminal one answering a command on a
    subscription ends that subscription: the data plane gets it with the command's sid."""

    async def reply(conn: FakeConn, cmd: dict[str, Any]) -> None:
        if cmd["cmd"] == "update_subscription":
            conn.push({"id": cmd["id"], "type": "error", "msg": {"code": 10, "msg": "gone"}})
        else:
            await kalshi_like(conn, cmd)

    conn = FakeConn(reply)
    ws, s = await open_session(conn)
    sid = (await s.subscribe(["orderbook_delta"], ["A"]))["orderbook_delta"]
    with pytest.raises(WsCommandError) as raised:
        await s.update_subscription(sid, "add_markets", ["B"])
    assert raised.value.code == 10
    items = await until_ticker(s, conn)
    assert [(type(i), i.sid, i.code) for i in items] == [(ErrorFrame, sid, 10)]
    await ws.close()


async def test_an_error_reply_naming_the_sid_but_not_the_command_fails_it_at_once() -> None:
    """The [P0] DEMO capture: an error answering update_subscription carries sid and seq but no
    id. The command on that sid fails with it (not after its timeout); a non-terminal error
    stays on the control plane."""

    async def reply(conn: FakeConn, cmd: dict[str, Any]) -> None:
        if cmd["cmd"] == "update_subscription":
            sid = cmd["params"]["sids"][0]
            conn.push(
                {
                    "type": "error",
                    "sid": sid,
                    "seq": conn.next_seq(sid),
                    "msg": {"code": 13, "msg": "Unsupported action"},
                }
            )
        else:
            await kalshi_like(conn, cmd)

    conn = FakeConn(reply)
    ws, s = await open_session(conn, command_timeout=3)
    sid = (await s.subscribe(["trade"]))["trade"]
    with pytest.raises(WsCommandError) as raised:  # unmatched, it was a FeedError: "no reply"
        await s.update_subscription(sid, "get_snapshot", ["M"])
    assert raised.value.code == 13
    assert await until_ticker(s, conn) == []
    await ws.close()


async def test_a_non_terminal_error_answering_a_command_stays_on_the_control_plane() -> None:
    async def reply(conn: FakeConn, cmd: dict[str, Any]) -> None:
        if cmd["cmd"] == "update_subscription":
            sid = cmd["params"]["sids"][0]
            conn.push(
                {
                    "id": cmd["id"],
                    "type": "error",
                    "sid": sid,
                    "seq": conn.next_seq(sid),
                    "msg": {"code": 27, "msg": "Too many requests"},
                }
            )
        else:
            await kalshi_like(conn, cmd)

    conn = FakeConn(reply)
    ws, s = await open_session(conn)
    sid = (await s.subscribe(["orderbook_delta"], ["A"]))["orderbook_delta"]
    with pytest.raises(WsCommandError):
        await s.update_subscription(sid, "get_snapshot", ["A"])
    assert await until_ticker(s, conn) == []
    assert s.last_seq(sid) == 1, "the error consumed a seq; the sid goes on"
    await ws.close()


@pytest.mark.parametrize("with_id", [False, True], ids=["unsolicited", "answering-a-command"])
async def test_a_sid_number_reused_after_a_terminal_error_starts_a_fresh_sequence(
    with_id: bool,
) -> None:
    async def reply(conn: FakeConn, cmd: dict[str, Any]) -> None:
        if cmd["cmd"] == "subscribe":  # the exchange hands out sid 10 every time
            conn.push(
                {"id": cmd["id"], "type": "subscribed", "msg": {"channel": "trade", "sid": 10}}
            )
        elif cmd["cmd"] == "update_subscription":
            conn.push(channel_error(10, 6, cmd["id"]))
        else:
            await kalshi_like(conn, cmd)

    conn = FakeConn(reply)
    ws, s = await open_session(conn)
    await s.subscribe(["trade"], ["M"])
    for i in range(1, 6):
        conn.push(trade(10, i))
    if with_id:
        for _ in range(5):
            await drain(s, 1)
        with pytest.raises(WsCommandError):
            await s.update_subscription(10, "add_markets", ["N"])
    else:
        conn.push(channel_error(10, 6))  # the next seq: the frame's fast path
    before = await until_ticker(s, conn)
    assert sum(isinstance(i, ErrorFrame) for i in before) == 1
    assert s.last_seq(10) is None, "the subscription is over: its sequence too"
    assert await s.subscribe(["trade"]) == {"trade": 10}  # seq restarts at 1
    for i in range(1, 4):
        conn.push(trade(10, i, "n"))
    after = await until_ticker(s, conn)
    assert [(type(i), i.seq) for i in after] == [(Trade, 1), (Trade, 2), (Trade, 3)]
    assert ws.stats.stale == 0
    await ws.close()


async def test_a_new_ack_naming_a_sid_starts_its_sequence_afresh() -> None:
    """An ack for a sid number still known (its unsubscribe was never confirmed): the new
    subscription's first frame is not stale, and no gap is reported."""

    async def reply(conn: FakeConn, cmd: dict[str, Any]) -> None:
        if cmd["cmd"] == "subscribe":
            conn.push(
                {"id": cmd["id"], "type": "subscribed", "msg": {"channel": "trade", "sid": 10}}
            )
        elif cmd["cmd"] == "unsubscribe":
            pass  # lost
        else:
            await kalshi_like(conn, cmd)

    conn = FakeConn(reply)
    ws, s = await open_session(conn, command_timeout=0.2)
    await s.subscribe(["trade"])
    for i in range(1, 6):
        conn.push(trade(10, i))
    assert len(await until_ticker(s, conn)) == 5
    with pytest.raises(FeedError, match="no reply"):
        await s.unsubscribe([10])
    assert s.last_seq(10) == 5, "not confirmed: the session still knows sid 10"
    await s.subscribe(["trade"])
    for i in (1, 2):
        conn.push(trade(10, i, "n"))
    after = await until_ticker(s, conn)
    assert [(type(i), i.seq) for i in after] == [(Trade, 1), (Trade, 2)]
    assert not any(isinstance(i, GapDetected) for i in after)
    assert ws.stats.stale == 0
    await ws.close()


async def msgless_acks(conn: FakeConn, cmd: dict[str, Any]) -> None:
    """Older acks: ``{"id","type":"subscribed","sid"}``, no ``msg``; sids from 1."""
    if cmd["cmd"] == "subscribe":
        for _ in cmd["params"]["channels"]:
            sid = len(conn.seqs) + 1
            conn.seqs[sid] = 0
            conn.push({"id": cmd["id"], "type": "subscribed", "sid": sid})
    else:
        await kalshi_like(conn, cmd)


async def test_acks_without_msg_take_their_channels_from_the_command() -> None:
    conn = FakeConn(msgless_acks)
    ws, s = await open_session(conn)
    assert await s.subscribe(list(GLOBAL_CHANNELS)) == {
        c: i + 1 for i, c in enumerate(GLOBAL_CHANNELS)
    }
    assert await s.subscribe(["orderbook_delta"], ["A"]) == {"orderbook_delta": 4}
    assert s.subscriptions == {
        1: "market_lifecycle_v2",
        2: "trade",
        3: "ticker",
        4: "orderbook_delta",
    }
    await ws.close()


async def test_a_global_channel_subscribed_with_an_ack_without_msg_is_resubscribed() -> None:
    conn = FakeConn(msgless_acks)
    ws, s = await open_session(conn)
    plan, work = SubscriptionPlan(10), WorkQueues()
    router = Router(effects=work)
    router.sid_channels = s.subscriptions
    sub = Subscriber(
        plan=plan,
        router=router,
        work=work,
        metrics=Metrics(),
        current_session=lambda: s,
        stop=asyncio.Event(),
    )
    await sub.sync(s)
    assert plan.global_sids == {"market_lifecycle_v2": 1, "trade": 2, "ticker": 3}
    conn.push(channel_error(2, 1))  # the trade subscription fails
    for item in await until_ticker(s, conn):
        router.handle(item)
    assert work.resubscribe_sids == {2: ("trade", "error_10")}
    sent = len(conn.sent)
    await sub.sync(s)
    assert [c["params"] for c in conn.sent[sent:]] == [{"channels": ["trade"]}]
    assert plan.global_sids == {"market_lifecycle_v2": 1, "trade": 4, "ticker": 3}
    await ws.close()
