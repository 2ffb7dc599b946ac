"""Shared machinery of the collector e2e tests: run the daemon against the simulator, drive the
simulator on a compressed clock, a TCP proxy to cut the database, and the comparisons against the
simulator's ground truth (implemented here independently of the daemon and the API)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from kalshibook.collector.service import Collector
from kalshibook.kalshi.auth import PrivateKey
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.ws import KalshiWebSocket
from kalshibook.settings import (
    CollectorSettings,
    CoreSettings,
    KalshiSettings,
    Settings,
    WriterSettings,
)
from kalshibook.sim.server import SimServer
from kalshibook.sim.truth import Truth
from kalshibook.storage.pool import make_pool
from kalshibook.storage.writer import Writer

P = 1_000_000  # price units (micro-dollars)
S = 100  # size units (hundredths)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(dt: datetime) -> int:
    """Unix milliseconds (floor) of an aware datetime."""
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def at_ms(v: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=v)


def settings_for(
    db_url: str,
    data_dir: Path,
    sim: SimServer | None = None,
    *,
    rest_url: str | None = None,
    ws_url: str | None = None,
    collector: dict[str, Any] | None = None,
    writer: dict[str, Any] | None = None,
    kalshi: dict[str, Any] | None = None,
    log_level: str = "INFO",
) -> Settings:
    k: dict[str, Any] = {
        "rest_url": rest_url or (sim.rest_url if sim else ""),
        "ws_url": ws_url or (sim.ws_url if sim else ""),
        "rest_rate": 500.0,
        "rest_burst": 100,
        "reconnect_initial": 0.05,
        "reconnect_max": 0.5,
        "ws_silence_timeout": 10.0,
    }
    k.update(kalshi or {})
    c: dict[str, Any] = {"metrics_port": 0, "discovery_interval": 30.0, "checkpoint_deltas": 60}
    c.update(collector or {})
    w: dict[str, Any] = {"batch_age": 0.05}
    w.update(writer or {})
    return Settings(
        core=CoreSettings(database_url=db_url, data_dir=str(data_dir), log_level=log_level),
        kalshi=KalshiSettings(**k),
        collector=CollectorSettings(**c),
        writer=WriterSettings(**w),
    )


@dataclass
class Daemon:
    collector: Collector
    writer: Writer
    task: asyncio.Task[None]
    settings: Settings

    async def stop(self) -> None:
        self.collector.stop()
        await asyncio.wait_for(self.task, 60)


@contextlib.asynccontextmanager
async def run_daemon(
    settings: Settings, key: PrivateKey | None = None, *, wait_ready: bool = True
) -> AsyncIterator[Daemon]:
    """The daemon in this event loop (pool, writer, REST, WS, collector), stopped on exit."""
    pool = make_pool(settings, min_size=1, max_size=4, name="kb-e2e")
    await pool.open(wait=True, timeout=30)
    try:
        async with Writer(settings, pool) as writer, KalshiRest(settings.kalshi, key) as rest:
            ws = KalshiWebSocket(settings.kalshi, key)
            collector = Collector(settings, pool, writer, rest=rest, ws=ws)
            task = asyncio.create_task(collector.run(), name="e2e-collector")
            daemon = Daemon(collector, writer, task, settings)
            try:
                if wait_ready:
                    await wait_subscribed(daemon)
                yield daemon
            finally:
                if not task.done():
                    collector.stop()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(task, 60)
    finally:
        await pool.close()


async def wait_for(
    predicate: Any, limit: float = 30.0, what: str = "condition", why: Any = None
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            detail = f": {why()}" if why is not None else ""
            raise AssertionError(f"timed out waiting for {what}{detail}")
        await asyncio.sleep(0.02)


def subscribed(d: Daemon) -> bool:
    c = d.collector
    session = c._session
    if not c.ready.is_set() or session is None or c.subscriber.subscribed_session is not session:
        return False
    if c.work.adds or c.work.resubscribe_sids or c.work.snapshots:
        return False
    if any(s.sid is None for s in c.plan.shards if s.markets):
        return False
    books = c.router.books
    return all(books.is_ready(t) for t in c.plan.markets)


async def wait_subscribed(d: Daemon, limit: float = 30.0) -> None:
    await wait_for(lambda: subscribed(d), limit, "the daemon to subscribe every open market")


async def drive(
    sim: SimServer,
    exchange_seconds: float,
    *,
    step_ms: int = 20,
    frames_per_step: int = 20,
    pause: float = 0.002,
    every: Any = None,
) -> int:
    """Advance the (non-pumping) simulator by ``exchange_seconds`` of exchange time on a
    compressed clock; ``every(t_ms)`` runs after each step (fault injection). Returns the last
    exchange time."""
    t = sim.model.now_ms
    end = t + int(exchange_seconds * 1000)
    quiet = end - 2000  # the last 2 s run without faults, so the daemon ends caught up
    while t < end:
        t += step_ms
        sim.step(frames_per_step, now_ms=t)
        if every is not None and t < quiet:
            r = every(t)
            if asyncio.iscoroutine(r):
                await r
        await asyncio.sleep(pause)
    return t


def busy(d: Daemon, last_ms: int) -> str:
    """Why the daemon is not idle yet ("" when idle)."""
    c = d.collector
    s = c._session
    if s is None:
        return "no session"
    if s.queue_depth:
        return f"queue {s.queue_depth}"
    x = c.router.xclock
    if x is None or ms(x) < last_ms:
        return f"xclock {x} < {last_ms}"
    w = c.work
    for name in (
        "adds",
        "removes",
        "snapshots",
        "resubscribe_sids",
        "windows",
        "confirms",
        "enrich_markets",
        "enrich_events",
        "final_books",
    ):
        if getattr(w, name):
            return f"work {name}: {list(getattr(w, name))[:3]}"
    if c.router.dirty_count():
        dirty = [m.ticker for m in c.router.books if m.dirty]
        return f"dirty books {dirty[:5]}"
    if c.router.has_unstamped:
        return "unstamped snapshots"
    return ""


def idle(d: Daemon, last_ms: int) -> bool:
    return not busy(d, last_ms)


async def settle(d: Daemon, sim: SimServer, last_ms: int, limit: float = 60.0) -> None:
    """Wait until the daemon has consumed everything and its background work is done; then a
    final discovery sweep makes ``markets`` current (closed markets have no lifecycle frame)."""
    # A last timestamped frame stamps pending snapshots.
    await wait_for(
        lambda: idle(d, last_ms), limit, "the daemon to catch up", lambda: busy(d, last_ms)
    )
    c = d.collector
    done = c.discovery.sweeps
    c.work.rediscover()
    await wait_for(lambda: c.discovery.sweeps > done, limit, "the final discovery")
    await wait_for(
        lambda: idle(d, last_ms), limit, "settlement confirmations", lambda: busy(d, last_ms)
    )


# ---------------------------------------------------------------------------------------------
# TCP proxy (cut the database without touching the shared server)
# ---------------------------------------------------------------------------------------------


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.up = True

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not self.up:
            w.close()
            return
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            w.close()
            return
        self._conns.update((w, uw))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for coro in (pipe(r, uw), pipe(ur, w)):
            t = asyncio.create_task(coro)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        self.up = False
        for c in list(self._conns):
            transport = c.transport
            if transport is not None:
                transport.abort()
        self._conns.clear()

    def restore(self) -> None:
        self.up = True

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for t in list(self._tasks):
            t.cancel()


# ---------------------------------------------------------------------------------------------
# comparisons against the ground truth
# ---------------------------------------------------------------------------------------------


def _pu(v: Any) -> int:
    return int(Decimal(str(v)) * P)


def _su(v: Any) -> int:
    return int(Decimal(str(v)) * S)


@dataclass
class Stored:
    """What the daemon stored, loaded once."""

    snapshots: dict[str, list[tuple[int, int, int, dict[int, int], dict[int, int], str]]] = field(
        default_factory=dict
    )
    """ticker -> [(ts_ms, epoch, seq, yes, no, source)] sorted."""
    deltas: dict[tuple[str, int], list[tuple[int, int, bool, int, int]]] = field(
        default_factory=dict
    )
    """(ticker, epoch) -> [(seq, ts_ms, is_yes, price, delta)] sorted by seq."""
    gaps: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    quotes: dict[str, list[tuple[int, Any, Any, Any, Any]]] = field(default_factory=dict)

    def book_at(self, ticker: str, t: int) -> tuple[dict[int, int], dict[int, int]] | None:
        """Independent rebuild: the latest snapshot at or before ``t`` (most advanced in
        (epoch, seq) among equal times), then its epoch's deltas after its seq up to ``t``."""
        snaps = [s for s in self.snapshots.get(ticker, ()) if s[0] <= t]
        if not snaps:
            return None
        _ts0, epoch, seq, yes, no, _ = max(snaps, key=lambda s: (s[0], s[1], s[2]))
        yes, no = dict(yes), dict(no)
        for dseq, dts, is_yes, price, delta in self.deltas.get((ticker, epoch), ()):
            if dseq <= seq or dts > t:
                continue
            side = yes if is_yes else no
            new = side.get(price, 0) + delta
            if new > 0:
                side[price] = new
            else:
                assert new == 0, f"negative level {ticker} {price}"
                side.pop(price, None)
        return yes, no

    def in_gap(self, ticker: str, t: int) -> bool:
        return any(a <= t <= b for a, b, _ in self.gaps.get(ticker, ()))


def load_stored(db_url: str) -> Stored:
    st = Stored()
    dec = msgspec.json.Decoder(list[tuple[Decimal, Decimal]])
    with psycopg.connect(db_url) as conn:
        for ts, t, epoch, seq, yes, no, source in conn.execute(
            "SELECT ts, market_ticker, epoch, seq, yes_bids::text, no_bids::text, source "
            "FROM market.orderbook_snapshots ORDER BY ts, epoch, seq"
        ):
            y = {_pu(p): _su(s) for p, s in dec.decode(yes)}
            n = {_pu(p): _su(s) for p, s in dec.decode(no)}
            st.snapshots.setdefault(t, []).append((ms(ts), epoch, seq, y, n, source))
        for ts, t, side, price, delta, epoch, seq in conn.execute(
            "SELECT ts, market_ticker, side, price, delta, epoch, seq FROM market.orderbook_deltas"
            " ORDER BY epoch, seq"
        ):
            st.deltas.setdefault((t, epoch), []).append(
                (seq, ms(ts), side == "yes", _pu(price), _su(delta))
            )
        for a, b, t, reason in conn.execute(
            "SELECT from_ts, to_ts, market_ticker, reason FROM market.book_gaps"
        ):
            st.gaps.setdefault(t, []).append((ms(a), ms(b), reason))
        for ts, t, yb, ybs, ya, yas in conn.execute(
            "SELECT ts, market_ticker, yes_bid, yes_bid_size, yes_ask, yes_ask_size "
            "FROM market.quotes ORDER BY ts, received_at"
        ):
            st.quotes.setdefault(t, []).append((ms(ts), _n(yb), _n(ybs), _n(ya), _n(yas)))
    return st


def _n(v: Any) -> Any:
    return None if v is None else Decimal(v).normalize()


def truth_book(truth: Truth, ticker: str, t: int) -> tuple[dict[int, int], dict[int, int]]:
    b = truth.book_at(ticker, t)
    return ({_pu(p): _su(s) for p, s in b.yes}, {_pu(p): _su(s) for p, s in b.no})


def check_books(
    stored: Stored, truth: Truth, start_ms: int, end_ms: int, n: int = 150, seed: int = 7
) -> int:
    """Rebuilt books equal the truth at ``n`` random instants outside recorded gaps (after each
    market's first stored snapshot). Returns how many instants were compared."""
    rng = random.Random(seed)
    tickers = [t for t in stored.snapshots if stored.snapshots[t]]
    assert tickers, "no snapshots stored"
    compared = 0
    attempts = 0
    mismatches: list[str] = []
    nonempty = 0
    while compared < n and attempts < n * 50:
        attempts += 1
        ticker = rng.choice(tickers)
        first = stored.snapshots[ticker][0][0]
        lo = max(first, start_ms)
        if lo >= end_ms:
            continue
        t = rng.randint(lo, end_ms)
        if stored.in_gap(ticker, t):
            continue
        got = stored.book_at(ticker, t)
        if got is None:
            continue
        want = truth_book(truth, ticker, t)
        if got != want:
            mismatches.append(f"{ticker}@{t}")
        compared += 1
        nonempty += bool(want[0] or want[1])
    assert not mismatches, f"{len(mismatches)} book mismatches, e.g. {mismatches[:5]}"
    assert compared >= min(n, 100), f"only {compared} instants compared"
    assert nonempty >= compared // 2, f"only {nonempty} of {compared} books were non-empty"
    return compared


def _top(yes: dict[int, int], no: dict[int, int]) -> tuple[Any, Any, Any, Any]:
    if yes:
        bb = max(yes)
        y = (Decimal(bb) / P, Decimal(yes[bb]) / S)
    else:
        y = (None, None)
    if no:
        bn = max(no)
        a = (Decimal(P - bn) / P, Decimal(no[bn]) / S)
    else:
        a = (None, None)
    return tuple(_n(v) for v in (*y, *a))  # type: ignore[return-value]


def check_quotes(stored: Stored, truth: Truth, tickers: Iterable[str] | None = None) -> int:
    """Each market's stored quotes equal the true sequence of top-of-book changes from its first
    stored quote on. Returns the number of quotes compared."""
    total = 0
    bad: list[str] = []
    for ticker in tickers if tickers is not None else list(stored.quotes):
        ours = [q[1:] for q in stored.quotes.get(ticker, [])]
        if not ours:
            continue
        first_ts = stored.quotes[ticker][0][0]
        expected = [_top(*truth_book(truth, ticker, first_ts - 1))]
        for q in truth.quotes_sequence(ticker):
            if q.ts < first_ts:
                continue
            top = tuple(_n(v) for v in (q.yes_bid, q.yes_bid_size, q.yes_ask, q.yes_ask_size))
            if top != expected[-1]:
                expected.append(top)
        if ours != expected:
            bad.append(ticker)
        total += len(ours)
    assert not bad, f"quotes differ for {len(bad)} markets, e.g. {bad[:5]}"
    return total


def check_quotes_outside_gaps(stored: Stored, truth: Truth, end_ms: int) -> int:
    """Between gaps, each market's stored quotes equal the true top-of-book changes.

    Windows are open intervals: (first quote, first gap start), (gap end, next gap start), ...
    Each starts from the true top at its left end (the daemon's book there was verified equal).
    Returns the number of quotes compared.
    """
    total = 0
    bad: list[str] = []
    for ticker, qs in stored.quotes.items():
        gaps = sorted(stored.gaps.get(ticker, []))
        bounds: list[tuple[int, int]] = []
        left = qs[0][0]
        for a, b, _ in gaps:
            if b <= left:
                continue
            if a > left:
                bounds.append((left, a))
            left = max(left, b)
        bounds.append((left, end_ms + 1))
        changes = truth.quotes_sequence(ticker)
        for lo, hi in bounds:
            ours = [q[1:] for q in qs if lo < q[0] < hi]
            state = _top(*truth_book(truth, ticker, lo))
            expected = []
            for q in changes:
                if lo < q.ts < hi:
                    top = tuple(
                        _n(v) for v in (q.yes_bid, q.yes_bid_size, q.yes_ask, q.yes_ask_size)
                    )
                    if top != state:
                        expected.append(top)
                        state = top
            if ours != expected:
                bad.append(
                    f"{ticker}({lo},{hi}) ours={ours[:4]} want={expected[:4]} "
                    f"gaps={gaps} first={qs[:2]}"
                )
            total += len(ours)
    assert not bad, f"quotes differ in {len(bad)} windows, e.g. {bad[:2]}"
    return total


def check_trades(db_url: str, truth: Truth, since_ms: int | None = None) -> int:
    """Every simulator trade (after ``since_ms``) stored exactly once, with exact values."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT trade_id::text, ts, market_ticker, yes_price, no_price, count, "
            "taker_outcome_side, taker_book_side, is_block_trade FROM market.trades"
        ).fetchall()
    by_id: dict[str, list[Any]] = {}
    for r in rows:
        by_id.setdefault(r[0], []).append(r)
    dups = [k for k, v in by_id.items() if len(v) > 1]
    assert not dups, f"{len(dups)} duplicate trades, e.g. {dups[:3]}"
    want = [t for t in truth.trades() if since_ms is None or t.ts >= since_ms]
    missing = [t.trade_id for t in want if t.trade_id not in by_id]
    assert not missing, f"{len(missing)} of {len(want)} trades missing, e.g. {missing[:3]}"
    wrong = []
    for t in want:
        r = by_id[t.trade_id][0]
        if (ms(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8]) != (
            t.ts,
            t.ticker,
            t.yes_price,
            t.no_price,
            t.count,
            t.taker_outcome_side,
            t.taker_book_side,
            t.is_block_trade,
        ):
            wrong.append(t.trade_id)
    assert not wrong, f"{len(wrong)} trades differ, e.g. {wrong[:3]}"
    extra = set(by_id) - {t.trade_id for t in truth.trades()}
    assert not extra, f"{len(extra)} stored trades the simulator never made"
    return len(want)


def check_settlements(db_url: str, truth: Truth) -> int:
    with psycopg.connect(db_url) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT market_ticker, result, settlement_value, determined_at, settled_at, "
                "confirmed FROM market.settlements"
            )
        }
    want = truth.settlements()
    bad = []
    for s in want:
        got = rows.get(s.ticker)
        if got is None:
            bad.append((s.ticker, "missing"))
            continue
        result, value, determined, settled, confirmed = got
        ok = (
            result == s.result
            and value == s.settlement_value
            and settled is not None
            and int(settled.timestamp()) == s.settled_ts // 1000
            and confirmed
            and (determined is None or int(determined.timestamp()) == s.determined_ts // 1000)
        )
        if not ok:
            bad.append((s.ticker, got))
    assert not bad, f"{len(bad)} settlements differ, e.g. {bad[:3]}"
    settled = {t for t, r in rows.items() if r[3] is not None}
    extra = settled - {s.ticker for s in want}
    assert not extra, f"settled in the database but not in the simulator: {sorted(extra)[:5]}"
    return len(want)


def check_reference(db_url: str, sim: SimServer, truth: Truth) -> tuple[int, int, int]:
    """markets/events/series stored equal the simulator's (current state for status)."""
    model = sim.model
    with psycopg.connect(db_url) as conn:
        markets = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT ticker, event_ticker, series_ticker, status, title, yes_sub_title, "
                "strike_type, floor_strike, cap_strike, result FROM market.markets"
            )
        }
        events = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT event_ticker, series_ticker, title, mutually_exclusive, category "
                "FROM market.events"
            )
        }
        series = {
            r[0]: r[1:]
            for r in conn.execute("SELECT ticker, title, category, frequency FROM market.series")
        }
    # Every market that traded (had a book) during the run is stored.
    live = set(truth.tickers()) | {t.ticker for t in truth.trades()}
    live &= set(model.markets)
    missing = sorted(live - set(markets))
    assert not missing, f"{len(missing)} markets not stored, e.g. {missing[:5]}"
    bad = []
    for t, (ev, se, status, title, yes_sub, stype, floor, cap, result) in markets.items():
        m = model.markets.get(t)
        assert m is not None, f"unknown market {t}"
        want = (
            m.event.event_ticker,
            m.event.series_ticker or None,
            m.status,
            m.event.title,
            m.yes_sub_title,
            m.strike_type,
            None if m.floor_strike is None else Decimal(str(m.floor_strike)),
            None if m.cap_strike is None else Decimal(str(m.cap_strike)),
            m.result or None,
        )
        got = (ev, se, status, title, yes_sub, stype, floor, cap, result)
        if got != want:
            bad.append((t, got, want))
    assert not bad, f"{len(bad)} markets differ, e.g. {bad[:2]}"
    for e, (se, title, me, cat) in events.items():
        ev = model.events[e]
        assert (se, title, me, cat) == (
            ev.series_ticker or None,
            ev.title,
            ev.mutually_exclusive,
            ev.category,
        ), e
    needed_events = {v[0] for v in markets.values()}
    assert needed_events <= set(events), sorted(needed_events - set(events))[:5]
    for s, (title, cat, freq) in series.items():
        sv = model.series[s]
        assert (title, cat, freq) == (sv.title, sv.category, sv.frequency), s
    needed_series = {v[0] for v in events.values() if v[0]}
    assert needed_series <= set(series), sorted(needed_series - set(series))[:5]
    return len(markets), len(events), len(series)


def gap_rows(db_url: str) -> list[tuple[datetime, datetime, str, str]]:
    with psycopg.connect(db_url) as conn:
        return [
            (r[0], r[1], r[2], r[3])
            for r in conn.execute(
                "SELECT from_ts, to_ts, market_ticker, reason FROM market.book_gaps ORDER BY 1"
            )
        ]
