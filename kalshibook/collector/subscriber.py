"""The ``subscriptions`` task: keeps the current connection's subscriptions in line with the plan.

On every new connection it subscribes ``market_lifecycle_v2``/``trade``/``ticker`` and every
orderbook shard of the :class:`~kalshibook.collector.subscriptions.SubscriptionPlan`; then, as the
router and discovery queue work (:class:`~kalshibook.collector.work.WorkQueues`), it resubscribes
after terminal errors 10/25, removes and adds markets, and sends ``get_snapshot`` after sequence
gaps. Work leaves its queue only once its command is acknowledged: a command that fails on a live
connection (no reply in time) leaves it queued and the whole sync is retried, with a growing
pause; a closed connection's work is dropped (the next connection subscribes everything again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Literal

from kalshibook.collector.metrics import Metrics
from kalshibook.collector.router import Router
from kalshibook.collector.subscriptions import (
    GLOBAL_CHANNELS,
    ORDERBOOK,
    Shard,
    SubscriptionPlan,
)
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import FeedDisconnected, FeedError, WsCommandError
from kalshibook.kalshi.ws import WsSession
from kalshibook.kalshi.ws_frames import TERMINAL_CODES

__all__ = ("Subscriber",)

log = logging.getLogger(__name__)

BOOK_OPTIONS: Final[dict[str, Any]] = {"use_yes_price": False}
"""Options of every orderbook subscription. NO levels in NO-leg prices, the scale the book code
reads (KALSHI_API.md §5), said explicitly: Kalshi has announced that ``use_yes_price``'s default
becomes true (§4), which would otherwise move every NO level to the YES scale unannounced."""

UNKNOWN_SID = 7
"""Kalshi's code for a command naming a sid it does not know: that subscription is gone already
(nothing to unsubscribe; an unsubscribe of it might not be answered)."""

RETRY_FIRST = 0.5
"""Seconds before the first retry of a failed subscription command; doubling up to RETRY_MAX."""
RETRY_MAX = 30.0
PAUSE_STEP = 0.25
"""How often a retry's pause looks for a new connection (seconds)."""


class Subscriber:
    """The subscription task (:meth:`run`) for the session ``current_session()`` returns."""

    def __init__(
        self,
        *,
        plan: SubscriptionPlan,
        router: Router,
        work: WorkQueues,
        metrics: Metrics,
        current_session: Callable[[], WsSession | None],
        stop: asyncio.Event,
    ) -> None:
        self.plan = plan
        self.router = router
        self.work = work
        self.metrics = metrics
        self.current_session = current_session
        self.stop = stop
        self.subscribed_session: WsSession | None = None
        """The session whose global channels were subscribed."""
        self._refused: set[Shard] = set()
        """Shards the exchange refused to subscribe on the current connection (the next one
        tries again)."""

    async def run(self) -> None:
        work = self.work
        failures = 0
        failed_on: WsSession | None = None
        while not self.stop.is_set():
            await work.sub_wake.wait()
            work.sub_wake.clear()
            session = self.current_session()
            if session is None or session.closed:
                continue
            try:
                await self.sync(session)
                failures = 0
            except FeedError as exc:
                if self.current_session() is not session or session.closed:
                    continue  # the next session subscribes everything again
                failures = failures + 1 if failed_on is session else 1
                failed_on = session
                pause = min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1))
                log.warning("subscription command failed (%s); retrying in %.1f s", exc, pause)
                await self._pause(session, pause)
                work.sub_wake.set()

    async def _pause(self, session: WsSession, seconds: float) -> None:
        """Wait ``seconds`` before a retry on ``session``; a new connection (or a stop) ends the
        wait at once: its subscriptions must not wait for the old one's retries."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while (left := until - loop.time()) > 0 and not self.stop.is_set():
            if self.current_session() is not session or session.closed:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, PAUSE_STEP)):
                    await self.stop.wait()

    def _forget(self, tickers: list[str]) -> None:
        """Drop the books of markets no longer followed; one unfollowed inside a gap gets its
        final book over REST."""
        now = datetime.now(UTC)
        for t in tickers:
            if self.router.forget(t, now):
                self.work.final_books[t] = None
                self.work.enrich_wake.set()

    async def sync(self, session: WsSession) -> None:
        """Carry out the queued subscription work on ``session``. A command that fails raises
        :class:`FeedError` with the work not done still queued (or, for shards, unsubscribed):
        calling this again goes on where it stopped."""
        work = self.work
        plan = self.plan
        if session is not self.subscribed_session:
            # A new connection: every subscription (and every pending request) starts over.
            work.snapshots.clear()
            work.resubscribe_sids.clear()
            plan.unbind_all()
            self._refused.clear()
            if work.removes:
                gone = list(work.removes)
                plan.remove(gone)  # nothing is subscribed on this connection yet
                work.removes.clear()
                self._forget(gone)
            if work.adds:
                plan.add(list(work.adds))
                work.adds.clear()
            sids = await session.subscribe(list(GLOBAL_CHANNELS))
            plan.global_sids.update(sids)
            log.info("subscribed channels=%s", ",".join(f"{c}:{s}" for c, s in sids.items()))
            self.subscribed_session = session
        # Every shard without a sid on this connection: all of them on a new one, and any whose
        # subscribe failed since (a command without a reply in time, a resubscription that failed)
        for shard in plan.unsubscribed_shards():
            if shard not in self._refused:
                await self._subscribe_shard(session, shard)
        # terminal errors 10/25: subscribe again (new sid)
        while work.resubscribe_sids:
            sid, (channel, reason) = next(iter(work.resubscribe_sids.items()))
            failed = plan.shard_by_sid(sid)
            if failed is not None:
                plan.unbind(failed)  # should the subscribe fail, the loop above retries it
                del work.resubscribe_sids[sid]
                await self._subscribe_shard(session, failed)
            else:
                ch = channel or plan.channel_of_global_sid(sid)
                if ch and ch != ORDERBOOK:
                    sids = await session.subscribe([ch])
                    plan.global_sids.update(sids)
                del work.resubscribe_sids[sid]
            log.info("resubscribed sid=%d channel=%s reason=%s", sid, channel, reason)
        # shrink
        if work.removes:
            gone = list(work.removes)
            removed = plan.remove(gone)
            work.removes.clear()
            self._forget(gone)
            for shard, tickers in removed.items():
                if shard.sid is None:
                    continue
                if not shard.markets:
                    sid = shard.sid
                    plan.unbind(shard)
                    await session.unsubscribe([sid])
                else:
                    await self._update(session, shard.sid, "delete_markets", tickers)
        # grow; a failure waits for the resyncs below (books in a gap must not wait for a
        # market that cannot be added)
        grow_failed: FeedError | None = None
        try:
            await self._grow(session)
        except FeedDisconnected:
            raise
        except FeedError as exc:
            grow_failed = exc
        await self._resync(session)
        if grow_failed is not None:
            raise grow_failed

    async def _grow(self, session: WsSession) -> None:
        """Subscribe the queued new markets (``add_markets``, or a shard's ``subscribe``)."""
        work = self.work
        plan = self.plan
        if work.adds:
            added = list(plan.add(list(work.adds)).items())
            work.adds.clear()
            for k, (shard, tickers) in enumerate(added):
                try:
                    if shard.sid is None:
                        await self._subscribe_shard(session, shard)
                    else:
                        await self._update(session, shard.sid, "add_markets", tickers)
                except FeedError:
                    # not acknowledged: those markets are planned and added again on the retry
                    # (a shard without a sid is subscribed whole by the loop above)
                    for later, markets in added[k:]:
                        if later.sid is not None:
                            plan.remove(markets)
                            work.adds.update(dict.fromkeys(markets))
                    raise

    async def _resync(self, session: WsSession) -> None:
        """Ask for the snapshots of books in a gap (``get_snapshot``); a shard whose request is
        refused is subscribed again, the old sid unsubscribed first."""
        work = self.work
        plan = self.plan
        while work.snapshots:
            sid, wanted = next(iter(work.snapshots.items()))
            del work.snapshots[sid]
            target = plan.shard_by_sid(sid)
            if target is None:
                continue  # the sid is gone; its resubscription sends snapshots anyway
            if wanted is None:  # a sequence gap: every market of the subscription
                tickers = list(target.markets)
            else:
                tickers = [t for t in wanted if t in target.markets]
            if not tickers:
                continue
            self.metrics.snapshots_requested.inc(len(tickers))
            try:
                await session.update_subscription(sid, "get_snapshot", tickers)
                continue
            except WsCommandError as exc:
                refused = exc
            except FeedError:
                work.request_snapshot(sid, None if wanted is None else tickers)  # asked again
                raise
            log.warning("get_snapshot failed sid=%d code=%d; resubscribing", sid, refused.code)
            if refused.code not in TERMINAL_CODES and refused.code != UNKNOWN_SID:
                # The sid still streams: end it before its replacement starts (one live sid
                # per shard); with code 7 (unknown sid) it is gone already.
                try:
                    await session.unsubscribe([sid])
                except WsCommandError as exc:
                    log.info("unsubscribe sid=%d failed code=%d: %s", sid, exc.code, exc.msg)
                except FeedError:
                    # not confirmed: the shard keeps its sid and the request is asked again
                    work.request_snapshot(sid, None if wanted is None else tickers)
                    raise
            plan.unbind(target)
            await self._subscribe_shard(session, target)  # should it fail, the retry does it

    async def _subscribe_shard(self, session: WsSession, shard: Shard) -> None:
        if not shard.markets:
            return
        try:
            sids = await session.subscribe([ORDERBOOK], list(shard.markets), **BOOK_OPTIONS)
        except WsCommandError as exc:
            log.warning(
                "orderbook subscribe failed shard=%d code=%d: %s", shard.index, exc.code, exc.msg
            )
            bad = set(exc.market_tickers) & set(shard.markets)
            if not bad:
                # Nothing to drop: leave the shard unsubscribed on this connection (the next
                # connection retries it) and let discovery re-check the markets' states.
                log.error("orderbook shard left unsubscribed shard=%d", shard.index)
                self._refused.add(shard)
                self.work.rediscover()
                return
            self.plan.remove(bad)
            log.warning("markets refused by the exchange dropped: %s", ",".join(sorted(bad)))
            if not shard.markets:
                return
            sids = await session.subscribe([ORDERBOOK], list(shard.markets), **BOOK_OPTIONS)
        sid = sids.get(ORDERBOOK)
        if sid is None and len(sids) == 1:
            sid = next(iter(sids.values()))
        if sid is not None:
            self.plan.bind(shard, sid)
            log.info(
                "orderbook shard subscribed shard=%d sid=%d markets=%d",
                shard.index,
                sid,
                len(shard.markets),
            )

    async def _update(
        self,
        session: WsSession,
        sid: int,
        action: Literal["add_markets", "delete_markets"],
        tickers: list[str],
    ) -> None:
        log.debug("update_subscription sid=%d action=%s markets=%d", sid, action, len(tickers))
        try:
            await session.update_subscription(sid, action, tickers)
        except WsCommandError as exc:
            log.warning(
                "update_subscription %s failed sid=%d code=%d: %s", action, sid, exc.code, exc.msg
            )
            if exc.code in TERMINAL_CODES:
                # The subscription is over: the router opens its books' gaps and queues its
                # resubscription, which carries the planned markets (these ones too).
                return
            if action == "add_markets":
                shard = self.plan.shard_by_sid(sid)
                if shard is not None:
                    self.plan.remove(tickers)
