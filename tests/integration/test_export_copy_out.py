"""copy_blocks: COPY TO STDOUT read in blocks of whole rows, errors raised as psycopg's own,
and the connection usable after an error or an early close."""

from __future__ import annotations

from contextlib import aclosing

import psycopg
import pytest

from kalshibook.export.copy_out import copy_blocks

pytestmark = [pytest.mark.db, pytest.mark.asyncio(loop_scope="session")]

ROWS = """
COPY (SELECT g, repeat('x', g %% 7 + 1), 'a,"b"' FROM generate_series(1, %(n)s) g ORDER BY g)
TO STDOUT (FORMAT csv)
"""
FAILS_LATE = """
COPY (SELECT g, 1 / (%(n)s - g) FROM generate_series(1, %(n)s) g) TO STDOUT (FORMAT csv)
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
