"""Reading ``COPY ... TO STDOUT`` in blocks of rows, not one Python round trip per row.

PostgreSQL sends one CopyData message per row. psycopg's ``AsyncCopy`` iteration hands back
each one through its generic wait machinery (a generator and an await per row, a few µs each),
which made reading cost three times the server's own COPY. :func:`copy_blocks` lets psycopg
start the COPY (client-side parameter binding, the connection's lock, error and cancel handling
of an interrupted COPY), then takes the rows libpq has already buffered in a tight loop over the
public libpq wrapper (``psycopg.pq.PGconn.get_copy_data``), waits for the socket only when the
buffer is empty, and collects the final result itself. Memory: the block being filled (about
``block_bytes`` plus one row); each full block is handed to the caller without a copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final

import psycopg
from psycopg import pq
from psycopg.abc import Query

__all__ = ("copy_blocks",)

_ASYNC: Final = 1  # get_copy_data(async_=1): 0 means "nothing buffered", never blocks


async def _readable(fd: int) -> None:
    """Until the socket has data (asyncio's reader callback; removed on return or cancel)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _error(res: pq.abc.PGresult, encoding: str) -> psycopg.Error:
    state = (res.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode("ascii", "replace")
    message = (res.error_message or b"").decode(encoding, "replace").strip()
    try:
        cls = psycopg.errors.lookup(state)
    except KeyError:
        cls = psycopg.DatabaseError
    return cls(message or "COPY failed")


async def _finish(pgconn: pq.abc.PGconn, encoding: str) -> None:
    """After the last row: collect the COPY's final result (raise its error, if any)."""
    failure: psycopg.Error | None = None
    while True:
        while pgconn.is_busy():
            await _readable(pgconn.socket)
            pgconn.consume_input()
        res = pgconn.get_result()
        if res is None:
            break
        if res.status != pq.ExecStatus.COMMAND_OK and failure is None:
            failure = _error(res, encoding)
    if failure is not None:
        raise failure


async def copy_blocks(
    conn: psycopg.AsyncConnection[Any],
    query: Query,
    params: Mapping[str, Any],
    block_bytes: int,
) -> AsyncGenerator[bytearray, None]:
    """The output of ``query`` (a ``COPY ... TO STDOUT``) as blocks of whole rows, each a new
    buffer of ``block_bytes`` plus at most one row (the last one shorter)."""
    async with conn.cursor() as cur, cur.copy(query, params):
        pgconn = conn.pgconn
        encoding = conn.info.encoding
        block = bytearray()
        while True:
            nbytes, data = pgconn.get_copy_data(_ASYNC)
            if nbytes > 0:
                # copied at once: holding libpq's row buffers (one per row) costs twice as much
                block += data
                if len(block) >= block_bytes:
                    full, block = block, bytearray()
                    yield full  # handed over, not copied: the caller may keep it
            elif nbytes == 0:  # libpq's buffer is empty: wait for the socket
                await _readable(pgconn.socket)
                pgconn.consume_input()
            elif nbytes == -1:  # the end of the COPY (or its error, in the final result)
                break
            else:
                message = pgconn.error_message.decode(encoding, "replace").strip()
                raise psycopg.OperationalError(message or "COPY failed")
        await _finish(pgconn, encoding)
        if block:
            yield block
