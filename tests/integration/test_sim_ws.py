"""The simulator's WebSocket protocol, through a plain websockets client over a real socket."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sim_support import (
    ED_KEY_ID,
    recv,
    recv_all,
    running_sim,
    send,
    seq_gaps,
    ws_client,
    ws_headers,
)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kalshibook.sim import SimServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi"
ALL = ["orderbook_delta", "ticker", "trade", "market_lifecycle_v2"]


def open_tickers(sim: SimServer, n: int) -> list[str]:
    return [m.ticker for m in sim.model.market_list if m.status == "active" and m.yes and m.no][:n]


async def subscribe(ws: Any, cmd_id: int, channels: list[str], **params: Any) -> dict[str, int]:
    await send(ws, {"id": cmd_id, "cmd": "subscribe", "params": {"channels": channels, **params}})
    sids = {}
    for _ in channels:
        ack = await recv(ws)
        assert ack["type"] == "subscribed", ack
        assert ack["id"] == cmd_id
        sids[ack["msg"]["channel"]] = ack["msg"]["sid"]
    return sids


async def test_handshake_requires_a_valid_signature() -> None:
    async with running_sim() as sim:
        for headers in (
            None,
            {**ws_headers(), "KALSHI-ACCESS-SIGNATURE": "AAAA"},
            ws_headers(now_ms=1_000),
        ):
            with pytest.raises(InvalidStatus) as info:
                async with connect(sim.ws_url, additional_headers=headers):
                    pass
            assert info.value.response.status_code == 401
        async with connect(sim.ws_url, additional_headers=ws_headers(ED_KEY_ID, "ed25519")):
            pass
        assert sim.stats["auth_rejected"] == 3


async def test_subscribe_acks_snapshots_then_contiguous_deltas() -> None:
    async with running_sim(markets=40) as sim, ws_client(sim) as ws:
        tickers = open_tickers(sim, 6)
        sids = await subscribe(ws, 1, ALL, market_tickers=tickers)
        assert list(sids) == ALL
        assert len(set(sids.values())) == 4
        snaps = [await recv(ws) for _ in tickers]
        assert [s["type"] for s in snaps] == ["orderbook_snapshot"] * len(tickers)
        assert [s["msg"]["market_ticker"] for s in snaps] == tickers
        assert [s["seq"] for s in snaps] == list(range(1, len(tickers) + 1))
        assert all(s["sid"] == sids["orderbook_delta"] for s in snaps)
        for _ in range(30):
            sim.step(50)
        frames = await recv_all(ws)
        assert not seq_gaps(snaps + frames)
        kinds = {f["type"] for f in frames}
        assert {"orderbook_delta", "trade", "ticker"} <= kinds
        for f in frames:
            if f["type"] == "ticker":
                assert "seq" not in f
                assert f["sid"] == sids["ticker"]
            elif f["type"] == "orderbook_delta":
                assert f["sid"] == sids["orderbook_delta"]
                assert f["msg"]["market_ticker"] in tickers
            elif f["type"] == "trade":
                assert f["sid"] == sids["trade"]
        # Snapshot + deltas rebuild exactly the exchange's books.
        books: dict[str, dict[str, dict[Decimal, Decimal]]] = {}
        for s in snaps:
            m = s["msg"]
            books[m["market_ticker"]] = {
                "yes": {Decimal(p): Decimal(q) for p, q in m.get("yes_dollars_fp", [])},
                "no": {Decimal(p): Decimal(q) for p, q in m.get("no_dollars_fp", [])},
            }
        for f in frames:
            if f["type"] != "orderbook_delta":
                continue
            m = f["msg"]
            side = books[m["market_ticker"]][m["side"]]
            price = Decimal(m["price_dollars"])
            side[price] = side.get(price, Decimal(0)) + Decimal(m["delta_fp"])
            if side[price] == 0:
                del side[price]
        for t in tickers:
            model = sim.model.markets[t]
            assert books[t]["yes"] == {
                Decimal(p) / 10_000: Decimal(s) / 100 for p, s in model.yes.items()
            }
            assert books[t]["no"] == {
                Decimal(p) / 10_000: Decimal(s) / 100 for p, s in model.no.items()
            }


async def test_frames_have_kalshi_2026_shapes() -> None:
    spec = json.loads((FIXTURES / "ws_official_asyncapi_examples.json").read_text())
    examples = spec["channel_messages"]
    async with running_sim(markets=30) as sim, ws_client(sim) as ws:
        tickers = open_tickers(sim, 30)
        await subscribe(ws, 1, ["market_lifecycle_v2"])
        await subscribe(ws, 2, ["orderbook_delta", "ticker", "trade"], market_tickers=tickers)
        for _ in range(10):
            sim.step(100)
        frames = await recv_all(ws)
        seen: dict[str, dict[str, Any]] = {}
        for f in frames:
            seen.setdefault(f["type"], f)
        for kind in ("orderbook_snapshot", "orderbook_delta", "trade", "ticker"):
            ours, theirs = seen[kind], examples[kind]
            assert list(ours) == list(theirs), kind
            if kind == "orderbook_snapshot":
                assert set(ours["msg"]) <= set(theirs["msg"])
            else:
                assert set(ours["msg"]) == set(theirs["msg"]), kind
        delta = seen["orderbook_delta"]["msg"]
        assert delta["delta_fp"].lstrip("-").count(".") == 1
        assert isinstance(delta["ts_ms"], int)
        trade = seen["trade"]["msg"]
        assert Decimal(trade["yes_price_dollars"]) + Decimal(trade["no_price_dollars"]) == 1
        assert {trade["taker_outcome_side"], trade["taker_book_side"]} in (
            {"yes", "bid"},
            {"no", "ask"},
        )


async def test_get_snapshot_on_the_same_seq_stream() -> None:
    async with running_sim(markets=20) as sim, ws_client(sim) as ws:
        tickers = open_tickers(sim, 3)
        sids = await subscribe(ws, 1, ["orderbook_delta", "trade"], market_tickers=tickers)
        await recv_all(ws)
        sim.step(100)
        before = await recv_all(ws)
        book_sid = sids["orderbook_delta"]
        await send(
            ws,
            {
                "id": 7,
                "cmd": "update_subscription",
                "params": {
                    "sids": [book_sid],
                    "market_tickers": tickers[:2],
                    "action": "get_snapshot",
                },
            },
        )
        snaps = await recv_all(ws)
        assert [s["type"] for s in snaps] == ["orderbook_snapshot"] * 2
        assert all(s["id"] == 7 and s["sid"] == book_sid for s in snaps)
        assert [s["msg"]["market_ticker"] for s in snaps] == tickers[:2]
        last_book_seq = max(f["seq"] for f in before if f["sid"] == book_sid)
        assert [s["seq"] for s in snaps] == [last_book_seq + 1, last_book_seq + 2]
        m = sim.model.markets[tickers[0]]
        assert snaps[0]["msg"] == json.loads(json.dumps(sim.model.snapshot_msg(m)))
        # get_snapshot on the trade sid: error 13, which consumes a seq of that sid.
        trade_seq = max((f["seq"] for f in before if f["sid"] == sids["trade"]), default=0)
        await send(
            ws,
            {
                "id": 8,
                "cmd": "update_subscription",
                "params": {
                    "sid": sids["trade"],
                    "market_tickers": tickers,
                    "action": "get_snapshot",
                },
            },
        )
        err = await recv(ws)
        assert err["type"] == "error"
        assert err["msg"]["code"] == 13
        assert err["sid"] == sids["trade"]
        assert err["seq"] == trade_seq + 1


async def test_update_add_delete_list_and_unsubscribe() -> None:
    async with running_sim(markets=30) as sim, ws_client(sim) as ws:
        a, b, c = open_tickers(sim, 3)
        sids = await subscribe(ws, 1, ["orderbook_delta", "ticker"], market_tickers=[a])
        sid = sids["orderbook_delta"]
        assert (await recv(ws))["seq"] == 1
        await send(
            ws,
            {
                "id": 2,
                "cmd": "update_subscription",
                "params": {"sid": sid, "market_tickers": [b, c], "action": "add_markets"},
            },
        )
        ok = await recv(ws)
        assert ok == {
            "id": 2,
            "type": "ok",
            "sid": sid,
            "seq": 2,
            "msg": {"market_tickers": [a, b, c]},
        }
        snaps = [await recv(ws), await recv(ws)]
        assert [s["msg"]["market_ticker"] for s in snaps] == [b, c]
        assert [s["seq"] for s in snaps] == [3, 4]
        await send(
            ws,
            {
                "id": 3,
                "cmd": "update_subscription",
                "params": {"sids": [sid], "market_ticker": a, "action": "delete_markets"},
            },
        )
        ok = await recv(ws)
        assert ok["msg"] == {"market_tickers": [b, c]}
        assert ok["seq"] == 5
        for _ in range(20):
            sim.step(100)
        frames = await recv_all(ws)
        assert not [
            f for f in frames if f["type"] == "orderbook_delta" and f["msg"]["market_ticker"] == a
        ]
        await send(ws, {"id": 4, "cmd": "list_subscriptions"})
        listed = await recv(ws)
        assert listed == {
            "id": 4,
            "type": "ok",
            "msg": [
                {"channel": "orderbook_delta", "sid": sid},
                {"channel": "ticker", "sid": sids["ticker"]},
            ],
        }
        await send(ws, {"id": 5, "cmd": "unsubscribe", "params": {"sids": [sid]}})
        unsub = await recv(ws)
        assert unsub["type"] == "unsubscribed"
        assert unsub["sid"] == sid
        assert unsub["id"] == 5
        last = max(f["seq"] for f in frames if f.get("sid") == sid) if frames else 5
        assert unsub["seq"] == last + 1
        sim.step(300)
        frames = await recv_all(ws)
        assert all(f["sid"] == sids["ticker"] for f in frames)


async def test_initial_ticker_snapshot_and_all_market_channels() -> None:
    async with running_sim(markets=20) as sim, ws_client(sim) as ws:
        tickers = open_tickers(sim, 2)
        sid = (
            await subscribe(ws, 1, ["ticker"], market_tickers=tickers, send_initial_snapshot=True)
        )["ticker"]
        first = [await recv(ws), await recv(ws)]
        assert [f["msg"]["market_ticker"] for f in first] == tickers
        assert all(f["sid"] == sid and "seq" not in f for f in first)
        trade_sid = (await subscribe(ws, 2, ["trade"]))["trade"]
        sim.step(500)
        frames = await recv_all(ws)
        traded = {f["msg"]["market_ticker"] for f in frames if f["sid"] == trade_sid}
        assert len(traded) > 2, "an unfiltered trade subscription sees every market"


async def test_lifecycle_channel() -> None:
    async with (
        running_sim(markets=10, lifetime=2, new_markets_per_min=300) as sim,
        ws_client(sim) as ws,
    ):
        sid = (await subscribe(ws, 1, ["market_lifecycle_v2"]))["market_lifecycle_v2"]
        now = sim.model.now_ms
        for i in range(1, 60):
            sim.step(0, now_ms=now + i * 100)
        frames = await recv_all(ws)
        assert frames
        assert all(f["sid"] == sid for f in frames)
        assert not seq_gaps(frames)
        types = {f["type"] for f in frames}
        assert types == {"market_lifecycle_v2", "event_lifecycle"}
        events = {f["msg"]["event_type"] for f in frames if f["type"] == "market_lifecycle_v2"}
        assert {"created", "activated", "determined", "settled"} <= events
        created = next(
            f["msg"]
            for f in frames
            if f["type"] == "market_lifecycle_v2" and f["msg"]["event_type"] == "created"
        )
        assert {
            "open_ts",
            "close_ts",
            "additional_metadata",
            "price_level_structure",
            "price_ranges",
        } <= set(created)
        assert created["additional_metadata"]["event_ticker"]


@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        ({"id": 1, "cmd": "dance"}, 5),
        ({"id": 1, "cmd": "subscribe"}, 2),
        ({"id": 1, "cmd": "subscribe", "params": {}}, 3),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": []}}, 3),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["fills_v9"]}}, 8),
        ({"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 14),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["ticker"], "market_tickers": ["NOPE-1"]},
            },
            11,
        ),
        (
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {"channels": ["ticker"], "market_ticker": "A", "market_tickers": ["B"]},
            },
            11,
        ),
        (
            {"id": 1, "cmd": "subscribe", "params": {"channels": ["trade"], "use_yes_price": True}},
            11,
        ),
        ({"id": 1, "cmd": "unsubscribe", "params": {}}, 4),
        ({"id": 1, "cmd": "unsubscribe", "params": {"sids": [99]}}, 7),
        ({"id": 1, "cmd": "update_subscription", "params": {"action": "add_markets"}}, 12),
        ({"id": 1, "cmd": "update_subscription", "params": {"sids": [1, 2]}}, 12),
        (
            {"id": 1, "cmd": "update_subscription", "params": {"sid": 42, "action": "add_markets"}},
            7,
        ),
    ],
)
async def test_error_codes(cmd: dict[str, Any], code: int) -> None:
    async with running_sim(markets=5, no_auth=True) as sim, ws_client(sim) as ws:
        await send(ws, cmd)
        err = await recv(ws)
        assert err["type"] == "error"
        assert err["id"] == 1
        assert err["msg"]["code"] == code
        assert err["msg"]["msg"]


async def test_sid_scoped_error_codes() -> None:
    async with running_sim(markets=10, no_auth=True) as sim, ws_client(sim) as ws:
        t = open_tickers(sim, 1)[0]
        sids = await subscribe(ws, 1, ["orderbook_delta", "market_lifecycle_v2"], market_ticker=t)
        await recv_all(ws)
        book = sids["orderbook_delta"]
        cases: list[tuple[dict[str, Any], int]] = [
            ({"sid": book}, 15),
            ({"sid": book, "action": "explode"}, 13),
            ({"sid": book, "action": "add_markets"}, 14),
            ({"sid": book, "action": "add_markets", "market_tickers": ["NOPE-1"]}, 11),
            (
                {
                    "sid": sids["market_lifecycle_v2"],
                    "action": "add_markets",
                    "market_tickers": [t],
                },
                13,
            ),
        ]
        for n, (params, code) in enumerate(cases, start=10):
            await send(ws, {"id": n, "cmd": "update_subscription", "params": params})
            err = await recv(ws)
            assert err["msg"]["code"] == code, params
            assert err["id"] == n
            assert err["sid"] == params["sid"]
        await ws.send("{not json")
        assert (await recv(ws))["msg"]["code"] == 1


async def test_many_subscriptions_stay_independent() -> None:
    async with running_sim(markets=60, no_auth=True) as sim, ws_client(sim) as ws:
        tickers = open_tickers(sim, 40)
        shards = [tickers[i : i + 10] for i in range(0, 40, 10)]
        for i, shard in enumerate(shards):
            await send(
                ws,
                {
                    "id": i + 1,
                    "cmd": "subscribe",
                    "params": {"channels": ["orderbook_delta"], "market_tickers": shard},
                },
            )
        for _ in range(20):
            sim.step(200)
        frames = await recv_all(ws)
        acks = [f for f in frames if f["type"] == "subscribed"]
        assert [a["id"] for a in acks] == [1, 2, 3, 4]
        sids = [a["msg"]["sid"] for a in acks]
        assert len(set(sids)) == 4
        frames = [f for f in frames if f["type"] != "subscribed"]
        assert not seq_gaps(frames)
        for sid, shard in zip(sids, shards, strict=True):
            mine = [f for f in frames if f["sid"] == sid]
            assert [f["seq"] for f in mine] == list(range(1, len(mine) + 1))
            assert {f["msg"]["market_ticker"] for f in mine} <= set(shard)


async def test_autopump_rate() -> None:
    async with (
        running_sim(markets=50, no_auth=True, autopump=True, rate=2000) as sim,
        ws_client(sim) as ws,
    ):
        tickers = [m.ticker for m in sim.model.market_list if m.status == "active"]
        await subscribe(ws, 1, ALL, market_tickers=tickers)
        frames = await recv_all_for(ws, 1.0)
        data = [f for f in frames if f["type"] in ("orderbook_delta", "trade", "ticker")]
        # paced: never (much) faster than the rate; how fast it gets is measured in bench/
        assert 0 < len(data) <= 2800
        assert not seq_gaps(frames)


async def recv_all_for(ws: Any, seconds: float) -> list[dict[str, Any]]:
    import asyncio

    out: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            out.append(await recv(ws, left))
        except TimeoutError:
            break
    return out
