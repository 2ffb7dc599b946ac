"""Which stored copies of one trade to keep, for databases written before the writer merged them.

A WS trade frame without ``ts_ms`` carries whole seconds (KALSHI_API.md §2.3) and its REST copy
microseconds; the unique key is ``(trade_id, ts)``, so until the writer reconciled such copies
(storage.tables: ``MOVE_STORED_TRADE_COPIES``, ``DROP_STAGED_TRADE_COPIES``) one trade could be
stored twice, doubling its volume in the candles. The merge keeps what the writer keeps now: the
time (``ts``, ``created_time``, ``exchange_seq``) of the finest copy, the REST one first, and the
source and receive time of the copy received first. Pure: the rows come from and go back to
:mod:`kalshibook.storage.trade_copies`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

__all__ = ("Merge", "StoredCopy", "plan_merges")


@dataclass(frozen=True, slots=True)
class StoredCopy:
    market_ticker: str
    trade_id: str
    ts: datetime
    created_time: datetime
    source: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Merge:
    """One trade's copies made one: the row at ``(trade_id, keep_ts)`` stays, with ``source``
    and ``received_at`` of the first copy received; the rows at ``drop_ts`` go."""

    market_ticker: str
    trade_id: str
    keep_ts: datetime
    source: str
    received_at: datetime
    drop_ts: tuple[datetime, ...]


def _time_rank(copy: StoredCopy) -> tuple[bool, bool, datetime, datetime]:
    """The copy whose time is kept sorts first: REST, then a time finer than whole seconds."""
    coarse = copy.created_time.microsecond == 0
    return (copy.source != "rest", coarse, copy.received_at, copy.ts)


def plan_merges(copies: Iterable[StoredCopy]) -> list[Merge]:
    """The merges of every trade (one market's ``trade_id``) stored more than once among
    ``copies``, in the order of the kept rows' times."""
    by_trade: defaultdict[tuple[str, str], list[StoredCopy]] = defaultdict(list)
    for copy in copies:
        by_trade[(copy.market_ticker, copy.trade_id)].append(copy)
    merges = []
    for (market, trade_id), group in by_trade.items():
        if len(group) < 2:
            continue
        kept = min(group, key=_time_rank)
        first = min(group, key=lambda c: (c.received_at, c.ts))
        merges.append(
            Merge(
                market_ticker=market,
                trade_id=trade_id,
                keep_ts=kept.ts,
                source=first.source,
                received_at=first.received_at,
                drop_ts=tuple(sorted(c.ts for c in group if c is not kept)),
            )
        )
    merges.sort(key=lambda m: (m.keep_ts, m.market_ticker, m.trade_id))
    return merges
