"""One export file through the API: ``GET /v1/exports/{table}?ticker=&date=&format=``.

The file is the one ``kalshibook export`` writes for that table, market and UTC day (the same
columns and types, docs/export.md). It is written to a temporary file with the request's
connection (server-side cursor or COPY, bounded memory), then streamed from disk, so a client slow
to read holds no database connection. Credits: 1 for the request, plus 1 per started 1,000 rows
(charged when the response is sent; a key without enough credits gets 402 and pays only the 1).

A large day takes longer than the API's request deadline, so the route has its own,
``api.export_timeout`` (``kalshibook.api.deadlines``), and its statements the matching
``statement_timeout`` (the data connections' default is the request deadline). What keeps that
from being abused: the per-key cap on requests in flight, the charge by rows and by seconds held,
and at most ``api.max_concurrent_exports`` files built at once in the process (one more: 503 at
once, refunded), so exports cannot hold every data connection.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
from litestar import Request, get
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter
from litestar.response import Stream

from kalshibook.api import docs
from kalshibook.api import schemas as s
from kalshibook.api.context import request_context
from kalshibook.api.deadlines import EXPORT
from kalshibook.api.deps import Conn, SettingsDep, require_market, services_of
from kalshibook.api.docs import priced, responses
from kalshibook.api.middleware import granted
from kalshibook.api.params import parse_day
from kalshibook.errors import ApiError, BadRequest, NotFound, PaymentRequired
from kalshibook.export import reads as export_reads
from kalshibook.export.candles import candle_batches
from kalshibook.export.files import FORMATS, Format, extension, write_file
from kalshibook.export.run import ExportRequest, spec_for
from kalshibook.export.sampled import bbo_batches, sample_batches
from kalshibook.export.tables import RAW_TABLES

__all__ = ("HANDLERS", "ROWS_PER_CREDIT", "row_credits")

ROWS_PER_CREDIT: Final = 1_000
API_TABLES: Final = (
    *RAW_TABLES,
    "candles_1m",
    "candles_1h",
    "candles_1d",
    "book_samples",
    "trades_bbo",
)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DEFAULTS: Final = ExportRequest(tables=(), start=_EPOCH, end=_EPOCH)
"""book_samples through the API: the CLI's defaults (10 levels, every second)."""
_CHUNK: Final = 1 << 16
MEDIA_TYPE: Final = "application/octet-stream"
STATEMENT_TIMEOUT: Final = "SELECT set_config('statement_timeout', %(ms)s, true)"
"""For the rest of the export's transaction: its statements may run until its deadline."""


class ExportsBusy(ApiError):
    """Every export slot of the process is building a file (refunded, as every 503)."""

    status = 503


def _route_options() -> dict[str, Any]:
    options = priced(1)
    options["opt"] = {**options["opt"], "deadline": EXPORT}
    return options


def _responses() -> dict[int, ResponseSpec]:
    out = responses(s.Problem, docs._PROBLEM_EXAMPLE, errors=(400, 401, 402, 404, 429, 503))
    out[200] = ResponseSpec(
        data_container=bytes,
        description="the file: Parquet, or gzip CSV with format=csv",
        media_type=MEDIA_TYPE,
        examples=[Example(summary="the file's bytes", value="PAR1…(Parquet bytes)…PAR1")],
        generate_examples=False,
    )
    return out


def row_credits(rows: int) -> int:
    """Credits for the rows of one file: 1 per started ``ROWS_PER_CREDIT``."""
    return -(-rows // ROWS_PER_CREDIT)


def _batches(
    conn: Conn, table: str, ticker: str, day: dt.date
) -> AsyncGenerator[Sequence[Any], None]:
    if table in RAW_TABLES:
        lo, hi = export_reads.day_bounds(day)
        return export_reads.raw_batches(conn, RAW_TABLES[table], ticker, lo, hi)
    if table == "book_samples":
        return sample_batches(conn, ticker, day, DEFAULTS.levels, DEFAULTS.every)
    if table == "trades_bbo":
        return bbo_batches(conn, ticker, day)
    interval = table.removeprefix("candles_")
    return candle_batches(conn, ticker, interval, day)  # type: ignore[arg-type]


async def _stream(path: Path, folder: tempfile.TemporaryDirectory[str]) -> AsyncIterator[bytes]:
    try:
        async with await anyio.open_file(path, "rb") as f:
            while chunk := await f.read(_CHUNK):
                yield chunk
    finally:
        folder.cleanup()


@get(
    "/v1/exports/{table:str}",
    summary="One export file (Parquet or gzip CSV) of a market's UTC day",
    description=(
        "The file `kalshibook export` writes for `table`, `ticker` and the UTC `date`: "
        f"tables {', '.join(API_TABLES)}; columns and types in docs/export.md. Costs 1 credit "
        f"plus 1 per started {ROWS_PER_CREDIT:,} rows (402 when the key cannot pay them). "
        "`X-Row-Count` and `X-Content-SHA256` describe the file. The request has its own "
        "deadline, `KALSHIBOOK_API_EXPORT_TIMEOUT` (300 s by default), not the request "
        "timeout; 503 when the server is already building its maximum of export files."
    ),
    tags=["exports"],
    responses=_responses(),
    **_route_options(),
)
async def export_file(
    request: Request[Any, Any, Any],
    conn: Conn,
    settings: SettingsDep,
    table: Annotated[str, Parameter(description="export table")],
    ticker: Annotated[str, Parameter(description="market ticker")],
    date: Annotated[str, Parameter(description="UTC day, YYYY-MM-DD")],
    format: Annotated[str, Parameter(description="parquet (default) or csv")] = "parquet",
) -> Stream:
    if table not in API_TABLES:
        raise NotFound(
            f"unknown export table {table!r}; tables: {', '.join(API_TABLES)}", parameter="table"
        )
    if format not in FORMATS:
        raise BadRequest("format must be parquet or csv", parameter="format")
    fmt: Format = "csv" if format == "csv" else "parquet"
    day = parse_day(date, "date")
    if not ticker or len(ticker) > 200:
        raise BadRequest("ticker must be 1 to 200 characters", parameter="ticker")
    ctx = request_context(request.scope)
    charge = await granted(ctx)  # the file is built only for a granted charge
    await require_market(conn, ticker)
    spec = spec_for(table, DEFAULTS)
    services = services_of(request.app.state)
    if services.exports_busy >= settings.api.max_concurrent_exports:
        raise ExportsBusy(
            f"the server is building {services.exports_busy} export files already; "
            "retry in a few seconds"
        )
    folder = tempfile.TemporaryDirectory(prefix="kalshibook-export-")
    services.exports_busy += 1
    try:
        name = f"{table}_{ticker}_{day.isoformat()}.{extension(fmt)}"
        path = Path(folder.name) / name
        async with conn.transaction():
            ms = int(ctx.remaining(settings.api.export_timeout) * 1000)
            await conn.execute(STATEMENT_TIMEOUT, {"ms": str(ms)})
            written = await write_file(
                path,
                spec,
                fmt,
                _batches(conn, table, ticker, day),
                label=f"{table} of {ticker} on {day.isoformat()}",
            )
        credits = row_credits(written.rows)
        if charge is not None and credits > charge.remaining:
            raise PaymentRequired(
                f"this file has {written.rows} rows and costs {credits} more credits; "
                f"the key has {charge.remaining} left"
            )
        ctx.extra_credits += credits
    except BaseException:
        folder.cleanup()
        raise
    finally:
        services.exports_busy -= 1
    return Stream(
        _stream(path, folder),
        media_type=MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(written.bytes),
            "X-Row-Count": str(written.rows),
            "X-Content-SHA256": written.sha256,
        },
    )


HANDLERS: Final = [export_file]
