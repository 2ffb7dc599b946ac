"""Which stored copies of one trade to keep, for databases written before the writer merged them.

A WS trade frame without ``ts_ms`` carries whole seconds (KALSHI_API.md §2.3) and its REST copy
microseconds; the unique key is ``(trade_id, ts)``, so until the writer reconciled such copies
(storage.tables: ``MOVE_STORED_TRADE_COPIES``, ``DROP_STAGED_TRADE_COPIES``) one trade could be
stored twice, doubling its volume in the candles. The merge keeps what the writer keeps now: the
time (``ts``, ``created_time``, ``exchange_seq``) of the finest copy, the REST one first, the
source and receive time of the copy received first, the kept copy's taker sides with those it
lacks taken from the other copies, and ``is_block_trade`` if any copy says so. Pure: the rows
come from and go back to :mod:`kalshibook.storage.trade_copies`.
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
    taker_outcome_side: str | None = None
    taker_book_side: str | None = None
    is_block_trade: bool = False


@dataclass(frozen=True, slots=True)
class Merge:
    """One trade's copies made one: the row at ``(trade_id, keep_ts)`` stays, with ``source``
    and ``received_at`` of the first copy received and the copies' taker sides and block flag
    merged; the rows at ``drop_ts`` go."""

    market_ticker: str
    trade_id: str
    keep_ts: datetime
    source: str
    received_at: datetime
    drop_ts: tuple[datetime, ...]
    taker_outcome_side: str | None = None
    taker_book_side: str | None = None
    is_block_trade: bool = False


def _time_rank(copy: StoredCopy) -> tuple[bool, bool, datetime, datetime]:
    """The copy whose time is kept sorts first: REST, then a time finer than whole seconds."""
    coarse = copy.created_time.microsecond == 0
    return (copy.source != "rest", coarse, copy.received_at, copy.ts)


def _first_known(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v is not None), None)


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
        others = sorted((c for c in group if c is not kept), key=lambda c: (c.received_at, c.ts))
        fill = [kept, *others]  # the kept copy's sides, else the first received that has them
        merges.append(
            Merge(
                market_ticker=market,
                trade_id=trade_id,
                keep_ts=kept.ts,
                source=first.source,
                received_at=first.received_at,
                drop_ts=tuple(sorted(c.ts for c in group if c is not kept)),
                taker_outcome_side=_first_known(c.taker_outcome_side for c in fill),
                taker_book_side=_first_known(c.taker_book_side for c in fill),
                is_block_trade=any(c.is_block_trade for c in group),
            )
        )
    merges.sort(key=lambda m: (m.keep_ts, m.market_ticker, m.trade_id))
    return merges
