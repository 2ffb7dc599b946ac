"""``kalshibook backfill``'s arguments (names, ``--start``) and its time-based progress line."""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
from datetime import UTC, datetime, timedelta

import pytest

from kalshibook.backfill.plan import covered
from kalshibook.backfill.progress import ProgressReport
from kalshibook.cli.backfill import add_arguments, selection
from kalshibook.errors import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--market", ""], "--market '': empty name"),
        (["--series", ""], "--series '': empty name"),
        (["--event", " "], "--event ' ': empty name"),
        (["--market", "A,,B"], "--market 'A,,B': empty name"),
        (["--all", "--market", "A,"], "--market 'A,': empty name"),
    ],
)
def test_empty_names_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        selection(parse(*argv))
    assert str(err.value.args[0]) == message


def test_comma_lists_are_split_like_exports() -> None:
    sel = selection(
        parse("--market", "A, B", "--market", "C,A", "--series", "S1,S2", "--event", "E")
    )
    assert sel.markets == ("A", "B", "C")
    assert sel.series == ("S1", "S2")
    assert sel.events == ("E",)


def test_a_start_in_the_future_is_refused() -> None:
    future = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(ConfigError) as err:
        selection(parse("--all", "--start", str(int(future.timestamp()))))
    assert "in the future" in str(err.value.args[0])
    past = datetime.now(UTC) - timedelta(days=1)
    sel = selection(parse("--all", "--start", past.date().isoformat()))
    assert sel.start is not None
    assert sel.start <= past


def test_covered_never_reaches_past_now() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    a, b = now - timedelta(days=2), now - timedelta(days=1)
    assert covered(a, b, now) == (a, b)
    assert covered(None, b, now) is None
    assert covered(a, None, now) is None
    # A row saved by a --start in the future: covers nothing.
    later = now + timedelta(days=1)
    assert covered(later, later, now) == (now, now)
    assert covered(a, later, now) == (a, now)


async def test_the_progress_line_is_time_based(caplog: pytest.LogCaptureFixture) -> None:
    """A line every ``every`` seconds while work is in flight: while the markets are listed and
    while a market is retried, not only when one is done; the trades of a failed attempt drop."""
    caplog.set_level(logging.INFO, logger="kalshibook.backfill")
    report = ProgressReport(io.StringIO(), tty=False, every=0.05)
    requests = iter(range(1000))
    ticker = asyncio.create_task(report.tick(lambda: next(requests)))
    try:
        report.listing(7)
        await asyncio.sleep(0.2)
        listing = [r.getMessage() for r in caplog.records]
        assert len(listing) >= 2, listing
        assert "listing markets: 7 listed" in listing[-1]
        caplog.clear()
        report.start(3)
        report.trades(10)
        report.discard(10)  # that attempt failed
        report.retrying += 1
        await asyncio.sleep(0.2)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) >= 2, lines
        assert "markets 0/3 trades 0 " in lines[-1]
        assert "retrying 1" in lines[-1]
        report.retrying -= 1
        report.trades(10)
        report.commit(10)
        report.market_done(5)
        caplog.clear()
        await asyncio.sleep(0.12)
        assert "markets 1/3 trades 10 " in caplog.records[-1].getMessage()
    finally:
        ticker.cancel()
        await asyncio.wait([ticker])
    assert ticker.cancelled()


def test_the_terminal_bar_redraws_on_a_market_done() -> None:
    out = io.StringIO()
    report = ProgressReport(out, tty=True)
    report.start(2)
    report.trades(4)
    report.commit(4)
    report.market_done(3)
    assert "[###############---------------] markets 1/2 trades 4 requests 3" in out.getvalue()
