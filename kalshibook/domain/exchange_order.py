"""The exchange order of one market's trades (pure: no I/O, no clock).

Kalshi prints several trades in one millisecond whenever a taker sweeps levels; the WebSocket
gives them only ``ts_ms``, REST gives ``created_time`` in microseconds. kalshibook stores with each
trade ``exchange_seq = epoch milliseconds x SEQ_PER_MS + rank``, ``rank`` being the trade's 0-based
place among its market's trades of that millisecond. Sorting by ``exchange_seq`` is sorting by
time, then by exchange order inside the millisecond (migration 0005).

- **WebSocket** (:class:`LiveRanker`): Kalshi delivers one market's trades in exchange order, so
  the rank is the count of that market's trades already seen in the same millisecond. A
  connection that starts inside a millisecond misses the trades before it there, and ranks the
  rest from 0; the REST backfill of that window gives them their true rank (below), and a REST
  rank replaces a WebSocket one when stored (kalshibook.storage.tables.MERGE_TRADES).
- **REST** (:class:`RestRanker`): ``GET /markets/trades`` lists trades newest first and its
  windows start on whole seconds, so every millisecond it covers is complete; the rank is the
  trade's place by ``created_time`` among the market's trades of that millisecond (equal times:
  the one listed later is older). A millisecond is ranked once the list has moved past it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final, Generic, TypeVar

__all__ = (
    "SEQ_PER_MS",
    "LiveRanker",
    "RestRanker",
    "epoch_ms",
    "exchange_seq",
    "seq_time",
)

SEQ_PER_MS: Final = 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def epoch_ms(ts: datetime) -> int:
    """Whole milliseconds since the Unix epoch (floor), exactly."""
    return (ts - _EPOCH) // _MS


def exchange_seq(ts: datetime, rank: int) -> int:
    """The ordering key of the ``rank``-th trade of a market in ``ts``'s millisecond."""
    if not 0 <= rank < SEQ_PER_MS:
        raise ValueError(f"rank {rank} outside 0..{SEQ_PER_MS - 1}")
    return epoch_ms(ts) * SEQ_PER_MS + rank


def seq_time(seq: int) -> datetime:
    """The millisecond an ``exchange_seq`` lies in."""
    return _EPOCH + (seq // SEQ_PER_MS) * _MS


class LiveRanker:
    """Ranks WebSocket trades in delivery order: one (millisecond, next rank) per market."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}

    def seq(self, market: str, ts: datetime) -> int:
        ms = epoch_ms(ts)
        last = self._last.get(market)
        rank = last[1] if last is not None and last[0] == ms else 0
        if rank >= SEQ_PER_MS:
            rank = SEQ_PER_MS - 1  # a million fills in one millisecond: ties, never an overflow
        if last is None and len(self._last) >= self.PRUNE_AT:
            self._prune(ms)
        self._last[market] = (ms, rank + 1)
        return ms * SEQ_PER_MS + rank

    PRUNE_AT: Final = 10_000

    def _prune(self, now_ms: int) -> None:
        """Forget markets whose last trade is over a second old: a market's next trade is never
        in an earlier millisecond, so only the newest millisecond of each market can matter."""
        horizon = now_ms - 1_000
        self._last = {m: v for m, v in self._last.items() if v[0] >= horizon}

    def __len__(self) -> int:
        return len(self._last)


T = TypeVar("T")


class RestRanker(Generic[T]):
    """Ranks REST trades listed newest first.

    ``push`` takes each trade of the listing in order (with its market and ``created_time``) and
    yields ``(trade, exchange_seq)`` for the milliseconds the listing has moved past; ``finish``
    yields the rest. Only the newest millisecond seen is held back, so memory is bounded by the
    trades of one millisecond. A trade newer than one already ranked (a listing that is not
    newest first) is ranked among the trades of its millisecond still held, and counted in
    ``out_of_order``.
    """

    def __init__(self) -> None:
        self._ms: int | None = None
        self._held: list[tuple[str, datetime, int, T]] = []
        self._position = 0
        self.out_of_order = 0

    def push(self, market: str, created: datetime, trade: T) -> Iterator[tuple[T, int]]:
        ms = epoch_ms(created)
        if self._ms is not None and ms != self._ms:
            if ms > self._ms:
                self.out_of_order += 1
            yield from self._release()
        self._ms = ms
        self._held.append((market, created, self._position, trade))
        self._position += 1

    def finish(self) -> Iterator[tuple[T, int]]:
        yield from self._release()
        self._ms = None

    def _release(self) -> Iterator[tuple[T, int]]:
        held, self._held = self._held, []
        # Oldest first: by time, then the one listed later (older) first.
        held.sort(key=lambda h: (h[0], h[1], -h[2]))
        market: str | None = None
        rank = 0
        for m, created, _position, trade in held:
            rank = rank + 1 if m == market else 0
            market = m
            yield trade, epoch_ms(created) * SEQ_PER_MS + min(rank, SEQ_PER_MS - 1)
