"""Order book at an instant (5 credits), raw deltas for replay (2), recorded gaps (0)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, get
from litestar.openapi.spec import Example
from litestar.params import Parameter

from kalshibook.api import docs
from kalshibook.api import schemas as s
from kalshibook.api.deps import Conn, SettingsDep, envelope_meta, require_market
from kalshibook.api.docs import (
    AtParam,
    CursorParam,
    EndParam,
    LimitParam,
    StartParam,
    TickerPath,
    priced,
    responses,
)
from kalshibook.api.params import parse_range, parse_time
from kalshibook.api.routes._paging import Pager
from kalshibook.domain.prices import (
    PRICE_SCALE,
    fmt_count,
    fmt_dollars,
    fmt_price_units,
    fmt_size_units,
)
from kalshibook.errors import BadRequest
from kalshibook.storage import book_reads

__all__ = ("HANDLERS", "book_out")

MAX_DEPTH = 100


UnitLevel = tuple[int, int]


def _level(level: UnitLevel) -> tuple[str, str]:
    return fmt_price_units(level[0]), fmt_size_units(level[1])


def _price(level: UnitLevel | None, complement: bool = False) -> str | None:
    if level is None:
        return None
    return fmt_price_units(PRICE_SCALE - level[0] if complement else level[0])


def _size(level: UnitLevel | None) -> str | None:
    return None if level is None else fmt_size_units(level[1])


def book_out(result: book_reads.BookAt, depth: int | None = None) -> s.OrderBook:
    """The API shape of a rebuilt book; ``depth`` 0/None = every level."""
    book = result.book
    keep = depth or None
    best_yes = book.best_yes_bid_units()
    best_no = book.best_no_bid_units()
    gap = None
    if result.gap is not None:
        gap = s.BookGapRef(from_ts=result.gap[0], to_ts=result.gap[1], reason=result.gap[2])
    snap = result.snapshot
    last = result.last_event
    return s.OrderBook(
        ticker=result.ticker,
        at=result.at,
        complete=result.complete,
        gap=gap,
        yes_bids=[_level(lv) for lv in book.levels_units("yes", keep)],
        no_bids=[_level(lv) for lv in book.levels_units("no", keep)],
        best=s.BestPrices(
            yes_bid_dollars=_price(best_yes),
            yes_bid_size_fp=_size(best_yes),
            yes_ask_dollars=_price(best_no, complement=True),
            yes_ask_size_fp=_size(best_no),
            no_bid_dollars=_price(best_no),
            no_bid_size_fp=_size(best_no),
            no_ask_dollars=_price(best_yes, complement=True),
            no_ask_size_fp=_size(best_yes),
        ),
        last_event=None
        if last is None
        else s.BookEventRef(kind=last.kind, ts=last.ts, epoch=last.epoch, seq=last.seq),
        snapshot=None
        if snap is None
        else s.SnapshotRef(ts=snap.ts, source=snap.source, epoch=snap.epoch, seq=snap.seq),
        deltas_applied=result.deltas_applied,
    )


def delta_out(row: book_reads.DeltaRow) -> s.Delta:
    return s.Delta(
        ts=row.ts,
        side=row.side,
        price_dollars=fmt_dollars(row.price),
        delta_fp=fmt_count(row.delta),
        epoch=row.epoch,
        sid=row.sid,
        seq=row.seq,
        received_at=row.received_at,
    )


def gap_out(row: book_reads.GapRow) -> s.Gap:
    return s.Gap(
        ticker=row.market_ticker,
        from_ts=row.from_ts,
        to_ts=row.to_ts,
        reason=row.reason,
        sid=row.sid,
        detected_at=row.detected_at,
    )


@get(
    "/v1/markets/{ticker:str}/orderbook",
    summary="Order book at an instant",
    description=(
        "Rebuilt from the latest snapshot at or before `at` and the deltas recorded after it "
        "(ts <= at). Bids only, as Kalshi publishes them; asks are derived: YES ask = 1 - best "
        "NO bid, NO ask = 1 - best YES bid. `complete=false` with the `gap` when `at` falls "
        "inside a recorded gap, after a gap that no snapshot has repaired yet, or before the "
        "market's first snapshot."
    ),
    tags=["order book"],
    responses=responses(s.OrderBookOne, docs.ORDERBOOK_ONE, errors=(400, 401, 402, 404, 429, 503)),
    **priced(5),
)
async def orderbook(
    request: Request[Any, Any, Any],
    conn: Conn,
    ticker: TickerPath,
    at: AtParam = None,
    depth: Annotated[
        int | None,
        Parameter(
            description="levels per side, best first kept; 0 or absent = all (max 100)",
            examples=[Example(value=10)],
        ),
    ] = None,
) -> s.OrderBookOne:
    instant = parse_time(at, "at") if at is not None else datetime.now(UTC)
    if depth is not None and not 0 <= depth <= MAX_DEPTH:
        raise BadRequest(
            f"depth must be between 0 (all levels) and {MAX_DEPTH}, got {depth}", parameter="depth"
        )
    result = await book_reads.book_at(conn, ticker, instant)
    if result.snapshot is None:
        await require_market(conn, ticker)
    return s.OrderBookOne(data=book_out(result, depth), **envelope_meta(request))


@get(
    "/v1/markets/{ticker:str}/deltas",
    summary="Raw order-book deltas for replay",
    description=(
        "Deltas with ts in `[start, end)`, ordered by (ts, epoch, seq). With `with_book=true` "
        "the first page also carries `book`, the book just before `start`, so applying `data` "
        "in order replays the book. A new `epoch` starts with a fresh snapshot (see the "
        "orderbook endpoint) and recorded gaps are listed by the gaps endpoint."
    ),
    tags=["order book"],
    responses=responses(s.DeltaPage, docs.DELTA_PAGE, errors=(400, 401, 402, 404, 429, 503)),
    **priced(2),
)
async def deltas(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    ticker: TickerPath,
    start: StartParam = None,
    end: EndParam = None,
    limit: LimitParam = None,
    cursor: CursorParam = None,
    with_book: Annotated[
        bool,
        Parameter(description="include the starting book (needs `start`)"),
    ] = False,
) -> s.DeltaPage:
    pager = Pager(request, settings, limit, "deltas")
    t0, t1 = parse_range(start, end)
    if with_book and t0 is None and cursor is None:
        raise BadRequest("with_book=true needs `start`", parameter="start")
    after = pager.after(cursor, tuple[datetime, int, int])
    rows = await book_reads.list_deltas(
        conn, ticker=ticker, start=t0, end=t1, after=after, limit=pager.fetch
    )
    book = None
    if with_book and after is None and t0 is not None:
        result = await book_reads.book_at(conn, ticker, t0, inclusive=False)
        book = book_out(result)
        if not rows and result.snapshot is None:
            await require_market(conn, ticker)
    elif not rows and after is None:
        await require_market(conn, ticker)
    return pager.page(s.DeltaPage, rows, delta_out, lambda r: (r.ts, r.epoch, r.seq), book=book)


@get(
    "/v1/markets/{ticker:str}/gaps",
    summary="Recorded order-book gaps of a market",
    description="Gaps overlapping `[start, end)`, ordered by from_ts.",
    tags=["data quality"],
    responses=responses(s.GapPage, docs.GAP_PAGE, errors=(400, 401, 404, 429, 503)),
    **priced(0),
)
async def gaps(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    ticker: TickerPath,
    start: StartParam = None,
    end: EndParam = None,
    limit: LimitParam = None,
    cursor: CursorParam = None,
) -> s.GapPage:
    pager = Pager(request, settings, limit, "gaps")
    t0, t1 = parse_range(start, end)
    after = pager.after(cursor, tuple[datetime, datetime, datetime, str])
    rows = await book_reads.list_gaps(
        conn, ticker=ticker, start=t0, end=t1, after=after, limit=pager.fetch
    )
    if not rows and after is None:
        await require_market(conn, ticker)
    return pager.page(
        s.GapPage, rows, gap_out, lambda r: (r.from_ts, r.detected_at, r.to_ts, r.reason)
    )


HANDLERS = [orderbook, deltas, gaps]
