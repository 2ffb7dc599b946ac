"""Market status in the collector's catalog: REST answers and lifecycle frames, stamped in time.

A status moves either way before resolution (paused/unpaused, closed/reopened): the newest report
wins, a REST answer losing only to a frame that arrived after its request was sent. Resolution
(determined, disputed, amended, finalized) never goes back to an earlier stage; finalized is
terminal. A market that becomes active (an unpause, a reopening) is subscribed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from test_router import Recorder, at, lifecycle, make_router, split

from kalshibook.collector.catalog import Catalog, frame_status, merge_status
from kalshibook.collector.discovery import SERIES_OVERLAP, Discovery
from kalshibook.collector.metrics import Metrics
from kalshibook.collector.reference import market_row
from kalshibook.collector.reference_sync import ReferenceSync
from kalshibook.collector.router import Router
from kalshibook.collector.work import WorkQueues
from kalshibook.errors import ProtocolError
from kalshibook.kalshi.rest_decode import decode_market, decode_series
from kalshibook.kalshi.rest_models import Market, Series

M = "KXHIGHNY-26AUG24-B80.5"
E = "KXHIGHNY-26AUG24"
S = "KXHIGHNY"


def rest_market(status: str, ticker: str = M, **extra: Any) -> Market:
    body = {"ticker": ticker, "event_ticker": E, "status": status, **extra}
    return decode_market(json.dumps({"market": body}).encode())


def msg(event_type: str, **extra: Any) -> str:
    return json.dumps({"market_ticker": M, "event_type": event_type, **extra})


@pytest.fixture
def effects() -> Recorder:
    return Recorder()


@pytest.fixture
def router(effects: Recorder) -> Router:
    r = make_router(effects)
    r.catalog.events[E] = S
    return r


def stored(m: Market, cat: Catalog, asked_at: datetime | None) -> str:
    """The status of the ``markets`` row a REST answer (asked at ``asked_at``) produces."""
    row = market_row(m, cat, asked_at)
    assert row is not None
    return row.status


def statuses(r: Router) -> list[str]:
    return [m.status for m in split(r).get("markets", [])]


# -- the merge rule -----------------------------------------------------------------------------


def test_newest_report_wins_before_resolution() -> None:
    t0, t1 = at(0), at(1)
    assert merge_status("active", "inactive", t1, t0) == "active"  # unpaused
    assert merge_status("active", "inactive", t0, t1) == "inactive"  # stale REST page
    assert merge_status("active", "closed", t1, t0) == "active"  # reopened
    assert merge_status("closed", "active", t0, t1) == "active"  # frame after the request
    assert merge_status("active", "inactive", t0, None) == "active"  # known from the database
    # a caller that cannot tell when it asked: a later or equal stage wins, an earlier one not
    assert merge_status("active", "inactive", None, t0) == "active"
    assert merge_status("closed", "active", None, t0) == "closed"
    assert merge_status("initialized", "active", None, t0) == "active"
    assert merge_status(None, "active") == "active"


def test_resolution_never_goes_back_but_moves_as_reported() -> None:
    t0, t1 = at(0), at(1)
    for late in ("active", "inactive", "closed", "initialized", "open"):
        for known in ("determined", "disputed", "amended", "finalized"):
            assert merge_status(late, known, t1, t0) == known
    assert merge_status("disputed", "determined", t1, t0) == "disputed"
    assert merge_status("amended", "disputed", t1, t0) == "amended"
    assert merge_status("determined", "disputed", t1, t0) == "determined"  # dispute rejected
    assert merge_status("disputed", "determined", t0, t1) == "determined"  # stale page
    assert merge_status("disputed", "determined", None, t0) == "disputed"
    assert merge_status("finalized", "amended", t0, t1) == "finalized"  # forward always
    assert merge_status("determined", "active", t0, t1) == "determined"
    for anything in ("determined", "disputed", "amended", "active", "closed"):
        assert merge_status(anything, "finalized", t1, t0) == "finalized"  # terminal


def test_frames_imply_statuses() -> None:
    assert frame_status("deactivated", True) == "inactive"
    assert frame_status("deactivated", False) == "active"
    assert frame_status("activated", None) == "active"
    assert frame_status("close_date_updated", None) is None


# -- router + REST rows (the reviewer's reproductions) -------------------------------------------


def test_unpause_lost_then_rest_says_active(router: Router) -> None:
    router.handle(lifecycle(1, 1, msg("created", additional_metadata={"event_ticker": E})))
    router.handle(lifecycle(1, 2, msg("activated")))
    router.handle(lifecycle(1, 3, msg("deactivated", is_deactivated=True)))
    assert statuses(router) == ["initialized", "active", "inactive"]
    # a REST page asked before the pause frame arrived is stale
    assert stored(rest_market("active"), router.catalog, at(-1000)) == "inactive"
    # the unpause frame was lost; a later REST answer says active: that is what is stored
    assert stored(rest_market("active"), router.catalog, at(60_000)) == "active"


def test_restart_statuses_from_the_database_yield_to_rest() -> None:
    cat = Catalog()
    cat.note_market(M, E, S, "inactive")  # what the previous run stored; no time known
    cat.events[E] = S
    assert stored(rest_market("active"), cat, at(0)) == "active"
    assert stored(rest_market("closed"), cat, at(1)) == "closed"


def test_closed_market_reopens_on_activated(router: Router, effects: Recorder) -> None:
    assert stored(rest_market("closed"), router.catalog, at(-5000)) == "closed"
    router.handle(lifecycle(1, 1, msg("close_date_updated", close_ts=1893456000)))
    router.handle(lifecycle(1, 2, msg("activated")))
    assert statuses(router) == ["closed", "active"]
    assert effects.of("subscribe") == [[M]]
    # the same REST page, answered late (asked before the frames): still active
    assert stored(rest_market("closed"), router.catalog, at(-5000)) == "active"


def test_disputed_and_amended_are_recorded(router: Router) -> None:
    router.handle(
        lifecycle(
            1,
            1,
            msg(
                "determined",
                result="yes",
                settlement_value="1.0000",
                determination_ts=1893456000,
            ),
        )
    )
    split(router)
    cat = router.catalog
    assert stored(rest_market("disputed", result="yes"), cat, at(10)) == "disputed"
    assert (
        stored(rest_market("amended", result="no", settlement_value_dollars="0.0000"), cat, at(20))
        == "amended"
    )
    assert stored(rest_market("active"), cat, at(30)) == "amended"  # never back before resolution
    router.handle(lifecycle(1, 2, msg("settled", settled_ts=1893457000)))
    assert statuses(router) == ["finalized"]
    assert stored(rest_market("determined"), cat, at(40)) == "finalized"


def test_frame_after_the_request_beats_the_answer(router: Router) -> None:
    router.catalog.note_market(M, E, S, "active", at(-10_000))
    asked = at(-1)  # the request left, then the pause frame arrived, then the answer
    router.handle(lifecycle(1, 1, msg("deactivated", is_deactivated=True)))
    assert stored(rest_market("active"), router.catalog, asked) == "inactive"


# -- subscription on a move into active ------------------------------------------------------------


def test_unpause_frame_subscribes_a_paused_market(router: Router, effects: Recorder) -> None:
    router.catalog.note_market(M, E, S, "inactive", at(-10_000))  # discovered paused
    router.handle(lifecycle(1, 1, msg("deactivated", is_deactivated=False)))
    assert statuses(router) == ["active"]
    assert effects.of("subscribe") == [[M]]
    router.handle(lifecycle(1, 2, msg("deactivated", is_deactivated=True)))
    router.handle(lifecycle(1, 3, msg("deactivated", is_deactivated=False)))
    assert statuses(router) == ["inactive", "active"]
    assert effects.of("subscribe") == [[M], [M]]


class FakeWriter:
    def __init__(self) -> None:
        self.markets: list[Any] = []
        self.series: list[Any] = []
        self.events: list[Any] = []

    async def upsert_markets(self, rows: Any) -> None:
        self.markets.extend(rows)

    async def upsert_series(self, rows: Any) -> None:
        self.series.extend(rows)

    async def upsert_events(self, rows: Any) -> None:
        self.events.extend(rows)


class FakeRest:
    """The REST calls discovery makes; ``markets`` is what Kalshi answers now."""

    def __init__(self) -> None:
        self.markets: dict[str, Market] = {}
        self.series: dict[str, Series] = {}
        self.series_calls: list[datetime | None] = []
        self.series_fails = 0
        """How many more series refreshes fail."""
        self.clock = at(0)

    async def get_market_pages(
        self, *, status: str | None = None, tickers: Sequence[str] | None = None, **_: Any
    ) -> AsyncIterator[tuple[datetime, Sequence[Market]]]:
        self.clock += timedelta(seconds=1)
        if tickers is not None:
            found = [self.markets[t] for t in tickers if t in self.markets]
        else:
            found = [
                m
                for m in self.markets.values()
                if m.status in ("active", "inactive")  # Kalshi's "open" filter
            ]
        yield self.clock, found

    async def get_markets(self, **kw: Any) -> AsyncIterator[Market]:
        async for _, page in self.get_market_pages(**kw):
            for m in page:
                yield m

    async def get_events(self, **_: Any) -> AsyncIterator[Any]:
        return
        yield

    async def get_series(self, ticker: str) -> Series | None:
        return self.series.get(ticker)

    async def get_series_list(self, *, min_updated_ts: datetime | None = None) -> list[Series]:
        self.series_calls.append(min_updated_ts)
        if self.series_fails:
            self.series_fails -= 1
            raise ProtocolError("a series Kalshi sent does not decode")
        return list(self.series.values())


def discovery(rest: FakeRest, cat: Catalog, work: WorkQueues, **kw: Any) -> Discovery:
    writer = FakeWriter()
    refs = ReferenceSync(cast(Any, rest), cast(Any, writer), cat, subscribe=work.subscribe_markets)
    return Discovery(
        rest=cast(Any, rest),
        refs=refs,
        catalog=cat,
        work=work,
        metrics=Metrics(),
        interval=300.0,
        stop=asyncio.Event(),
        ready=asyncio.Event(),
        **kw,
    )


async def test_rest_answer_moving_a_market_into_active_subscribes_it() -> None:
    cat = Catalog()
    cat.events[E] = S
    cat.note_market(M, E, S, "inactive", at(-10_000))  # paused, frame-stamped
    subscribed: list[list[str]] = []
    refs = ReferenceSync(
        cast(Any, FakeRest()), cast(Any, FakeWriter()), cat, subscribe=subscribed.append
    )
    assert await refs.store_markets([rest_market("active")], at(-20_000)) == []  # stale
    assert subscribed == []
    assert await refs.store_markets([rest_market("active")], at(0)) == [M]
    assert subscribed == [[M]]
    assert await refs.store_markets([rest_market("active")], at(1)) == [M]
    assert subscribed == [[M]]  # already active: followed already


async def test_discovery_follows_a_paused_market_once_it_trades_again() -> None:
    rest = FakeRest()
    cat = Catalog()
    cat.events[E] = S
    cat.series.add(S)
    work = WorkQueues()
    d = discovery(rest, cat, work)
    rest.markets[M] = rest_market("inactive")
    await d.sweep()
    assert M not in work.adds
    assert cat.markets[M].status == "inactive"
    rest.markets[M] = rest_market("active")  # unpaused; its frame was lost
    await d.sweep()
    assert M in work.adds
    assert cat.markets[M].status == "active"


async def test_discovery_reopens_a_closed_market() -> None:
    rest = FakeRest()
    cat = Catalog()
    cat.events[E] = S
    cat.series.add(S)
    cat.note_market(M, E, S, "closed")  # stored closed by the previous run
    work = WorkQueues()
    d = discovery(rest, cat, work)
    rest.markets[M] = rest_market("active")  # close date moved: trading again
    await d.sweep()
    assert cat.markets[M].status == "active"
    assert M in work.adds


# -- series refresh cadence ------------------------------------------------------------------------


async def test_discovery_refreshes_series_first_fully_then_by_update_time() -> None:
    rest = FakeRest()
    cat = Catalog()
    cat.series.add(S)
    d = discovery(rest, cat, WorkQueues(), series_every=2)
    old = decode_series(json.dumps({"series": {"ticker": S, "title": "Old"}}).encode())
    rest.series[S] = old
    for _ in range(5):
        await d.sweep()
    full, incremental, third = rest.series_calls
    assert full is None
    latest = datetime.now(UTC) - SERIES_OVERLAP
    assert incremental is not None
    assert third is not None
    assert latest - timedelta(minutes=1) < incremental <= third <= latest
    writer = cast(FakeWriter, d.refs.writer)
    assert [r.ticker for r in writer.series] == [S, S, S]


async def test_a_failed_series_refresh_does_not_fail_the_sweep() -> None:
    """The markets of the sweep are stored and followed; the next sweep retries the series."""
    rest = FakeRest()
    cat = Catalog()
    cat.events[E] = S
    cat.series.add(S)
    work = WorkQueues()
    d = discovery(rest, cat, work, series_every=12)
    rest.markets[M] = rest_market("active")
    rest.series[S] = decode_series(json.dumps({"series": {"ticker": S, "title": "T"}}).encode())
    rest.series_fails = 1
    await d.sweep()  # does not raise
    assert M in work.adds
    await d.sweep()
    assert rest.series_calls == [None, None]  # retried at once, in full
    await d.sweep()
    assert len(rest.series_calls) == 2  # then every 12 sweeps again
