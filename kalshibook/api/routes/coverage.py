"""``GET /v1/markets/{ticker}/coverage``: what kalshibook holds of a market, and from where
(1 credit). Order books cannot be backfilled (Kalshi keeps none): ``books_from`` is the first
live snapshot."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, get

from kalshibook.api import schemas as s
from kalshibook.api.deps import Conn, envelope_meta
from kalshibook.api.docs import TickerPath, priced, responses
from kalshibook.errors import NotFound
from kalshibook.storage.coverage import Coverage, CoverageGap, SourceSpan, read_coverage

__all__ = ("HANDLERS", "CoverageOne")

BOOKS_NOTE = "order books cannot be backfilled (Kalshi keeps none): books start with live capture"


class CoverageData(Coverage, kw_only=True):
    books_note: str = BOOKS_NOTE


class CoverageOne(s.Base):
    data: CoverageData
    request_id: s.RequestId
    response_time: s.ResponseTime


def _t(h: int, m: int = 0, d: int = 12) -> datetime:
    return datetime(2026, 1, d, h, m, tzinfo=UTC)


EXAMPLE = CoverageOne(
    data=CoverageData(
        ticker="KXHIGHNY-26JAN12-B44.5",
        trades_from=_t(5, 1, 10),
        trades_to=_t(21, 59),
        trade_sources=[
            SourceSpan(source="rest", first=_t(5, 1, 10), last=_t(14, 2)),
            SourceSpan(source="live", first=_t(14, 0), last=_t(21, 59)),
        ],
        backfill_from=_t(5, 0, 10),
        backfill_through=_t(14, 5),
        backfill_complete=False,
        books_from=_t(14, 0),
        kalshi_candles_from=_t(5, 1, 10),
        kalshi_candles_to=_t(14, 5),
        gaps=[CoverageGap(start=_t(17, 3), end=_t(17, 4), reason="disconnect")],
    ),
    request_id="4f6c1b0e2d3a4c5b8e9f0a1b2c3d4e5f",
    response_time=1.4,
)


@get(
    "/v1/markets/{ticker:str}/coverage",
    summary="What kalshibook holds of one market, and from where",
    description=(
        "Trades from/to overall and per source (`live`: the WebSocket; `rest`: the collector's "
        "gap backfill or `kalshibook backfill`), the backfill's progress, order books from the "
        "first live snapshot (" + BOOKS_NOTE + "), Kalshi's own candles stored, and the most "
        "recent recorded gaps (at most 100)."
    ),
    tags=["reference"],
    responses=responses(CoverageOne, EXAMPLE, errors=(401, 402, 404, 429, 503)),
    **priced(1),
)
async def get_coverage(
    request: Request[Any, Any, Any], conn: Conn, ticker: TickerPath
) -> CoverageOne:
    cov = await read_coverage(conn, ticker)
    if cov is None:
        raise NotFound(f"unknown market ticker {ticker!r}", parameter="ticker")
    data = CoverageData(**{f: getattr(cov, f) for f in cov.__struct_fields__})
    return CoverageOne(data=data, **envelope_meta(request))


HANDLERS = [get_coverage]
