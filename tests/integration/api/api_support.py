"""Support for the API tests: the seed data (inserted with plain SQL), an independent reference
order book, settings, and a real uvicorn server on a free port.

The seed is deterministic and small; the tests compute every expectation from ``Seed`` (the rows
as inserted), never from the code under test.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import uvicorn

from kalshibook.domain.exchange_order import exchange_seq
from kalshibook.settings import ApiSettings, CoreSettings, Settings

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
B45 = "KXHIGHNY-26JAN15-B45"
B47 = "KXHIGHNY-26JAN15-B47"
J16 = "KXHIGHNY-26JAN16-B45"
RAIN = "KXRAIN-26JAN-T1"
ORPHAN = "ORPHAN-M1"
D = Decimal
TEST_CURSOR_SECRET = "api-tests-cursor-secret-" + "0123456789abcdef"


@dataclass
class Trade:
    ts: datetime
    trade_id: uuid.UUID
    ticker: str
    yes_price: Decimal
    count: Decimal


@dataclass
class Snap:
    ts: datetime
    epoch: int
    seq: int | None
    source: str
    yes: list[tuple[Decimal, Decimal]]
    no: list[tuple[Decimal, Decimal]]


@dataclass
class Delta:
    ts: datetime
    epoch: int
    seq: int
    side: str
    price: Decimal
    delta: Decimal


@dataclass
class Seed:
    series: list[str] = field(default_factory=list)
    events: dict[str, str | None] = field(default_factory=dict)  # event -> series
    markets: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)
    trades: list[Trade] = field(default_factory=list)
    settlements: dict[str, tuple[str, datetime | None, str | None, str | None]] = field(
        default_factory=dict
    )  # ticker -> (result, settled_at, event, series)
    snapshots: list[Snap] = field(default_factory=list)
    deltas: list[Delta] = field(default_factory=list)
    gaps: list[tuple[datetime, datetime, str]] = field(default_factory=list)


def _jsonb(levels: list[tuple[Decimal, Decimal]]) -> str:
    return "[" + ",".join(f"[{p},{s}]" for p, s in levels) + "]"


def reference_book(seed: Seed, ticker_snaps: list[Snap], deltas: list[Delta], at: datetime):
    """Independent reference: latest snapshot <= at, then its epoch's deltas after it, Decimals."""
    snaps = [s for s in ticker_snaps if s.ts <= at]
    if not snaps:
        return None
    snap = max(snaps, key=lambda s: s.ts)
    book: dict[str, dict[Decimal, Decimal]] = {
        "yes": dict(snap.yes),
        "no": dict(snap.no),
    }
    applied = [
        d
        for d in deltas
        if d.epoch == snap.epoch and d.ts <= at and (snap.seq is None or d.seq > snap.seq)
    ]
    for d in sorted(applied, key=lambda d: d.seq):
        level = book[d.side].get(d.price, D(0)) + d.delta
        if level > 0:
            book[d.side][d.price] = level
        else:
            book[d.side].pop(d.price, None)
    return snap, book, applied


def build_seed() -> Seed:
    rng = random.Random(20260115)
    seed = Seed()
    seed.series = ["KXHIGHNY", "KXRAIN"] + [f"SER{i:02d}" for i in range(22)]
    seed.events = {
        "KXHIGHNY-26JAN15": "KXHIGHNY",
        "KXHIGHNY-26JAN16": "KXHIGHNY",
        "KXRAIN-26JAN": "KXRAIN",
        "ORPHAN-EV": None,
    }
    # ticker -> (event, series column, status)
    seed.markets = {
        B45: ("KXHIGHNY-26JAN15", "KXHIGHNY", "active"),
        B47: ("KXHIGHNY-26JAN15", "KXHIGHNY", "finalized"),
        J16: ("KXHIGHNY-26JAN16", None, "initialized"),
        RAIN: ("KXRAIN-26JAN", "KXRAIN", "closed"),
        ORPHAN: ("ORPHAN-EV", None, "inactive"),
    }
    for ticker, count in ((B45, 120), (B47, 60), (J16, 20), (RAIN, 30)):
        for i in range(count):
            # pairs of trades share a timestamp (ties are broken by trade_id)
            ts = T0 + timedelta(seconds=30 * (i // 2), milliseconds=7 * (len(ticker) % 5))
            price = D(rng.randint(1, 99)) / 100
            seed.trades.append(
                Trade(
                    ts,
                    uuid.UUID(int=rng.getrandbits(128)),
                    ticker,
                    price,
                    D(rng.randint(1, 5000)) / 100,
                )
            )
    seed.settlements = {
        B47: ("no", T0 + timedelta(days=1), "KXHIGHNY-26JAN15", "KXHIGHNY"),
        RAIN: ("yes", T0 + timedelta(days=2), "KXRAIN-26JAN", "KXRAIN"),
        ORPHAN: ("void", None, "ORPHAN-EV", None),
    }
    for i in range(14):
        settled = None if i % 5 == 4 else T0 + timedelta(hours=i // 2)  # ties on settled_at
        seed.settlements[f"SETL-{i:02d}"] = (
            ["yes", "no", "scalar"][i % 3],
            settled,
            "KXHIGHNY-26JAN16" if i % 2 else None,
            None,
        )

    # order book of B45: epoch 1 snapshot, 100 deltas, a checkpoint at seq 61, a gap, epoch 2
    yes = [(D("0.40"), D("10")), (D("0.41"), D("5.5")), (D("0.42"), D("13"))]
    no = [(D("0.55"), D("7.5")), (D("0.56"), D("5"))]
    seed.snapshots.append(Snap(T0, 1, 1, "snapshot", yes, no))
    book = {"yes": dict(yes), "no": dict(no)}
    for seq in range(2, 102):
        side = rng.choice(["yes", "no"])
        levels = book[side]
        if levels and rng.random() < 0.45:
            price = rng.choice(sorted(levels))
            delta = -min(levels[price], D(rng.randint(1, 800)) / 100)
        else:
            price = D(rng.randint(30, 60)) / 100
            delta = D(rng.randint(1, 2000)) / 100
        seed.deltas.append(Delta(T0 + timedelta(seconds=seq), 1, seq, side, price, delta))
        new = levels.get(price, D(0)) + delta
        if new > 0:
            levels[price] = new
        else:
            levels.pop(price, None)
        if seq == 61:
            seed.snapshots.append(
                Snap(
                    T0 + timedelta(seconds=61),
                    1,
                    61,
                    "checkpoint",
                    sorted(book["yes"].items()),
                    sorted(book["no"].items()),
                )
            )
    seed.gaps.append((T0 + timedelta(seconds=120), T0 + timedelta(seconds=130), "disconnect"))
    yes2 = [(D("0.30"), D("1.25")), (D("0.35"), D("2"))]
    no2 = [(D("0.60"), D("3"))]
    seed.snapshots.append(Snap(T0 + timedelta(seconds=130), 2, 1, "snapshot", yes2, no2))
    for k in range(2, 31):
        seed.deltas.append(
            Delta(T0 + timedelta(seconds=130 + k), 2, k, "yes", D("0.3300"), D("1.00"))
        )
    # a stale delta of epoch 1 stamped after epoch 2 began (must never be applied)
    seed.deltas.append(Delta(T0 + timedelta(seconds=140), 1, 500, "no", D("0.10"), D("99")))
    # a gap after the last snapshot that nothing repaired
    seed.gaps.append((T0 + timedelta(seconds=170), T0 + timedelta(seconds=175), "seq_gap"))
    return seed


SEED = build_seed()


def exchange_seqs(trades: list[Trade]) -> dict[uuid.UUID, int]:
    """Each trade's exchange_seq as the collector stores it (unique in its market): trades of one
    market sharing a millisecond ranked by trade_id, so the exchange order is the order the reads'
    (ts, exchange_seq, trade_id) tie-break gives. A plain INSERT leaving it out gets rank 0 for
    all of them (migration 0005's trigger), and the candles' first/last among such ties are
    arbitrary: the real-time aggregate and its materialisation could disagree on a bucket's open."""
    ranked = sorted(trades, key=lambda t: (t.ticker, t.ts, t.trade_id))
    rank: dict[tuple[str, datetime], int] = {}
    seqs: dict[uuid.UUID, int] = {}
    for t in ranked:
        key = (t.ticker, t.ts.replace(microsecond=t.ts.microsecond // 1000 * 1000))
        r = rank[key] = rank.get(key, -1) + 1
        seqs[t.trade_id] = exchange_seq(t.ts, r)
    return seqs


def exchange_order(trades: list[Trade]) -> list[Trade]:
    """The trades in the reads' order: (ts, exchange_seq, trade_id)."""
    seqs = exchange_seqs(trades)
    return sorted(trades, key=lambda t: (t.ts, seqs[t.trade_id], t.trade_id))


PAUSE_COMPRESSION = """
SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs
WHERE proc_name = 'policy_compression'
"""


def insert_seed(url: str, seed: Seed = SEED) -> None:
    """The seed's rows in ``url``, whose compression policy is paused first: the test database's
    job scheduler runs, the seed's days are older than every compress-after, and a chunk being
    compressed (an ACCESS EXCLUSIVE lock) deadlocked a test writing into it (seen once in a full
    run: test_export.py::test_rerun_writes_only_changed_or_missing)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for s in seed.series:
            conn.execute(
                "INSERT INTO market.series (ticker, title, category, frequency, tags, fee_type,"
                " fee_multiplier, raw) VALUES (%s, %s, %s, 'daily', %s, 'quadratic', 1.5, %s)",
                (
                    s,
                    f"title {s}",
                    "Climate and Weather" if s.startswith("KX") else "Other",
                    ["Weather"],
                    json.dumps({"ticker": s}),
                ),
            )
        for e, series in seed.events.items():
            conn.execute(
                "INSERT INTO market.events (event_ticker, series_ticker, title, raw)"
                " VALUES (%s, %s, %s, '{}')",
                (e, series, f"title {e}"),
            )
        for t, (event, series, status) in seed.markets.items():
            conn.execute(
                "INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, title,"
                " floor_strike, cap_strike, price_ranges, raw)"
                " VALUES (%s, %s, %s, %s, %s, 44, 45.5, %s, '{}')",
                (
                    t,
                    event,
                    series,
                    status,
                    f"title {t}",
                    json.dumps([{"start": "0.0000", "end": "1.0000", "step": "0.0100"}]),
                ),
            )
        seqs = exchange_seqs(seed.trades)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price,"
                " count, taker_outcome_side, taker_book_side, source, received_at, exchange_seq)"
                " VALUES (%s, %s, %s, %s, 1 - %s, %s, 'yes', 'bid', 'ws', %s, %s)",
                [
                    (
                        t.ts,
                        t.trade_id,
                        t.ticker,
                        t.yes_price,
                        t.yes_price,
                        t.count,
                        t.ts + timedelta(milliseconds=40),
                        seqs[t.trade_id],
                    )
                    for t in seed.trades
                ],
            )
        for ticker, (result, settled, event, series) in seed.settlements.items():
            conn.execute(
                "INSERT INTO market.settlements (market_ticker, event_ticker, series_ticker,"
                " result, settlement_value, determined_at, settled_at, source)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, 'ws')",
                (ticker, event, series, result, D(1) if result == "yes" else D(0), T0, settled),
            )
        for snap in seed.snapshots:
            conn.execute(
                "INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source,"
                " epoch, sid, seq, yes_bids, no_bids) VALUES (%s, %s, %s, %s, %s, 1, %s, %s, %s)",
                (
                    snap.ts,
                    B45,
                    snap.ts,
                    snap.source,
                    snap.epoch,
                    snap.seq,
                    _jsonb(snap.yes),
                    _jsonb(snap.no),
                ),
            )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price,"
                " delta, epoch, sid, seq) VALUES (%s, %s, %s, %s, %s, %s, %s, 1, %s)",
                [(d.ts, B45, d.ts, d.side, d.price, d.delta, d.epoch, d.seq) for d in seed.deltas],
            )
        for from_ts, to_ts, reason in seed.gaps:
            conn.execute(
                "INSERT INTO market.book_gaps (from_ts, to_ts, market_ticker, reason, sid)"
                " VALUES (%s, %s, %s, %s, 1)",
                (from_ts, to_ts, B45, reason),
            )


def api_settings(url: str, **api: Any) -> Settings:
    api.setdefault("rate_limit_per_second", 1_000_000.0)
    api.setdefault("cursor_secret", TEST_CURSOR_SECRET)
    return Settings(core=CoreSettings(database_url=url), api=ApiSettings(**api))


KEY_CREDITS = "SELECT credits FROM private.api_keys WHERE prefix = %s"
KEY_USAGE = """
SELECT u.endpoint, u.status, u.cost FROM private.api_usage u
JOIN private.api_keys k ON k.id = u.key_id WHERE k.prefix = %s ORDER BY u.id
"""


def key_credits(url: str, prefix: str) -> int:
    """The key's balance, read from the database."""
    with psycopg.connect(url) as conn:
        row = conn.execute(KEY_CREDITS, (prefix,)).fetchone()
    assert row is not None, prefix
    return int(row[0])


def key_usage(url: str, prefix: str) -> list[tuple[str, int, int]]:
    """The key's usage rows in order: ``(endpoint, status, cost)``."""
    with psycopg.connect(url) as conn:
        return [(str(e), int(s), int(c)) for e, s, c in conn.execute(KEY_USAGE, (prefix,))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn in a background thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def assert_problem(r, status: int, parameter: str | None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance", "request_id"} <= body.keys()
    assert body["request_id"] == r.headers["x-request-id"]
    assert body.get("parameter") == parameter, body
    return body


async def walk(client, path: str, limit: int, **params) -> list[dict]:
    """Follow next_cursor to the end; every page must be well-formed."""
    rows: list[dict] = []
    cursor = None
    for _ in range(10_000):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await client.get(path, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"data", "next_cursor", "has_more", "request_id", "response_time"}
        assert len(body["data"]) <= limit
        rows.extend(body["data"])
        assert body["has_more"] == (body["next_cursor"] is not None)
        if not body["has_more"]:
            return rows
        cursor = body["next_cursor"]
    raise AssertionError("pagination did not end")
