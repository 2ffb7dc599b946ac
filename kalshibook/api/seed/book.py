"""``POST /orderbook`` (5 credits) and ``POST /deltas`` (2): the book at an instant and raw deltas,
read by the same functions as ``/v1/markets/{ticker}/orderbook`` and ``/deltas``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Request, post
from litestar.params import JSONBody

from kalshibook.api.deps import Conn, SettingsDep, envelope_meta, require_market
from kalshibook.api.params import parse_range, parse_time
from kalshibook.api.routes._paging import Pager
from kalshibook.api.seed import schemas as s
from kalshibook.api.seed.docs import seed_route
from kalshibook.api.seed.errors import SeedNotFound
from kalshibook.api.seed.numbers import cents, cents_of_units, quantity, quantity_of_units
from kalshibook.storage import book_reads

__all__ = ("HANDLERS", "levels")


def levels(result: book_reads.BookAt, side: str, depth: int | None) -> list[s.Level]:
    """One side's bids, best (highest price) first, the best ``depth`` if given."""
    return [
        s.Level(price=cents_of_units(p), quantity=quantity_of_units(q))
        for p, q in reversed(result.book.levels_units(side, depth))
    ]


@post(
    "/orderbook",
    status_code=200,
    summary="Order book at an instant (kalshibook SDK: get_orderbook)",
    description=(
        "The same rebuild as `GET /v1/markets/{ticker}/orderbook?at=`: the latest snapshot at or "
        "before `timestamp` plus the deltas after it. Bids only, best first, prices in cents. "
        "404 `no_data_available` before the market's first recorded snapshot."
    ),
    **seed_route(5, s.OrderbookResponse, errors=(404,)),
)
async def orderbook(
    request: Request[Any, Any, Any], conn: Conn, data: JSONBody[s.OrderbookRequest]
) -> s.OrderbookResponse:
    instant = parse_time(data.timestamp, "timestamp")
    result = await book_reads.book_at(conn, data.market_ticker, instant)
    if result.snapshot is None:
        await require_market(conn, data.market_ticker)
        raise SeedNotFound(
            f"no order book of {data.market_ticker!r} is recorded at or before {data.timestamp}",
            code="no_data_available",
            parameter="timestamp",
        )
    depth = data.depth or None
    return s.OrderbookResponse(
        market_ticker=result.ticker,
        timestamp=result.at,
        snapshot_basis=result.snapshot.ts,
        deltas_applied=result.deltas_applied,
        yes=levels(result, "yes", depth),
        no=levels(result, "no", depth),
        complete=result.complete,
        **envelope_meta(request),
    )


@post(
    "/deltas",
    status_code=200,
    summary="Raw order-book deltas (kalshibook SDK: list_deltas)",
    description=(
        "The same rows and order as `GET /v1/markets/{ticker}/deltas` ((ts, epoch, seq); "
        "`[start_time, end_time)`), price in cents and the size change in contracts. Pass "
        "`next_cursor` back as `cursor` until `has_more` is false."
    ),
    **seed_route(2, s.DeltasResponse, errors=(404,)),
)
async def deltas(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    data: JSONBody[s.DeltasRequest],
) -> s.DeltasResponse:
    ticker = data.market_ticker
    pager = Pager(request, settings, data.limit, "deltas")
    t0, t1 = parse_range(
        data.start_time, data.end_time, start_name="start_time", end_name="end_time"
    )
    after = pager.after(data.cursor, tuple[datetime, int, int])
    rows = await book_reads.list_deltas(
        conn, ticker=ticker, start=t0, end=t1, after=after, limit=pager.fetch
    )
    if not rows and after is None:
        await require_market(conn, ticker)

    def out(row: book_reads.DeltaRow) -> s.DeltaRecord:
        return s.DeltaRecord(
            market_ticker=ticker,
            ts=row.ts,
            seq=row.seq,
            price_cents=cents(row.price),
            delta_amount=quantity(row.delta),
            side=row.side,
        )

    return pager.page(s.DeltasResponse, rows, out, lambda r: (r.ts, r.epoch, r.seq))


HANDLERS = [orderbook, deltas]
