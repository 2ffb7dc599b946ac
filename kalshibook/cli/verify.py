"""``kalshibook verify``: kalshibook's candles (from its trades) against Kalshi's official ones
(``market.kalshi_candles``, loaded by ``kalshibook backfill``), per market and period.

Prints a summary (markets and periods checked, exact matches, mismatches with the largest
differences); exit codes: ``EPILOG``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from kalshibook.backfill.verify import CandleValues, VerifyReport, period_start
from kalshibook.cli.common import EXIT_NO_MATCH, open_checked, parse_instant
from kalshibook.errors import ConfigError, InvalidInput
from kalshibook.settings import Settings
from kalshibook.storage.candles import market_exists
from kalshibook.storage.verify_reads import read_kalshi_candles, read_our_candles, verify_tickers

__all__ = ("EPILOG", "add_arguments", "run")

_MEAN_PLACES = Decimal("0.000001")

EPILOG = f"""\
exit codes:
  0  at most --threshold periods mismatch
  1  more periods mismatch than --threshold, or the database is unreachable or not migrated
  2  bad configuration or arguments
  {EXIT_NO_MATCH}  nothing to verify: no --market named has Kalshi candles (unknown markets, and
     markets not backfilled, are named on stderr), or none are stored at all
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--market", action="append", default=[], metavar="TICKER")
    parser.add_argument(
        "--start",
        default=None,
        help="periods ending after this instant: a UTC day YYYY-MM-DD (its midnight), RFC 3339 "
        "or Unix seconds",
    )
    parser.add_argument(
        "--end", default=None, help="periods ending at or before this instant (the same forms)"
    )
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
        return parse_instant(v, name) if v is not None else None
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None


def ours_values(row: tuple[Decimal, ...] | None) -> CandleValues | None:
    if row is None:
        return None
    volume, o, h, low, c, notional, oi = row
    mean = (notional / volume).quantize(_MEAN_PLACES) if volume else None
    return CandleValues(volume, o, h, low, c, mean, oi)


async def verify(
    url: str,
    tickers: list[str] | None,
    start: datetime | None,
    end: datetime | None,
    missing: list[str] | None = None,
) -> VerifyReport:
    """The comparison; ``missing`` gets one line per named market not verified (unknown, or
    without Kalshi candles)."""
    report = VerifyReport()
    async with await open_checked(url) as conn:
        found = await verify_tickers(conn, tickers)
        for ticker in dict.fromkeys(tickers or ()):
            if ticker in found or missing is None:
                continue
            if await market_exists(conn, ticker):
                missing.append(
                    f"market {ticker!r} has no Kalshi candles: run `kalshibook backfill --market "
                    f"{ticker}` first"
                )
            else:
                missing.append(
                    f"unknown market {ticker!r}: kalshibook has no record of it (no market row, "
                    "trade, quote or ticker update)"
                )
        for ticker in found:
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
    missing: list[str] = []
    report = asyncio.run(
        verify(
            url,
            list(args.market) or None,
            _time(args.start, "--start"),
            _time(args.end, "--end"),
            missing,
        )
    )
    for line in missing:
        print(f"kalshibook verify: {line}", file=sys.stderr)
    if not report.markets:
        if args.market and len(missing) == len(set(args.market)):
            why = "no named market has Kalshi candles"
        elif args.start is not None or args.end is not None:
            why = "no Kalshi candle ends in the --start / --end range"
        else:
            why = "market.kalshi_candles is empty (run `kalshibook backfill` first)"
        print(f"kalshibook verify: nothing to verify: {why}", file=sys.stderr)
        return EXIT_NO_MATCH
    for line in report.summary_lines(args.show):
        print(line)
    if report.mismatched_periods > args.threshold:
        print(
            f"verify: {report.mismatched_periods} mismatched periods exceed the threshold "
            f"{args.threshold}"
        )
        return 1
    return 0
