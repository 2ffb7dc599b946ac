"""Candle export files: one market's candles of one interval whose period starts in a UTC day.

The rows are the API's (``GET /v1/markets/{ticker}/candles`` without ``fill``): the same read of
the candle relations (:func:`kalshibook.storage.candle_reads.fetch_candle_data`: the bucket rows
of the trades, quotes and stats aggregates plus the state carried in from before the day) and the
same assembly. The file's source fingerprint is a digest of exactly what that read returns, so a
re-run that finds it unchanged skips the assembly and the write. Not a count of the raw rows: on
the Community edition old buckets come from the aggregates' materialisations, which take in a
late row only at their next refresh; a raw count would change before the candles do and then
never again, leaving the file stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator
from datetime import date
from decimal import Decimal
from typing import Any

import msgspec
import psycopg

from kalshibook.domain.candle_rows import (
    CandleRow,
    QuoteBucketText,
    StatsBucketText,
    TradeBucketText,
)
from kalshibook.domain.periods import Interval, period_floor
from kalshibook.export.reads import day_bounds
from kalshibook.storage.candle_reads import CandleData, fetch_candle_data

__all__ = ("CandleDay", "candle_batches", "candle_tuple")

AConn = psycopg.AsyncConnection[Any]


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def candle_tuple(ticker: str, r: CandleRow) -> tuple[Any, ...]:
    vwap = None if r.vwap is None else Decimal(r.vwap).scaleb(-6)
    return (
        r.start,
        r.end,
        ticker,
        _dec(r.open),
        _dec(r.high),
        _dec(r.low),
        _dec(r.close),
        Decimal(r.volume),
        vwap,
        r.trade_count,
        Decimal(r.taker_yes_volume),
        Decimal(r.taker_no_volume),
        _dec(r.previous),
        _dec(r.yes_bid_open),
        _dec(r.yes_bid_high),
        _dec(r.yes_bid_low),
        _dec(r.yes_bid_close),
        _dec(r.yes_ask_open),
        _dec(r.yes_ask_high),
        _dec(r.yes_ask_low),
        _dec(r.yes_ask_close),
        _dec(r.open_interest),
    )


def _bucket_of(row: TradeBucketText | QuoteBucketText | StatsBucketText) -> int:
    return row.bucket_us


class CandleDay:
    """One candle file's source: read once (:meth:`fingerprint`), then assembled if needed
    (:meth:`batches`). Holds at most a day of bucket rows (1,440 for 1m)."""

    def __init__(self, conn: AConn, ticker: str, interval: Interval, day: date) -> None:
        self.conn = conn
        self.ticker = ticker
        self.interval = interval
        self.start, self.end = day_bounds(day)
        self.first = period_floor(self.start, interval)  # a 1d period may start the day before
        self.data: CandleData | None = None

    async def _read(self) -> CandleData:
        if self.data is None:
            self.data = await fetch_candle_data(
                self.conn, self.ticker, self.interval, self.first, self.end
            )
        return self.data

    async def fingerprint(self) -> str:
        """A digest of the candle read's rows and carried state."""
        data = await self._read()
        # each source's rows in bucket order: the same digest whatever order the read returned
        sources = [sorted(rows, key=_bucket_of) for rows in (data.trades, data.quotes, data.stats)]
        return hashlib.sha256(msgspec.msgpack.encode((*sources, data.carried))).hexdigest()

    async def batches(self) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        """The candles whose period starts in the day (one batch)."""
        data = await self._read()
        rows = data.assemble(self.interval, self.first, self.end)
        self.release()
        yield [candle_tuple(self.ticker, r) for r in rows if self.start <= r.start < self.end]

    def release(self) -> None:
        self.data = None


def candle_batches(
    conn: AConn, ticker: str, interval: Interval, day: date
) -> AsyncGenerator[list[tuple[Any, ...]], None]:
    """The market's candles whose period starts in the UTC day (one batch)."""
    return CandleDay(conn, ticker, interval, day).batches()
