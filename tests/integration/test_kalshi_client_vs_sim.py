"""Our Kalshi client (kalshibook.kalshi.ws / rest) against the simulator over real local sockets.

The simulator runs in-process on an ephemeral port with auth on (our test public keys), its model
on the wall clock at a small frame rate, and records ground truth to a file. Our books are rebuilt
with :class:`kalshibook.domain.book.OrderBook` from the first snapshot plus the deltas that follow
and compared with the truth's book at the exchange time (``ts_ms``) of the last applied delta.

A market's book at exchange time ``T`` is only comparable once every change stamped ``T`` has been
applied. Frames of one sid arrive in exchange order with non-decreasing ``ts_ms``, so a book is
taken as a *check point* after a delta at ``T`` and confirmed as soon as any later frame of the same
sid carries a ``ts_ms > T``. A gap discards unconfirmed points (one of the missing frames could be
stamped ``T``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sim_support import ED_KEY_ID, KEY_ID, ed_pair, keys_config, private_key

from kalshibook.domain.book import OrderBook
from kalshibook.errors import FatalFeedError, KalshiHTTPError
from kalshibook.kalshi.auth import PrivateKey, generate_key_pair, load_private_key
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.sequencing import GapDetected
from kalshibook.kalshi.ws import DataItem, Disconnected, KalshiWebSocket, WsSession
from kalshibook.kalshi.ws_frames import (
    ErrorFrame,
    MarketLifecycle,
    OrderbookDelta,
    OrderbookSnapshot,
    Subscribed,
    Ticker,
    Trade,
)
from kalshibook.settings import KalshiSettings
from kalshibook.sim import SimConfig, SimServer, Truth

ALL_CHANNELS = ["orderbook_delta", "trade", "ticker", "market_lifecycle_v2"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def ts_ms(ts: datetime | None) -> int:
    assert ts is not None, "the simulator stamps every delta with ts_ms"
    return (ts - _EPOCH) // _MS


# --- setup helpers ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def live_sim(tmp_path: Path, **fields: Any) -> AsyncIterator[SimServer]:
    """A simulator on the wall clock at a small frame rate, auth on, truth recorded."""
    fields.setdefault("markets", 30)
    fields.setdefault("rate", 300.0)
    fields.setdefault("public_keys", keys_config())
    fields.setdefault("truth_path", str(tmp_path / "truth.jsonl"))
    async with SimServer(SimConfig(**fields)) as sim:
        yield sim


def client_settings(sim: SimServer, key_id: str = KEY_ID, **over: Any) -> KalshiSettings:
    base: dict[str, Any] = {
        "rest_url": sim.rest_url,
        "ws_url": sim.ws_url,
        "key_id": key_id,
        "reconnect_initial": 0.02,
        "reconnect_max": 0.1,
        "rest_timeout": 5.0,
    }
    base.update(over)
    return KalshiSettings(**base)


def websocket(sim: SimServer, key: PrivateKey | None, key_id: str = KEY_ID) -> KalshiWebSocket:
    return KalshiWebSocket(
        client_settings(sim, key_id), key, key_id=key_id, command_timeout=5.0, open_timeout=5.0
    )


def book_tickers(sim: SimServer, n: int) -> list[str]:
    """``n`` open markets with a book on both sides (the model trades open markets only)."""
    return [m.ticker for m in sim.model.market_list if m.status == "active" and m.yes and m.no][:n]


@functools.cache
def wrong_rsa_key() -> PrivateKey:
    """An RSA key the simulator does not know (its signatures cannot verify)."""
    key = serialization.load_pem_private_key(generate_key_pair("rsa")[0], password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return key


# --- our books ------------------------------------------------------------------------------


class Replica:
    """Books of one ``orderbook_delta`` subscription, with confirmed check points."""

    def __init__(self, sid: int, tickers: Sequence[str]) -> None:
        self.sid = sid
        self.tickers = list(tickers)
        self.books = {t: OrderBook() for t in tickers}
        self.ready: set[str] = set()
        """Snapshot received and not dirty: deltas are applied."""
        self.snapshots: Counter[str] = Counter()
        self.applied = 0
        self.dropped = 0
        self.last_ts = 0
        self.pending: dict[str, tuple[int, OrderBook]] = {}
        self.points: list[tuple[str, int, OrderBook]] = []
        """Confirmed ``(ticker, ts_ms, book after the last delta at ts_ms)``."""

    def snapshot(self, f: OrderbookSnapshot) -> None:
        assert f.sid == self.sid, f
        self.books[f.market_ticker].apply_snapshot(f.yes, f.no)
        self.ready.add(f.market_ticker)
        self.snapshots[f.market_ticker] += 1

    def delta(self, f: OrderbookDelta) -> None:
        assert f.sid == self.sid, f
        assert f.market_ticker in self.books, f"delta for an unsubscribed market {f}"
        t = ts_ms(f.ts)
        assert t >= self.last_ts, "deltas of one sid arrive in exchange order"
        if t > self.last_ts:
            self.confirm()
            self.last_ts = t
        if f.market_ticker not in self.ready:
            self.dropped += 1
            return
        book = self.books[f.market_ticker]
        book.apply_delta(f.side, f.price, f.delta)
        self.applied += 1
        self.pending[f.market_ticker] = (t, book.copy())

    def confirm(self) -> None:
        for ticker, (t, book) in self.pending.items():
            self.points.append((ticker, t, book))
        self.pending.clear()

    def gap(self) -> None:
        """Every book of the sid is suspect until its next snapshot."""
        self.ready.clear()
        self.pending.clear()

    @property
    def have_all_snapshots(self) -> bool:
        return all(self.snapshots[t] for t in self.tickers)

    def replayed(self, points: int = 10, markets: int = 3) -> bool:
        """Every snapshot in, and ``points`` confirmed points over ``markets`` markets."""
        return (
            self.have_all_snapshots
            and len(self.points) >= points
            and len(self.confirmed_markets()) >= markets
        )

    def confirmed_markets(self, since: int = 0) -> set[str]:
        return {t for t, ts, _ in self.points if ts > since}

    def verify(self, truth: Truth, since: int = 0) -> Counter[str]:
        """Compare every confirmed point after ``since`` with the truth; points per market."""
        checked: Counter[str] = Counter()
        for ticker, t, book in self.points:
            if t <= since:
                continue
            true = truth.book_at(ticker, t)
            assert book.levels("yes") == true.yes, (ticker, t, "yes")
            assert book.levels("no") == true.no, (ticker, t, "no")
            checked[ticker] += 1
        return checked


class Reader:
    """Routes a session's data plane to a replica and keeps everything else for assertions."""

    def __init__(self, session: WsSession, replica: Replica | None = None) -> None:
        self.session = session
        self.replica = replica
        self.kinds: Counter[str] = Counter()
        self.items: list[DataItem] = []
        self.gaps: list[GapDetected] = []
        self.disconnected: Disconnected | None = None
        self.on_gap: Callable[[GapDetected], Any] | None = None

    async def run(self, until: Callable[[], bool], within: float) -> None:
        """Consume items until ``until()`` holds (checked after each item), at most ``within`` s."""
        if until():
            return
        async with asyncio.timeout(within):
            async for item in self.session:
                await self._handle(item)
                if until():
                    return
        raise AssertionError(f"session ended early: {self.disconnected}")

    async def _handle(self, item: DataItem) -> None:
        self.kinds[type(item).__name__] += 1
        rep = self.replica
        if isinstance(item, OrderbookDelta):
            if rep is not None and item.sid == rep.sid:
                rep.delta(item)
            return
        if isinstance(item, OrderbookSnapshot):
            if rep is not None and item.sid == rep.sid:
                rep.snapshot(item)
            return
        self.items.append(item)
        if isinstance(item, GapDetected):
            self.gaps.append(item)
            if rep is not None and item.sid == rep.sid:
                rep.gap()
            if self.on_gap is not None:
                await self.on_gap(item)
        elif isinstance(item, Disconnected):
            self.disconnected = item

    def of(self, cls: type) -> list[Any]:
        return [i for i in self.items if isinstance(i, cls)]


# --- (1) + (2) subscribe everything, replay books -------------------------------------------


async def test_subscribe_all_channels_and_books_replay_to_the_truth(tmp_path: Path) -> None:
    async with live_sim(tmp_path, new_markets_per_min=600) as sim:
        tickers = book_tickers(sim, 8)
        ws = websocket(sim, private_key("rsa"))
        async with aclosing(ws.connect_forever()) as sessions:
            async for session in sessions:
                sids = await session.subscribe(ALL_CHANNELS, tickers)
                # One ack per channel, each with its own sid; acks stay on the control plane.
                assert sorted(sids) == sorted(ALL_CHANNELS)
                assert len(set(sids.values())) == 4
                assert session.subscriptions == {sid: ch for ch, sid in sids.items()}
                replica = Replica(sids["orderbook_delta"], tickers)
                reader = Reader(session, replica)

                def enough(reader: Reader = reader, replica: Replica = replica) -> bool:
                    return (
                        replica.replayed(points=30, markets=4)
                        and reader.kinds["Trade"] > 0
                        and reader.kinds["Ticker"] > 0
                        and reader.kinds["MarketLifecycle"] > 0
                    )

                await reader.run(enough, within=10)
                break
        truth = sim.load_truth()
        assert sim.stats["auth_rejected"] == 0

    # Snapshots: exactly one per market, each before any delta of its market.
    assert replica.snapshots == Counter(tickers)
    assert replica.dropped == 0
    assert not reader.gaps
    assert not reader.of(Subscribed), "acks must not reach the data plane"
    for f in reader.of(Trade):
        assert f.sid == sids["trade"]
        assert f.market_ticker in tickers
        assert f.seq is not None
    for f in reader.of(Ticker):
        assert f.sid == sids["ticker"]
        assert f.market_ticker in tickers
        assert f.seq is None
    for f in reader.of(MarketLifecycle):
        assert f.sid == sids["market_lifecycle_v2"]
        assert f.seq is not None
    assert ws.stats.gaps == 0
    assert ws.stats.decode_errors == 0
    checked = replica.verify(truth)
    assert sum(checked.values()) == len(replica.points) >= 30
    assert len(checked) >= 4, checked


# --- (3) seq gap -> get_snapshot -------------------------------------------------------------


async def test_seq_gap_is_detected_and_healed_with_get_snapshot(tmp_path: Path) -> None:
    async with live_sim(tmp_path) as sim:
        tickers = book_tickers(sim, 8)
        ws = websocket(sim, private_key("rsa"))
        async with aclosing(ws.connect_forever()) as sessions:
            async for session in sessions:
                # Only the orderbook channel is sequenced here, so the skipped number is its own.
                sids = await session.subscribe(["orderbook_delta", "ticker"], tickers)
                sid = sids["orderbook_delta"]
                replica = Replica(sid, tickers)
                reader = Reader(session, replica)
                await reader.run(replica.replayed, within=10)
                before = Counter(replica.snapshots)
                acks: list[Any] = []

                # Healing from the consuming task is fine at this rate (the buffer is far from
                # full, so the get_snapshot reply is not stuck behind undrained frames).
                async def heal(
                    gap: GapDetected, session: WsSession = session, acks: list[Any] = acks
                ) -> None:
                    acks.append(await session.update_subscription(gap.sid, "get_snapshot", tickers))

                reader.on_gap = heal
                sim.skip_seq(1)
                await reader.run(lambda r=reader: bool(r.gaps), within=10)
                healed_from = replica.last_ts
                gap = reader.gaps[0]
                assert (gap.sid, gap.got) == (sid, gap.expected + 1)

                def healed(
                    r: Replica = replica,
                    want: Counter[str] = before + Counter(tickers),
                    since: int = healed_from,
                ) -> bool:
                    return (
                        r.snapshots == want
                        and len(r.confirmed_markets(since)) >= 3
                        and sum(1 for p in r.points if p[1] > since) >= 10
                    )

                await reader.run(healed, within=10)
                break
        truth = sim.load_truth()

    assert acks == [None], "get_snapshot is acknowledged by its first snapshot"
    assert len(reader.gaps) == 1
    assert ws.stats.gaps == 1
    assert replica.ready == set(tickers)
    assert replica.dropped >= 1, "the frame revealing the gap waited for a fresh snapshot"
    # Every confirmed point matches, before the gap and after the fresh snapshots.
    replica.verify(truth)
    after = replica.verify(truth, since=healed_from)
    assert len(after) >= 3, after


# --- (4) socket drop -> reconnect -> resubscribe ----------------------------------------------


@pytest.mark.parametrize("abrupt", [True, False], ids=["tcp-reset", "close-1012"])
async def test_dropped_socket_reconnects_and_resubscribes(tmp_path: Path, abrupt: bool) -> None:
    async with live_sim(tmp_path) as sim:
        tickers = book_tickers(sim, 6)
        ws = websocket(sim, private_key("rsa"))
        replicas: list[Replica] = []
        readers: list[Reader] = []
        async with asyncio.timeout(20), aclosing(ws.connect_forever()) as sessions:
            async for session in sessions:
                sids = await session.subscribe(["orderbook_delta", "trade"], tickers)
                replica = Replica(sids["orderbook_delta"], tickers)
                reader = Reader(session, replica)
                replicas.append(replica)
                readers.append(reader)
                await reader.run(replica.replayed, within=10)
                if len(replicas) == 2:
                    break
                assert sim.drop_all(abrupt=abrupt) == 1
                await reader.run(lambda r=reader: r.disconnected is not None, within=5)
                assert session.closed
        truth = sim.load_truth()
        assert sim.stats["ws_connections"] == 2
        assert sim.stats["auth_rejected"] == 0, "the reconnect signed a fresh handshake"

    first, second = readers
    assert first.disconnected is not None
    assert not first.disconnected.by_client
    assert "connection lost" in first.disconnected.reason
    assert first.session.epoch == 1
    assert second.session.epoch == 2
    assert ws.stats.connects == 2
    assert ws.stats.connect_failures == 0
    # New snapshots of every market on the new connection, and books right on both.
    assert replicas[1].snapshots == Counter(tickers)
    for replica in replicas:
        assert len(replica.verify(truth)) >= 3


# --- terminal error / malformed frame (the session survives) ----------------------------------


async def test_terminal_error_then_resubscribe_and_malformed_frame_skipped(
    tmp_path: Path,
) -> None:
    async with live_sim(tmp_path) as sim:
        tickers = book_tickers(sim, 6)
        ws = websocket(sim, private_key("rsa"))
        async with aclosing(ws.connect_forever()) as sessions:
            async for session in sessions:
                old = (await session.subscribe(["orderbook_delta"], tickers))["orderbook_delta"]
                reader = Reader(session, Replica(old, tickers))
                await reader.run(lambda r=reader.replica: r.have_all_snapshots, within=10)
                sim.send_malformed()
                assert sim.send_error(10) == 1
                await reader.run(lambda r=reader: bool(r.of(ErrorFrame)), within=5)
                err = reader.of(ErrorFrame)[0]
                assert (err.code, err.sid) == (10, old)
                new = (await session.subscribe(["orderbook_delta"], tickers))["orderbook_delta"]
                assert new != old
                replica = reader.replica = Replica(new, tickers)
                await reader.run(replica.replayed, within=10)
                break
        truth = sim.load_truth()

    assert ws.stats.decode_errors == 1, "the malformed frame is dropped and counted"
    assert not reader.gaps, "the error consumed a seq number; the malformed frame none"
    assert ws.stats.connects == 1
    assert len(replica.verify(truth)) >= 3


# --- (5) authentication is enforced and surfaces as errors, not hangs -------------------------


async def _connect_once(ws: KalshiWebSocket) -> None:
    async with asyncio.timeout(5), aclosing(ws.connect_forever()) as sessions:
        async for _ in sessions:
            raise AssertionError("connected without valid credentials")


async def test_bad_or_missing_credentials_are_refused(tmp_path: Path) -> None:
    async with live_sim(tmp_path, rate=0.0, truth_path=None) as sim:
        good = private_key("rsa")
        refused_ws = {
            "wrong key": websocket(sim, wrong_rsa_key()),
            "unknown key id": websocket(sim, good, key_id="not-a-key"),
            "no headers": websocket(sim, None, key_id=""),
            "ed25519 signature under the rsa key id": websocket(sim, private_key("ed25519")),
        }
        for what, ws in refused_ws.items():
            with pytest.raises(FatalFeedError) as info:
                await _connect_once(ws)
            cause = info.value.__cause__
            assert getattr(getattr(cause, "response", None), "status_code", None) == 401, what
            assert (ws.stats.connects, ws.stats.connect_failures) == (0, 0), what
        # A stale timestamp (clock skew beyond the server's window) is refused too.
        skewed = KalshiWebSocket(
            client_settings(sim), good, clock=lambda: 1_000_000.0, open_timeout=5.0
        )
        with pytest.raises(FatalFeedError):
            await _connect_once(skewed)

        refused_rest = {
            "wrong key": (wrong_rsa_key(), KEY_ID),
            "unknown key id": (good, "not-a-key"),
            "no headers": (None, ""),
        }
        for what, (key, key_id) in refused_rest.items():
            async with KalshiRest(client_settings(sim, key_id), key, key_id=key_id) as rest:
                with pytest.raises(KalshiHTTPError) as herr:
                    async with asyncio.timeout(5):
                        await rest.get_exchange_status()
                assert herr.value.http_status == 401, what
                with pytest.raises(KalshiHTTPError):
                    async with asyncio.timeout(5):
                        [m async for m in rest.get_markets()]
                assert rest.stats.retries == 0, f"{what}: 401 is not retried"
        assert sim.stats["auth_rejected"] == len(refused_ws) + 1 + 2 * len(refused_rest)
        # The right key still works on both.
        async with KalshiRest(client_settings(sim), good) as rest:
            assert (await rest.get_exchange_status()) is not None
        async with aclosing(websocket(sim, good).connect_forever()) as sessions:
            async for session in sessions:
                assert (await session.subscribe(["ticker"])).keys() == {"ticker"}
                break


# --- (6) REST pagination of 5,000 markets, rate limiter on ------------------------------------


async def test_get_markets_pages_through_5000_markets_exactly_once() -> None:
    async with SimServer(SimConfig(markets=5000, autopump=False, public_keys=keys_config())) as sim:
        rate, burst, page = 10.0, 1, 250
        settings = client_settings(sim, rest_rate=rate, rest_burst=burst)
        catalogue = set(sim.model.markets)
        async with KalshiRest(settings, private_key("rsa")) as rest:
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with asyncio.timeout(20):
                tickers = [m.ticker async for m in rest.get_markets(limit=page)]
            took = loop.time() - started
            pages = math.ceil(len(catalogue) / page)
            assert len(tickers) == len(set(tickers)), "a market came twice"
            assert set(tickers) == catalogue
            assert len(catalogue) >= 5000
            assert rest.stats.requests == pages == sim.stats["rest_requests"]
            assert rest.stats.retries == 0
            # The token bucket spaced the pages out (a page takes ~30 ms to fetch and decode).
            assert rest.stats.throttled_s > 0
            assert took >= (pages - burst) / rate * 0.95


# --- (7) 429 bursts are retried transparently ---------------------------------------------------


async def test_429_bursts_are_retried_transparently() -> None:
    async with SimServer(SimConfig(markets=300, autopump=False, public_keys=keys_config())) as sim:
        catalogue = set(sim.model.markets)
        settings = client_settings(
            sim, rest_rate=0.0, rest_max_retries=5, reconnect_initial=0.01, reconnect_max=0.05
        )
        async with KalshiRest(settings, private_key("rsa")) as rest:
            async with asyncio.timeout(10):
                # A burst before the first page ...
                sim.start_429_burst(3)
                first = [m.ticker async for m in rest.get_markets(limit=100)]
                assert (rest.stats.http_429, rest.stats.retries) == (3, 3)
                # ... and one in the middle of the pagination.
                second: list[str] = []
                async for m in rest.get_markets(limit=100):
                    second.append(m.ticker)
                    if len(second) == 150:
                        sim.start_429_burst(4)
                assert (rest.stats.http_429, rest.stats.retries) == (7, 7)
            for got in (first, second):
                assert len(got) == len(set(got))
                assert set(got) == catalogue
            assert sim.stats["rest_429"] == 7
            assert rest.stats.http_errors == 0

        # A burst longer than the retry budget ends in an error, not a hang.
        settings = client_settings(
            sim, rest_rate=0.0, rest_max_retries=2, reconnect_initial=0.01, reconnect_max=0.05
        )
        async with KalshiRest(settings, private_key("rsa")) as rest:
            sim.start_429_burst(10)
            with pytest.raises(KalshiHTTPError) as info:
                async with asyncio.timeout(5):
                    await rest.get_exchange_status()
            assert info.value.http_status == 429
            assert (rest.stats.requests, rest.stats.retries) == (3, 2)


# --- (8) Ed25519 keys end to end ----------------------------------------------------------------


async def test_ed25519_key_end_to_end(tmp_path: Path) -> None:
    pem = tmp_path / "ed25519.pem"
    pem.write_bytes(ed_pair()[0])  # PKCS#8, as Kalshi generates Ed25519 keys
    key = load_private_key(pem)
    async with live_sim(tmp_path) as sim:
        tickers = book_tickers(sim, 6)
        settings = client_settings(sim, ED_KEY_ID, private_key_path=str(pem))
        async with KalshiRest(settings, key) as rest:
            known = set(sim.model.markets)
            markets = {m.ticker async for m in rest.get_markets(limit=1000)}
            assert known <= markets <= set(sim.model.markets)  # markets appear over time
            market = await rest.get_market(tickers[0])
            assert market is not None
            assert market.ticker == tickers[0]
            # a path segment that must be percent-encoded is signed as sent: 404, not 401
            assert await rest.get_market("NO SUCH/MARKET") is None
        ws = KalshiWebSocket(settings, key, command_timeout=5.0, open_timeout=5.0)
        async with aclosing(ws.connect_forever()) as sessions:
            async for session in sessions:
                sids = await session.subscribe(["orderbook_delta", "trade"], tickers)
                replica = Replica(sids["orderbook_delta"], tickers)
                reader = Reader(session, replica)
                await reader.run(replica.replayed, within=10)
                break
        truth = sim.load_truth()
        assert sim.stats["auth_rejected"] == 0
    assert len(replica.verify(truth)) >= 3


# --- (8) undecodable list items are left out, logged and counted --------------------------------


async def test_undecodable_list_items_are_left_out_and_counted() -> None:
    """One bad item in a page costs that item, not the sweep: the rest of the page and the next
    pages are kept, and ``rest.stats.rejected_items`` (the collector's
    ``rest_items_rejected_total``) counts it, for markets and events pages alike."""
    async with SimServer(SimConfig(markets=300, autopump=False, public_keys=keys_config())) as sim:
        catalogue = set(sim.model.markets)
        settings = client_settings(sim, rest_rate=0.0)
        async with KalshiRest(settings, private_key("rsa")) as rest:
            async with asyncio.timeout(10):
                sim.corrupt_next_list_items(2)  # the first item of the first two pages
                got = [m.ticker async for m in rest.get_markets(limit=100)]
                assert len(got) == len(set(got)) == len(catalogue) - 2
                assert set(got) < catalogue
                assert rest.stats.rejected_items == 2
                clean = [m.ticker async for m in rest.get_markets(limit=100)]
                assert set(clean) == catalogue
                assert rest.stats.rejected_items == 2
                events = [e async for e in rest.get_events(limit=5, with_nested_markets=True)]
                assert rest.stats.rejected_items == 2
                sim.corrupt_next_list_items(1)
                again = [e async for e in rest.get_events(limit=5, with_nested_markets=True)]
                assert [e.event_ticker for e in again] == [e.event_ticker for e in events][1:]
                assert rest.stats.rejected_items == 3
