"""Order book at an instant against an independent reference, gaps, raw deltas and replay."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from api_support import B45, J16, SEED, T0, assert_problem, reference_book, walk

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

D = Decimal


def rfc(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def as_dict(levels: list[list[str]]) -> dict[Decimal, Decimal]:
    return {D(p): D(s) for p, s in levels}


def expected_gap(at: datetime, snap_ts: datetime | None) -> str | None:
    if snap_ts is None:
        return "no_snapshot"
    hits = [(f, reason) for f, t, reason in SEED.gaps if f <= at and (t > at or f > snap_ts)]
    return max(hits)[1] if hits else None


def check_book(body: dict, at: datetime) -> None:
    ref = reference_book(SEED, SEED.snapshots, SEED.deltas, at)
    data = body["data"]
    assert datetime.fromisoformat(data["at"]) == at
    if ref is None:
        assert data["complete"] is False
        assert data["gap"]["reason"] == "no_snapshot"
        assert data["gap"]["from_ts"] is None
        assert datetime.fromisoformat(data["gap"]["to_ts"]) == T0
        assert data["yes_bids"] == []
        assert data["no_bids"] == []
        assert data["snapshot"] is None
        assert data["last_event"] is None
        return
    snap, book, applied = ref
    assert as_dict(data["yes_bids"]) == book["yes"], at
    assert as_dict(data["no_bids"]) == book["no"], at
    # Kalshi's order: ascending by price, best bid last; exact strings
    for side in ("yes_bids", "no_bids"):
        prices = [D(p) for p, _ in data[side]]
        assert prices == sorted(prices)
        for p, s in data[side]:
            assert len(p.split(".")[1]) >= 4
            assert len(s.split(".")[1]) == 2
    best = data["best"]
    if book["yes"]:
        top = max(book["yes"])
        assert D(best["yes_bid_dollars"]) == top
        assert D(best["yes_bid_size_fp"]) == book["yes"][top]
        assert D(best["no_ask_dollars"]) == 1 - top
        assert D(best["no_ask_size_fp"]) == book["yes"][top]
    else:
        assert best["yes_bid_dollars"] is None
        assert best["no_ask_dollars"] is None
    if book["no"]:
        top = max(book["no"])
        assert D(best["no_bid_dollars"]) == top
        assert D(best["yes_ask_dollars"]) == 1 - top
        assert D(best["yes_ask_size_fp"]) == book["no"][top]
    else:
        assert best["no_bid_dollars"] is None
        assert best["yes_ask_dollars"] is None
    assert datetime.fromisoformat(data["snapshot"]["ts"]) == snap.ts
    assert data["snapshot"]["source"] == snap.source
    assert data["deltas_applied"] == len(applied)
    last = data["last_event"]
    if applied:
        final = max(applied, key=lambda d: d.seq)
        assert (last["kind"], last["epoch"], last["seq"]) == ("delta", final.epoch, final.seq)
        assert datetime.fromisoformat(last["ts"]) == final.ts
    else:
        assert (last["kind"], last["seq"]) == ("snapshot", snap.seq)
    reason = expected_gap(at, snap.ts)
    assert data["complete"] is (reason is None), at
    assert (data["gap"] or {}).get("reason") == reason


async def test_orderbook_equals_reference_at_many_instants(client) -> None:
    instants = [T0 - timedelta(seconds=5), T0, T0 + timedelta(milliseconds=500)]
    instants += [T0 + timedelta(seconds=s) for s in range(1, 200, 3)]
    instants += [
        T0 + timedelta(seconds=s)
        for s in (60, 61, 62, 101, 119, 120, 125, 129, 130, 131, 140, 169, 170, 175, 500)
    ]
    instants += [T0 + timedelta(seconds=61, microseconds=-1)]
    for at in instants:
        r = await client.get(f"/v1/markets/{B45}/orderbook", params={"at": rfc(at)})
        assert r.status_code == 200, r.text
        check_book(r.json(), at)


async def test_orderbook_gap_and_time_formats(client) -> None:
    inside = T0 + timedelta(seconds=125)
    r = await client.get(
        f"/v1/markets/{B45}/orderbook", params={"at": str(int(inside.timestamp()))}
    )
    data = r.json()["data"]
    assert data["complete"] is False
    assert data["gap"] == {
        "from_ts": "2026-01-15T12:02:00Z",
        "to_ts": "2026-01-15T12:02:10Z",
        "reason": "disconnect",
    }
    # after the repairing snapshot of epoch 2: complete again, the stale epoch-1 delta ignored
    r = await client.get(f"/v1/markets/{B45}/orderbook", params={"at": "2026-01-15T13:02:45+01:00"})
    data = r.json()["data"]
    assert data["complete"] is True
    assert data["snapshot"]["epoch"] == 2
    assert D("0.1") not in as_dict(data["no_bids"])
    # depth keeps the best levels; 0 means all
    full = (
        await client.get(
            f"/v1/markets/{B45}/orderbook", params={"at": rfc(T0 + timedelta(seconds=90))}
        )
    ).json()["data"]
    top2 = (
        await client.get(
            f"/v1/markets/{B45}/orderbook",
            params={"at": rfc(T0 + timedelta(seconds=90)), "depth": 2},
        )
    ).json()["data"]
    assert top2["yes_bids"] == full["yes_bids"][-2:]
    assert top2["no_bids"] == full["no_bids"][-2:]
    assert top2["best"] == full["best"]
    zero = (
        await client.get(
            f"/v1/markets/{B45}/orderbook",
            params={"at": rfc(T0 + timedelta(seconds=90)), "depth": 0},
        )
    ).json()["data"]
    assert zero["yes_bids"] == full["yes_bids"]
    # no `at`: now (after the unrepaired gap)
    r = await client.get(f"/v1/markets/{B45}/orderbook")
    assert r.status_code == 200
    assert r.json()["data"]["complete"] is False


async def test_orderbook_of_market_without_book_and_bad_input(client) -> None:
    r = await client.get(f"/v1/markets/{J16}/orderbook", params={"at": rfc(T0)})
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["complete"] is False
    assert data["gap"]["reason"] == "no_snapshot"
    assert data["gap"]["to_ts"] is None
    path = f"/v1/markets/{B45}/orderbook"
    assert_problem(await client.get("/v1/markets/NOPE/orderbook"), 404, "ticker")
    assert_problem(await client.get(path, params={"at": "noon"}), 400, "at")
    assert_problem(await client.get(path, params={"at": "2026-01-15T12:00:00"}), 400, "at")
    assert_problem(await client.get(path, params={"at": "99999999999999"}), 400, "at")
    assert_problem(await client.get(path, params={"depth": -1}), 400, "depth")
    assert_problem(await client.get(path, params={"depth": 101}), 400, "depth")
    assert_problem(await client.get(path, params={"depth": "deep"}), 400, "depth")


async def test_deltas_walk_and_replay_with_book(client) -> None:
    start, end = T0 + timedelta(seconds=30), T0 + timedelta(seconds=100)
    body = (
        await client.get(
            f"/v1/markets/{B45}/deltas",
            params={"start": rfc(start), "end": rfc(end), "with_book": "true", "limit": 7},
        )
    ).json()
    rows = await walk(client, f"/v1/markets/{B45}/deltas", limit=7, start=rfc(start), end=rfc(end))
    expected = sorted(
        (d for d in SEED.deltas if start <= d.ts < end), key=lambda d: (d.ts, d.epoch, d.seq)
    )
    assert [(r["epoch"], r["seq"]) for r in rows] == [(d.epoch, d.seq) for d in expected]
    assert rows[0]["delta_fp"] == f"{expected[0].delta:.2f}"
    assert D(rows[0]["price_dollars"]) == expected[0].price
    # the starting book is the book just before `start`; replaying the page walk gives `end`'s
    book = body["book"]
    assert book is not None
    assert body["data"][0]["seq"] == expected[0].seq
    ref_before = reference_book(
        SEED, SEED.snapshots, SEED.deltas, start - timedelta(microseconds=1)
    )
    assert ref_before is not None
    assert as_dict(book["yes_bids"]) == ref_before[1]["yes"]
    assert as_dict(book["no_bids"]) == ref_before[1]["no"]
    replay = {"yes": as_dict(book["yes_bids"]), "no": as_dict(book["no_bids"])}
    for r in rows:
        level = replay[r["side"]].get(D(r["price_dollars"]), D(0)) + D(r["delta_fp"])
        if level > 0:
            replay[r["side"]][D(r["price_dollars"])] = level
        else:
            replay[r["side"]].pop(D(r["price_dollars"]), None)
    ref_end = reference_book(SEED, SEED.snapshots, SEED.deltas, end - timedelta(microseconds=1))
    assert ref_end is not None
    assert replay == ref_end[1]
    # later pages do not repeat the book
    second = (
        await client.get(
            f"/v1/markets/{B45}/deltas",
            params={"cursor": body["next_cursor"], "with_book": "true", "limit": 7},
        )
    ).json()
    assert second["book"] is None


async def test_deltas_bad_input(client) -> None:
    path = f"/v1/markets/{B45}/deltas"
    assert_problem(await client.get("/v1/markets/NOPE/deltas"), 404, "ticker")
    assert_problem(await client.get(path, params={"with_book": "true"}), 400, "start")
    assert_problem(await client.get(path, params={"with_book": "maybe"}), 400, "with_book")
    assert_problem(await client.get(path, params={"start": "x"}), 400, "start")
    assert_problem(
        await client.get(path, params={"start": rfc(T0), "end": rfc(T0 - timedelta(1))}),
        400,
        "end",
    )
    assert_problem(await client.get(path, params={"limit": 5000}), 400, "limit")
    assert_problem(await client.get(path, params={"cursor": "%%%"}), 400, "cursor")
    r = await client.get(f"/v1/markets/{J16}/deltas")
    assert r.status_code == 200
    assert r.json()["data"] == []


async def test_gaps(client) -> None:
    rows = await walk(client, f"/v1/markets/{B45}/gaps", limit=1)
    assert [(r["reason"], r["from_ts"]) for r in rows] == [
        ("disconnect", "2026-01-15T12:02:00Z"),
        ("seq_gap", "2026-01-15T12:02:50Z"),
    ]
    # overlap with [start, end)
    rows = await walk(
        client,
        f"/v1/markets/{B45}/gaps",
        limit=10,
        start=rfc(T0 + timedelta(seconds=129)),
        end=rfc(T0 + timedelta(seconds=171)),
    )
    assert [r["reason"] for r in rows] == ["disconnect", "seq_gap"]
    rows = await walk(
        client, f"/v1/markets/{B45}/gaps", limit=10, start=rfc(T0 + timedelta(seconds=130))
    )
    assert [r["reason"] for r in rows] == ["seq_gap"]
    r = await client.get(f"/v1/markets/{J16}/gaps")
    assert r.status_code == 200
    assert r.json()["data"] == []
    assert_problem(await client.get("/v1/markets/NOPE/gaps"), 404, "ticker")
    assert_problem(await client.get(f"/v1/markets/{B45}/gaps?end=later"), 400, "end")
    assert_problem(await client.get(f"/v1/markets/{B45}/gaps?limit=0"), 400, "limit")
    assert_problem(await client.get(f"/v1/markets/{B45}/gaps?cursor=xyz"), 400, "cursor")
