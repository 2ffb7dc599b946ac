"""``kalshibook verify``: kalshibook's candles (from its trades) against Kalshi's official ones
(``market.kalshi_candles``, loaded by ``kalshibook backfill``), per market and period.

Prints a summary (markets and periods checked, exact matches, mismatches with the largest
differences) and exits 1 when more periods mismatch than ``--threshold`` (default 0).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from kalshibook.backfill.verify import CandleValues, VerifyReport, period_start
from kalshibook.domain.times import parse_time
from kalshibook.errors import ConfigError, InvalidInput
from kalshibook.settings import Settings
from kalshibook.storage.urls import unreachable
from kalshibook.storage.verify_reads import read_kalshi_candles, read_our_candles, verify_tickers

__all__ = ("add_arguments", "run")

_MEAN_PLACES = Decimal("0.000001")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--market", action="append", default=[], metavar="TICKER")
    parser.add_argument("--start", default=None, help="periods ending after this instant")
    parser.add_argument("--end", default=None, help="periods ending at or before this instant")
    parser.add_argument(
        "--threshold",
        type=int,
        default=0,
        metavar="N",
        help="exit 1 when more than N periods mismatch (default: %(default)s)",
    )
    parser.add_argument(
        "--show", type=int, default=10, metavar="N", help="largest differences shown"
    )


def _time(v: str | None, name: str) -> datetime | None:
    try:
        return parse_time(v, name) if v is not None else None
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None


def ours_values(row: tuple[Decimal, ...] | None) -> CandleValues | None:
    if row is None:
        return None
    volume, o, h, low, c, notional, oi = row
    mean = (notional / volume).quantize(_MEAN_PLACES) if volume else None
    return CandleValues(volume, o, h, low, c, mean, oi)


async def verify(
    url: str, tickers: list[str] | None, start: datetime | None, end: datetime | None
) -> VerifyReport:
    report = VerifyReport()
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    async with conn:
        for ticker in await verify_tickers(conn, tickers):
            rows = await read_kalshi_candles(conn, ticker, start, end)
            by_period: dict[int, list[tuple[Any, ...]]] = {}
            for r in rows:
                by_period.setdefault(int(r[0]), []).append(r)
            for period, lst in by_period.items():
                lo = period_start(lst[0][1], period)
                hi = lst[-1][1] + timedelta(seconds=1)
                ours = await read_our_candles(conn, ticker, period, lo, hi)
                for _, end_ts, vol, o, h, low, c, mean, oi in lst:
                    assert isinstance(end_ts, datetime)
                    kalshi = CandleValues(vol, o, h, low, c, mean, oi)
                    mine = ours_values(ours.get(period_start(end_ts, period)))
                    report.add(ticker, period, end_ts.astimezone(UTC), kalshi, mine)
    return report


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.require_database()
    if args.threshold < 0:
        raise ConfigError("--threshold must be 0 or more")
    report = asyncio.run(
        verify(
            url,
            list(args.market) or None,
            _time(args.start, "--start"),
            _time(args.end, "--end"),
        )
    )
    for line in report.summary_lines(args.show):
        print(line)
    if report.mismatched_periods > args.threshold:
        print(
            f"verify: {report.mismatched_periods} mismatched periods exceed the threshold "
            f"{args.threshold}"
        )
        return 1
    return 0
