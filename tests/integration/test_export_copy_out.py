"""copy_blocks and the export writes on it: COPY TO STDOUT read in blocks of whole rows, errors
raised as psycopg's own, and the connection usable after an error, an early close or a cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kalshibook.export.copy_out import copy_blocks
from kalshibook.export.files import BadValue, write_file
from kalshibook.export.reads import raw_batches
from kalshibook.export.tables import DELTAS

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

ROWS = """
COPY (SELECT g, repeat('x', g %% 7 + 1), 'a,"b"' FROM generate_series(1, %(n)s) g ORDER BY g)
TO STDOUT (FORMAT csv)
"""
FAILS_LATE = """
COPY (SELECT g, 1 / (%(n)s - g) FROM generate_series(1, %(n)s) g) TO STDOUT (FORMAT csv)
"""

DAY = datetime(2026, 2, 2, tzinfo=UTC)
MANY_DELTAS = """
INSERT INTO market.orderbook_deltas (ts, market_ticker, received_at, side, price, delta, epoch,
                                     sid, seq)
SELECT %(t0)s + g * interval '200 ms', 'CANCEL-M1', %(t0)s + g * interval '200 ms', 'no', 0.25,
       -2.5, 1, 1, g
FROM generate_series(1, %(n)s) g
"""


def _expected(n: int) -> bytes:
    return b"".join(f'{g},{"x" * (g % 7 + 1)},"a,""b"""\n'.encode() for g in range(1, n + 1))


async def test_blocks_are_whole_rows_and_concatenate_to_the_output(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        blocks = [b async for b in copy_blocks(conn, ROWS, {"n": 20_000}, block_bytes=1000)]
        assert len(blocks) > 100
        assert all(b.endswith(b"\n") for b in blocks)
        assert all(1000 <= len(b) < 1100 for b in blocks[:-1])  # a block ends on its first row past
        assert b"".join(blocks) == _expected(20_000)
        # one big block, and an empty result
        assert [b async for b in copy_blocks(conn, ROWS, {"n": 50}, 1 << 20)] == [_expected(50)]
        assert [b async for b in copy_blocks(conn, ROWS, {"n": 0}, 1 << 20)] == []


async def test_a_server_error_mid_copy_raises_its_class(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        got = bytearray()

        async def read_all() -> None:
            async for block in copy_blocks(conn, FAILS_LATE, {"n": 200_000}, block_bytes=4096):
                got.extend(block)

        with pytest.raises(psycopg.errors.DivisionByZero):
            await read_all()
        assert got.count(b"\n") > 0  # rows came before the error
        assert await (await conn.execute("SELECT 41 + 1")).fetchone() == (42,)


async def test_closing_early_cancels_and_leaves_the_connection_usable(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        async with aclosing(copy_blocks(conn, ROWS, {"n": 2_000_000}, block_bytes=4096)) as it:
            async for _ in it:
                break
        assert await (await conn.execute("SELECT 41 + 1")).fetchone() == (42,)
        blocks = [b async for b in copy_blocks(conn, ROWS, {"n": 10}, 1 << 20)]
        assert blocks == [_expected(10)]


async def test_an_export_cancelled_mid_copy_leaves_the_connection_idle(
    db_url: str, tmp_path: Path
) -> None:
    """A deadline that fires while a day's COPY is being read (the API's 504): the COPY is
    cancelled and drained and its transaction ended, so the connection serves the next query."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(MANY_DELTAS, {"t0": DAY, "n": 400_000})
    path = tmp_path / "deltas.parquet"
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        written_one = asyncio.Event()

        async def batches() -> AsyncGenerator[Any, None]:
            day = (DAY, DAY + timedelta(days=1))
            async with aclosing(raw_batches(conn, DELTAS, "CANCEL-M1", *day, 1 << 16)) as inner:
                async for batch in inner:
                    yield batch
                    written_one.set()  # the first block is written; the COPY goes on

        task = asyncio.create_task(write_file(path, DELTAS, "parquet", batches()))
        await written_one.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert await (await conn.execute("SELECT 41 + 1")).fetchone() == (42,)
        assert not path.exists()
        written = await write_file(
            path,
            DELTAS,
            "parquet",
            raw_batches(conn, DELTAS, "CANCEL-M1", DAY, DAY + timedelta(days=1)),
        )
        assert written.rows == 400_000


async def test_a_value_off_its_scale_fails_the_export_and_ends_its_copy(
    db_url: str, tmp_path: Path
) -> None:
    """The first row's price has 7 decimals: its block fails to parse (never rounded) while the
    COPY is still sending the rest; the COPY is cancelled and the connection left idle."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(MANY_DELTAS, {"t0": DAY, "n": 400_000})
        conn.execute(
            "UPDATE market.orderbook_deltas SET price = 0.1234567 WHERE seq = 1 AND ts = %s",
            (DAY + timedelta(milliseconds=200),),
        )
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        batches = raw_batches(conn, DELTAS, "CANCEL-M1", DAY, DAY + timedelta(days=1), 1 << 16)
        with pytest.raises(BadValue, match=r"column 'price' holds 0\.1234567, which does not fit"):
            await write_file(tmp_path / "deltas.parquet", DELTAS, "parquet", batches)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert await (await conn.execute("SELECT 41 + 1")).fetchone() == (42,)
