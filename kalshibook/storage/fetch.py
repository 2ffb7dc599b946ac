"""The fetch helpers of the read modules (:mod:`kalshibook.storage.reads`,
:mod:`kalshibook.storage.book_reads`): one constant query's rows built by a row type, and the
parameters of a keyset cursor."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, LiteralString, TypeVar

from psycopg import AsyncConnection, sql
from psycopg.rows import args_row

__all__ = ("fetch_all", "fetch_one", "keyset")

Conn = AsyncConnection[Any]
_R = TypeVar("_R")


async def fetch_all(
    conn: Conn,
    row: Callable[..., _R],
    query: LiteralString | sql.Composed,
    params: Mapping[str, Any] | None = None,
) -> list[_R]:
    """Every row of one of the constant queries above, built by ``row``."""
    async with conn.cursor(row_factory=args_row(row)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def fetch_one(
    conn: Conn,
    row: Callable[..., _R],
    query: LiteralString,
    params: Mapping[str, Any] | None = None,
) -> _R | None:
    """The first row of one of the constant queries above, or ``None``."""
    async with conn.cursor(row_factory=args_row(row)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


def keyset(names: tuple[str, ...], after: Sequence[Any] | None) -> dict[str, Any]:
    """The cursor parameters of a keyset listing: ``names`` bound to the parts of ``after`` (all
    ``None`` on the first page)."""
    if not after:
        return dict.fromkeys(names)
    return dict(zip(names, after, strict=True))
