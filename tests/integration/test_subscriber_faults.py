"""The collector's subscription task against the simulator when a command gets no reply.

A command whose reply does not come in time (lost, or stuck behind a backlog) raises; the work it
carried must stay queued and be done by the retry, on the same connection: a lost ``get_snapshot``
would leave books without data until the next reconnection, a lost shard subscription its markets
unrecorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sim_support import running_sim, sim_websocket

from kalshibook.collector import subscriber as subscriber_module
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.router import Router
from kalshibook.collector.subscriber import Subscriber
from kalshibook.collector.subscriptions import SubscriptionPlan
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import FeedError
from kalshibook.kalshi.ws import WsSession
from kalshibook.kalshi.ws_frames import OrderbookSnapshot
from kalshibook.sim import SimServer

COMMAND_TIMEOUT = 0.5


class Rig:
    def __init__(self, sim: SimServer, session: WsSession, shard_size: int) -> None:
        self.sim = sim
        self.session = session
        self.plan = SubscriptionPlan(shard_size)
        self.work = WorkQueues()
        self.sub = Subscriber(
            plan=self.plan,
            router=Router(effects=self.work),
            work=self.work,
            metrics=Metrics(),
            current_session=lambda: session,
            stop=asyncio.Event(),
        )

    async def snapshots(self, within: float = 5.0) -> list[OrderbookSnapshot]:
        """The orderbook snapshots received until ``within`` s pass with none more."""
        out: list[OrderbookSnapshot] = []
        with contextlib.suppress(TimeoutError):
            while True:
                async with asyncio.timeout(within):
                    item: Any = await anext(self.session)
                if isinstance(item, OrderbookSnapshot):
                    out.append(item)
                    within = 0.5
        return out


async def until(check: Callable[[], bool], within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def rig(shard_size: int = 10) -> AsyncIterator[tuple[Rig, list[str]]]:
    async with running_sim(markets=12, no_auth=True) as sim:
        ws = sim_websocket(sim, COMMAND_TIMEOUT)
        session = await ws.connect()
        try:
            tickers = [m.ticker for m in sim.model.market_list if m.status == "active"][:4]
            yield Rig(sim, session, shard_size), tickers
        finally:
            await session.close()


async def test_a_lost_get_snapshot_stays_queued_and_the_retry_asks_for_every_market() -> None:
    async with rig() as (r, tickers):
        r.plan.add(tickers)
        await r.sub.sync(r.session)
        first = await r.snapshots()
        assert sorted(s.market_ticker for s in first) == sorted(tickers)
        (shard,) = r.plan.shards
        assert shard.sid is not None
        # a sequence gap on the sid: snapshots of all its markets (None), and the command is lost
        r.work.request_snapshot(shard.sid, None)
        r.sim.leave_unanswered("update_subscription")
        with pytest.raises(FeedError, match="no reply"):
            await r.sub.sync(r.session)
        assert r.work.snapshots == {shard.sid: None}, "the request must stay queued"
        assert r.sim.stats["commands_lost"] == 1
        await r.sub.sync(r.session)  # what the task's retry does
        resent = await r.snapshots()
        assert r.work.snapshots == {}
        assert sorted(s.market_ticker for s in resent) == sorted(tickers)
        assert all(s.id is not None for s in resent), "answers to get_snapshot carry its id"


async def test_a_lost_shard_subscription_is_subscribed_by_the_retry() -> None:
    async with rig(shard_size=2) as (r, tickers):
        r.plan.add(tickers)  # two shards of two markets
        # the global channels are subscribed, then the first shard's subscribe is lost
        r.sim.leave_unanswered("subscribe", after=1)
        with pytest.raises(FeedError, match="no reply"):
            await r.sub.sync(r.session)
        assert len(r.plan.unsubscribed_shards()) == 2, "nothing is lost: both shards wait"
        await r.sub.sync(r.session)
        assert not r.plan.unsubscribed_shards()
        assert set(r.plan.global_sids) == {"trade", "ticker", "market_lifecycle_v2"}
        got = await r.snapshots()
        assert sorted({s.market_ticker for s in got}) == sorted(tickers)


async def test_a_new_connection_does_not_wait_for_the_old_ones_retry_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command that failed on a dying connection pauses its retry; the next connection's
    subscriptions start at once, not after that pause."""
    monkeypatch.setattr(subscriber_module, "RETRY_FIRST", 30.0)
    async with running_sim(markets=12, no_auth=True) as sim:
        ws = sim_websocket(sim, COMMAND_TIMEOUT)
        old, new = await ws.connect(), await ws.connect()
        current: list[WsSession] = [old]
        plan, work, stop = SubscriptionPlan(10), WorkQueues(), asyncio.Event()
        sub = Subscriber(
            plan=plan,
            router=Router(effects=work),
            work=work,
            metrics=Metrics(),
            current_session=lambda: current[0],
            stop=stop,
        )
        plan.add([m.ticker for m in sim.model.market_list if m.status == "active"][:4])
        sim.leave_unanswered("subscribe")  # the old connection's first command is lost
        task = asyncio.create_task(sub.run())
        try:
            work.sub_wake.set()
            await until(lambda: sim.stats["commands_lost"] == 1, within=5)
            await asyncio.sleep(COMMAND_TIMEOUT + 0.3)  # the failure, then its 30 s pause
            assert sub.subscribed_session is None
            await old.close()
            current[0] = new
            work.sub_wake.set()  # what the collector does for a new connection
            await until(  # not 30 s
                lambda: sub.subscribed_session is new and not plan.unsubscribed_shards(), within=5
            )
        finally:
            stop.set()
            work.sub_wake.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await new.close()
