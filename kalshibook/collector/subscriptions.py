"""Subscription bookkeeping (pure): which markets ride on which orderbook subscription, the sids
Kalshi gave them on the current connection, and subscription epochs.

``orderbook_delta`` markets are sharded into subscriptions of at most ``shard_size`` markets. A
shard is a stable grouping that outlives connections: after a reconnect (or a terminal error
10/25) each shard is subscribed again and gets a new sid. ``trade``, ``ticker`` and
``market_lifecycle_v2`` are one subscription each, for all markets.

An *epoch* identifies one subscription instance (one sid on one connection): Kalshi restarts
``seq`` on every new sid, so ``(epoch, seq)`` orders every stored snapshot and delta of a market.
Epochs are microseconds since the Unix epoch, strictly increasing within a process, so they also
increase across daemon restarts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

__all__ = ("GLOBAL_CHANNELS", "ORDERBOOK", "EpochClock", "Shard", "SubscriptionPlan")

ORDERBOOK = "orderbook_delta"
GLOBAL_CHANNELS: tuple[str, ...] = ("market_lifecycle_v2", "trade", "ticker")
"""Channels subscribed once for every market (no market filter)."""


class EpochClock:
    """Strictly increasing epochs from a microsecond clock."""

    __slots__ = ("_clock", "_last")

    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        self._clock = clock or (lambda: time.time_ns() // 1000)
        self._last = 0

    def next(self) -> int:
        now = self._clock()
        if now <= self._last:
            now = self._last + 1
        self._last = now
        return now


class Shard:
    """One orderbook subscription's market set (stable across connections)."""

    __slots__ = ("index", "markets", "sid")

    def __init__(self, index: int) -> None:
        self.index = index
        self.markets: dict[str, None] = {}
        """Ordered set of market tickers."""
        self.sid: int | None = None
        """The sid on the current connection (``None`` until subscribed)."""

    def __len__(self) -> int:
        return len(self.markets)

    def __repr__(self) -> str:
        return f"Shard(index={self.index}, markets={len(self.markets)}, sid={self.sid})"


class SubscriptionPlan:
    """Markets -> shards, shards -> sids.

    Adding a market puts it into the first shard with room (so shards fill up before new ones are
    opened); removing it leaves a hole that the next added market fills.
    """

    def __init__(self, shard_size: int) -> None:
        if shard_size < 1:
            raise ValueError("orderbook_sub_size must be >= 1")
        self.shard_size = shard_size
        self.shards: list[Shard] = []
        self._of: dict[str, Shard] = {}
        self._by_sid: dict[int, Shard] = {}
        self.global_sids: dict[str, int] = {}
        """channel -> sid of the all-market subscriptions on the current connection."""

    # -- markets -----------------------------------------------------------------------------

    def add(self, tickers: Iterable[str]) -> dict[Shard, list[str]]:
        """Assign new markets to shards; returns the markets newly added, per shard (markets
        already planned are skipped)."""
        out: dict[Shard, list[str]] = {}
        size = self.shard_size
        cursor = 0
        for t in tickers:
            if t in self._of:
                continue
            shards = self.shards
            while cursor < len(shards) and len(shards[cursor]) >= size:
                cursor += 1
            if cursor == len(shards):
                shards.append(Shard(len(shards)))
            shard = shards[cursor]
            shard.markets[t] = None
            self._of[t] = shard
            out.setdefault(shard, []).append(t)
        return out

    def remove(self, tickers: Iterable[str]) -> dict[Shard, list[str]]:
        """Take markets out of their shards; returns the markets removed, per shard."""
        out: dict[Shard, list[str]] = {}
        for t in tickers:
            shard = self._of.pop(t, None)
            if shard is None:
                continue
            shard.markets.pop(t, None)
            out.setdefault(shard, []).append(t)
        return out

    def __contains__(self, ticker: object) -> bool:
        return ticker in self._of

    @property
    def markets(self) -> list[str]:
        return list(self._of)

    def __len__(self) -> int:
        return len(self._of)

    # -- sids --------------------------------------------------------------------------------

    def bind(self, shard: Shard, sid: int) -> None:
        """``shard`` is subscribed as ``sid`` on the current connection."""
        if shard.sid is not None:
            self._by_sid.pop(shard.sid, None)
        shard.sid = sid
        self._by_sid[sid] = shard

    def unbind(self, shard: Shard) -> None:
        if shard.sid is not None:
            self._by_sid.pop(shard.sid, None)
        shard.sid = None

    def unbind_all(self) -> None:
        """The connection is gone: every sid is void."""
        for shard in self.shards:
            shard.sid = None
        self._by_sid.clear()
        self.global_sids.clear()

    def shard_by_sid(self, sid: int) -> Shard | None:
        return self._by_sid.get(sid)

    def channel_of_global_sid(self, sid: int) -> str | None:
        for channel, s in self.global_sids.items():
            if s == sid:
                return channel
        return None

    def unsubscribed_shards(self) -> list[Shard]:
        """Shards with markets but no sid on the current connection."""
        return [s for s in self.shards if s.markets and s.sid is None]
