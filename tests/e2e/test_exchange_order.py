"""Exchange order (issue #14): trades that share a millisecond keep the exchange's order in
storage, in the trades walk and in candle open/close, on both editions, whichever path (WebSocket
or REST) stored them.

The simulator prints sweeps (one taker, 2-4 levels, one trade per level in one millisecond) and
steps several frames per millisecond, so many periods start or end on a millisecond that holds
several trades at different prices. Truth candles are computed here, independently, from the
simulator's truth file (which lists trades in exchange order).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import psycopg
import pytest
from e2e_harness import check_trades, drive, run_daemon, settings_for, settle
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.collector.backfill import Backfill
from kalshibook.collector.catalog import Catalog
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.work import WorkQueues
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.settings import ApiSettings, CoreSettings, Settings
from kalshibook.sim.server import SimConfig, SimServer
from kalshibook.sim.truth import TruthTrade
from kalshibook.storage.api_keys import create_key
from kalshibook.storage.candles import refresh_candles
from kalshibook.storage.pool import make_pool
from kalshibook.storage.writer import Writer

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.slow, pytest.mark.both_editions]

NEW_YORK = ZoneInfo("America/New_York")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def period_start(ms: int, interval: str) -> datetime:
    t = at(ms)
    if interval == "1m":
        return t.replace(second=0, microsecond=0)
    if interval == "1h":
        return t.replace(minute=0, second=0, microsecond=0)
    local = t.astimezone(NEW_YORK)
    return datetime(local.year, local.month, local.day, tzinfo=NEW_YORK).astimezone(UTC)


def fmt(d: Decimal, places: int) -> str:
    """The API's exact strings: at least ``places`` decimals, more when needed."""
    d = d.normalize()
    exp = -d.as_tuple().exponent  # type: ignore[operator]
    return f"{d:.{max(places, exp)}f}"


def truth_candles(trades: list[TruthTrade], interval: str) -> dict[datetime, dict[str, Any]]:
    """OHLC, volume, VWAP and count per period, from trades in exchange order."""
    out: dict[datetime, dict[str, Any]] = {}
    for t in trades:
        c = out.get(start := period_start(t.ts, interval))
        if c is None:
            c = out[start] = {
                "open": t.yes_price, "high": t.yes_price, "low": t.yes_price,
                "volume": Decimal(0), "notional": Decimal(0), "trade_count": 0,
            }  # fmt: skip
        c["high"] = max(c["high"], t.yes_price)
        c["low"] = min(c["low"], t.yes_price)
        c["close"] = t.yes_price
        c["volume"] += t.count
        c["notional"] += t.yes_price * t.count
        c["trade_count"] += 1
    for c in out.values():
        c["vwap"] = (c.pop("notional") / c["volume"]).quantize(
            Decimal("0.000001"), rounding=ROUND_HALF_EVEN
        )
    return out


def boundary_sweeps(trades: list[TruthTrade]) -> int:
    """A market's 1m periods whose first or last millisecond holds trades at two or more prices."""
    by_period: dict[tuple[str, datetime], list[TruthTrade]] = defaultdict(list)
    for t in trades:
        by_period[t.ticker, period_start(t.ts, "1m")].append(t)
    n = 0
    for ts in by_period.values():
        first = {t.yes_price for t in ts if t.ts == ts[0].ts}
        last = {t.yes_price for t in ts if t.ts == ts[-1].ts}
        n += len(first) > 1 or len(last) > 1
    return n


def by_market(trades: list[TruthTrade]) -> dict[str, list[TruthTrade]]:
    out: dict[str, list[TruthTrade]] = defaultdict(list)
    for t in trades:
        out[t.ticker].append(t)
    return out


def stored_order(url: str) -> dict[str, tuple[int, datetime, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT trade_id::text, exchange_seq, created_time, source FROM market.trades"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def backfill_all(settings: Settings, start: datetime, end: datetime) -> int:
    """Every trade of ``[start, end]`` over REST, through the collector's backfill path."""
    pool = make_pool(settings, min_size=1, max_size=2, name="kb-e2e-backfill")
    await pool.open(wait=True, timeout=30)
    try:
        async with Writer(settings, pool) as writer, KalshiRest(settings.kalshi, None) as rest:
            task = Backfill(
                rest=rest, writer=writer, pool=pool, work=WorkQueues(), catalog=Catalog(),
                metrics=Metrics(), stop=asyncio.Event(),
            )  # fmt: skip
            n = await task.backfill(start, end)
            await writer.drain()
            return n
    finally:
        await pool.close()


async def walk(client: AsyncTestClient[Any], headers: dict[str, str], ticker: str) -> list[str]:
    ids: list[str] = []
    params: dict[str, Any] = {"limit": 37}
    while True:
        r = await client.get(f"/v1/markets/{ticker}/trades", params=params, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        ids += [t["trade_id"] for t in body["data"]]
        if not body["has_more"]:
            return ids
        params = {"limit": 37, "cursor": body["next_cursor"]}


def mismatches(want: dict[datetime, dict[str, Any]], got: list[dict[str, Any]]) -> Iterator[str]:
    have = {c["start"]: c for c in got if c["open"] is not None}
    for start, c in want.items():
        key = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        g = have.pop(key, None)
        expected = {
            "open": fmt(c["open"], 4), "high": fmt(c["high"], 4), "low": fmt(c["low"], 4),
            "close": fmt(c["close"], 4), "volume": fmt(c["volume"], 2),
            "vwap": fmt(c["vwap"], 4), "trade_count": c["trade_count"],
        }  # fmt: skip
        actual = None if g is None else {k: g[k] for k in expected}
        if actual != expected:
            yield f"{key}: want {expected}, got {actual}"
    for key in have:
        yield f"{key}: a candle with trades the truth does not have"


async def test_exchange_order_everywhere(
    db_url: str, edition: str, edition_databases: Any, tmp_path: Path
) -> None:
    cfg = SimConfig(
        no_auth=True,
        markets=30,
        start_behind_s=600.0,  # the driven 150 s lie in the past: candles serve every period
        lifetime=3600.0,
        autopump=False,
        heartbeat=1.0,
        truth_path=str(tmp_path / "truth.jsonl"),
    )
    async with SimServer(cfg) as sim:
        start_ms = sim.model.now_ms
        settings = settings_for(db_url, tmp_path / "data", sim)
        async with run_daemon(settings) as daemon:
            # 150 s of exchange time, 100 ms per step: a step's frames share one millisecond.
            last = await drive(sim, 150.0, step_ms=100, frames_per_step=40)
            await settle(daemon, sim, last)
            await daemon.stop()
        truth = sim.load_truth()
        trades = truth.trades()
        micros = {r.trade_id: r.ts_ms * 1000 + r.us for r in sim.model.trades.records()}

        assert check_trades(db_url, truth) > 1000
        assert check_replay_order(db_url, tmp_path / "truth.jsonl") > 500
        assert boundary_sweeps(trades) >= 20  # the case this test is about, many times over

        # The REST path: the same trades again into the same database (WS stored them first)
        # and into an empty one (REST only): the same exchange order, µs times from REST.
        ws_first = stored_order(db_url)
        window = (at(start_ms) - timedelta(seconds=1), at(last) + timedelta(seconds=1))
        assert await backfill_all(settings, *window) == len(trades)
        with edition_databases.database() as rest_url:
            rest_settings = settings_for(rest_url, tmp_path / "data-rest", sim)
            assert await backfill_all(rest_settings, *window) == len(trades)
            rest_only = stored_order(rest_url)
    both = stored_order(db_url)
    assert {k: v[0] for k, v in ws_first.items()} == {k: v[0] for k, v in both.items()}
    assert {k: v[0] for k, v in both.items()} == {k: v[0] for k, v in rest_only.items()}
    assert {k: v[1] for k, v in both.items()} == {k: v[1] for k, v in rest_only.items()}
    assert all(ms_us(v[1]) == micros[k] for k, v in both.items())
    assert {v[2] for v in ws_first.values()} == {"ws"}

    # Storage order = truth order, per market.
    markets = by_market(trades)
    for ticker, ts in markets.items():
        want = [t.trade_id for t in ts]
        assert sorted(want, key=lambda i: both[i][0]) == want, ticker

    if edition == "community":
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await refresh_candles(conn, *window)

    key = create_key(db_url, name="exchange order", credits=10**6).key
    app = create_app(
        Settings(
            core=CoreSettings(database_url=db_url),
            api=ApiSettings(max_candles=10_000, rate_limit_per_second=1_000_000.0),
        )
    )
    headers = {"Authorization": f"Bearer {key}"}
    bad: list[str] = []
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        for ticker, ts in markets.items():
            assert await walk(client, headers, ticker) == [t.trade_id for t in ts], ticker
            for interval in ("1m", "1h", "1d"):
                params = {
                    "interval": interval,
                    "start": f"{window[0] - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}",
                    "end": f"{window[1] + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}",
                }
                r = await client.get(
                    f"/v1/markets/{ticker}/candles", params=params, headers=headers
                )
                assert r.status_code == 200, r.text
                want = truth_candles(ts, interval)
                bad += [f"{ticker} {interval} {m}" for m in mismatches(want, r.json()["data"])]
    assert not bad, f"{len(bad)} candles differ from the truth, e.g. {bad[:3]}"


def caused_deltas(truth_file: Path) -> list[tuple[str, tuple[Any, ...], tuple[Any, ...] | None]]:
    """(trade_id, the book change the trade caused, the market's change just before the trade in
    the same millisecond or None), from the truth file's exchange order; only changes whose
    (market, ts, side, price, delta) is unique in the run, so a stored row matches one change."""
    lines = [msgspec.json.decode(line) for line in truth_file.read_bytes().splitlines()]
    deltas = [ln for ln in lines if ln["k"] == "orderbook_delta"]

    def key(ln: dict[str, Any]) -> tuple[Any, ...]:
        m = ln["msg"]
        return (
            m["market_ticker"], ln["ts"], m["side"], Decimal(m["price_dollars"]),
            Decimal(m["delta_fp"]),
        )  # fmt: skip

    seen: dict[tuple[Any, ...], int] = defaultdict(int)
    for ln in deltas:
        seen[key(ln)] += 1
    out = []
    before: dict[str, dict[str, Any]] = {}
    pending: dict[str, str] = {}  # market -> trade waiting for the change it caused
    for ln in lines:
        if ln["k"] == "trade" and not ln["msg"]["is_block_trade"]:
            pending[ln["msg"]["market_ticker"]] = ln["msg"]["trade_id"]
        elif ln["k"] == "orderbook_delta":
            market = ln["msg"]["market_ticker"]
            trade_id = pending.pop(market, None)
            if trade_id is not None and seen[key(ln)] == 1:
                prev = before.get(market)
                same_ms = prev is not None and prev["ts"] == ln["ts"] and seen[key(prev)] == 1
                out.append((trade_id, key(ln), key(prev) if same_ms and prev else None))
            before[market] = ln
    return out


def check_replay_order(url: str, truth_file: Path) -> int:
    """A trade's stored receive time lies after the book change before it and before the change
    it caused (the collector receives one connection's frames in exchange order)."""
    with psycopg.connect(url) as conn:
        trades = dict(
            conn.execute(
                "SELECT trade_id::text, received_at FROM market.trades WHERE source = 'ws'"
            ).fetchall()
        )
        rows = conn.execute(
            "SELECT market_ticker, ts, side, price, delta, received_at FROM market.orderbook_deltas"
        ).fetchall()
    deltas = {(r[0], ms_of(r[1]), r[2], r[3], r[4]): r[5] for r in rows}
    checked, wrong = 0, []
    for trade_id, caused, prev in caused_deltas(truth_file):
        t = trades.get(trade_id)
        after = deltas.get(caused)
        if t is None or after is None:
            continue
        checked += 1
        before = deltas.get(prev) if prev is not None else None
        if not t < after or (before is not None and not before < t):
            wrong.append(trade_id)
    assert not wrong, f"{len(wrong)} trades out of order with their book changes: {wrong[:3]}"
    return checked


def ms_of(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(milliseconds=1)


def ms_us(t: datetime) -> int:
    """Microseconds since the epoch, exactly."""
    return (t - _EPOCH) // timedelta(microseconds=1)
