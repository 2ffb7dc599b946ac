"""The collector's subscription task against the simulator when the exchange refuses a command.

A terminal error (10/25) answering a command ends the subscription: the command fails and the
router must still see the error (gap rows, resubscription). A refused ``get_snapshot`` replaces
the shard's subscription without leaving the old sid streaming, and a failing ``add_markets``
does not hold back the resyncs of books in a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sim_support import running_sim, sim_websocket

from kalshibook.collector.metrics import Metrics
from kalshibook.collector.router import Router
from kalshibook.collector.subscriber import Subscriber
from kalshibook.collector.subscriptions import ORDERBOOK, Shard, SubscriptionPlan
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import FeedError, WsCommandError
from kalshibook.kalshi.ws import WsSession
from kalshibook.kalshi.ws_frames import ErrorFrame, OrderbookSnapshot
from kalshibook.sim import SimServer
from kalshibook.storage.tables import BookGapRow

COMMAND_TIMEOUT = 0.5


class Rig:
    """A subscriber and a router on one simulator connection; the test pumps the data plane."""

    def __init__(self, sim: SimServer, session: WsSession) -> None:
        self.sim = sim
        self.session = session
        self.plan = SubscriptionPlan(10)
        self.work = WorkQueues()
        self.router = Router(effects=self.work)
        self.router.sid_channels = session.subscriptions  # what the collector does
        self.sub = Subscriber(
            plan=self.plan,
            router=self.router,
            work=self.work,
            metrics=Metrics(),
            current_session=lambda: session,
            stop=asyncio.Event(),
        )

    async def route_until(self, wanted: Callable[[Any], bool], within: float = 5.0) -> Any:
        """Route data-plane items through the router up to the first one ``wanted``."""
        async with asyncio.timeout(within):
            while True:
                item = await anext(self.session)
                self.router.handle(item)
                if wanted(item):
                    return item

    async def subscribed(self, tickers: list[str]) -> Shard:
        """``tickers`` planned, subscribed and their first snapshots routed: their one shard."""
        self.plan.add(tickers)
        await self.sub.sync(self.session)
        await self.route_snapshots(tickers)
        (shard,) = self.plan.shards
        return shard

    async def route_snapshots(self, tickers: list[str]) -> list[OrderbookSnapshot]:
        """Route items until a snapshot of each of ``tickers`` went through; those snapshots."""
        got: dict[str, OrderbookSnapshot] = {}

        def done(item: Any) -> bool:
            if isinstance(item, OrderbookSnapshot) and item.market_ticker in tickers:
                got[item.market_ticker] = item
            return len(got) == len(tickers)

        await self.route_until(done)
        self.router.flush_unstamped(datetime.now(UTC))
        return list(got.values())

    async def live_orderbook_sids(self) -> list[int]:
        """The simulator's orderbook subscriptions on this connection."""
        subs = await self.session.list_subscriptions()
        return sorted(s.sid for s in subs if s.channel == ORDERBOOK)


@contextlib.asynccontextmanager
async def rig(**sim_fields: Any) -> AsyncIterator[tuple[Rig, list[str]]]:
    async with running_sim(markets=12, no_auth=True, **sim_fields) as sim:
        ws = sim_websocket(sim, COMMAND_TIMEOUT)
        session = await ws.connect()
        try:
            tickers = [m.ticker for m in sim.model.market_list if m.status == "active"][:3]
            assert len(tickers) == 3
            yield Rig(sim, session), tickers
        finally:
            await session.close()


async def test_a_terminal_error_answering_add_markets_opens_gaps_and_resubscribes() -> None:
    async with rig() as (r, tickers):
        first, new = tickers[:2], tickers[2]
        shard = await r.subscribed(first)
        r.router.drain()
        old = shard.sid
        assert old is not None
        # the exchange fails the subscription while answering add_markets (error 10 + its id)
        r.sim.refuse_next("update_subscription", 10, action="add_markets")
        r.work.subscribe_markets([new])
        await r.sub.sync(r.session)  # the command fails; nothing to retry
        assert r.sim.stats["commands_refused"] == 1
        err = await r.route_until(lambda i: isinstance(i, ErrorFrame))
        assert (err.code, err.sid) == (10, old)
        assert err.id is not None, "the error answers the command"
        # the data plane saw it as it sees an unsolicited one
        assert r.work.resubscribe_sids == {old: (ORDERBOOK, "error_10")}
        assert sorted(r.router.open_gap_tickers()) == sorted(first)
        assert new in r.plan, "the market stays planned: the resubscription carries it"

        await r.sub.sync(r.session)
        assert shard.sid not in (None, old)
        assert sorted(shard.markets) == sorted(tickers)
        assert r.work.resubscribe_sids == {}
        assert await r.live_orderbook_sids() == [shard.sid]
        await r.route_snapshots(tickers)
        gaps = [row for _, row in r.router.drain() if isinstance(row, BookGapRow)]
        assert sorted((g.market_ticker, g.reason, g.sid) for g in gaps) == [
            (t, "error_10", old) for t in sorted(first)
        ]
        assert r.router.open_gap_tickers() == []


async def test_a_refused_get_snapshot_replaces_the_subscription_without_a_second_live_sid() -> None:
    async with rig() as (r, tickers):
        shard = await r.subscribed(tickers)
        old = shard.sid
        assert old is not None
        r.work.request_snapshot(old, None)  # a sequence gap on the shard
        r.sim.refuse_next("update_subscription", 27, action="get_snapshot")  # too many requests
        await r.sub.sync(r.session)
        assert r.sim.stats["commands_refused"] == 1
        assert shard.sid not in (None, old)
        assert await r.live_orderbook_sids() == [shard.sid], "one live sid per shard"
        snaps = await r.route_snapshots(tickers)
        assert {s.sid for s in snaps} == {shard.sid}


async def test_a_get_snapshot_on_an_unknown_sid_resubscribes_without_unsubscribing() -> None:
    """Code 7: the exchange no longer knows the sid, so there is nothing to unsubscribe (and an
    unsubscribe of it might never be answered: the request would time out and loop)."""
    async with rig() as (r, tickers):
        shard = await r.subscribed(tickers)
        old = shard.sid
        r.work.request_snapshot(old, None)
        r.sim.refuse_next("update_subscription", 7, action="get_snapshot")
        r.sim.leave_unanswered("unsubscribe")
        await r.sub.sync(r.session)  # no "no reply" from an unanswered unsubscribe
        assert r.sim.stats["commands_lost"] == 0, "no unsubscribe was sent"
        assert shard.sid not in (None, old)
        snaps = await r.route_snapshots(tickers)
        assert {s.sid for s in snaps} == {shard.sid}


async def test_a_failing_add_markets_does_not_hold_back_the_resync() -> None:
    async with rig() as (r, tickers):
        first, new = tickers[:2], tickers[2]
        shard = await r.subscribed(first)
        sid = shard.sid
        assert sid is not None
        r.work.request_snapshot(sid, None)  # a sequence gap on the shard ...
        r.work.subscribe_markets([new])  # ... and a new market for it, whose add is lost
        r.sim.leave_unanswered("update_subscription")
        with pytest.raises(FeedError, match="no reply"):
            await r.sub.sync(r.session)
        assert r.work.snapshots == {}, "the resync was done"
        resent = await r.route_snapshots(first)
        assert all(s.id is not None for s in resent), "answers to get_snapshot"
        assert list(r.work.adds) == [new], "the add stays queued for the retry"
        await r.sub.sync(r.session)  # what the task's retry does
        assert sorted(shard.markets) == sorted(tickers)
        assert shard.sid == sid
        await r.route_snapshots([new])


async def test_book_subscriptions_do_not_rely_on_the_use_yes_price_default() -> None:
    """Kalshi has announced that ``use_yes_price`` will default to true (KALSHI_API.md §4), which
    moves NO levels to the YES scale. A simulator with that default refuses a book subscription
    that relies on it (it renders NO-leg prices only). The collector says ``use_yes_price: false``,
    so its books are subscribed and their first snapshots routed."""
    async with rig(yes_price_default=True) as (r, tickers):
        with pytest.raises(WsCommandError) as refused:  # the control: relying on the default
            await r.session.subscribe([ORDERBOOK], tickers[:1])
        assert refused.value.code == 11
        shard = await r.subscribed(tickers)
        assert shard.sid is not None
        assert await r.live_orderbook_sids() == [shard.sid]
