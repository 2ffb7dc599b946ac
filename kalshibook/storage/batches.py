"""The writer's rows in memory: one queue per table and the batches cut from it.

A :class:`TableQueue` keeps the rows producers handed to :class:`kalshibook.storage.writer.Writer`
with, for runs handed over per burst, their msgpack encoding made at once; :meth:`TableQueue.take`
cuts the next batch with its body ready for the COPY worker (:mod:`kalshibook.storage.copyworker`:
a msgpack array of row arrays). A :class:`Batch` is what a flusher writes: rows in memory or in a
spool file, its place in the commit order and how far it got. The writer decides when to cut and
where batches go; these are its data, on the per-row path (no per-row work beyond the list
operations).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from kalshibook.storage.tables import TableSpec

__all__ = ("Batch", "Row", "TableQueue", "array_head", "encoder", "items_of", "one_more")

Row = Sequence[Any]
"""A row: a tuple (or the table's NamedTuple) in column order."""


class TableQueue:
    """One table's queued rows, waiting to be cut into a batch."""

    __slots__ = (
        "blocked_seconds",
        "first_at",
        "limit",
        "ncols",
        "rows",
        "rows_put",
        "segs",
        "space",
        "spec",
        "trigger",
        "waits",
    )

    def __init__(self, spec: TableSpec, limit: int, trigger: int) -> None:
        self.spec = spec
        self.rows: list[Row] = []
        self.segs: list[tuple[int, bytes | None]] = []
        """``rows`` in consecutive runs: ``(count, their msgpack items)`` for a run queued by
        :meth:`~kalshibook.storage.writer.Writer.put_table_nowait` (encoded at once, while the
        rows are still in the CPU's cache), ``(count, None)`` for rows queued one by one
        (encoded when their batch is cut). The counts add up to ``len(rows)``; empty while only
        single rows were queued."""
        self.first_at = 0.0
        """Monotonic time the oldest queued row arrived (approximately, after a partial cut)."""
        self.limit = limit
        self.trigger = trigger
        self.ncols = len(spec.columns)
        self.space = asyncio.Event()
        self.rows_put = 0
        self.waits = 0
        self.blocked_seconds = 0.0

    def take(self, batch_rows: int) -> tuple[list[Row], bytes | None]:
        """The next batch: the first ``batch_rows`` rows (all when fewer), with their
        msgpack body: runs encoded at put time as they are, the rest encoded now (a run the cut
        splits is re-encoded for the part taken). The body is None only when a row cannot be
        encoded (the write then encodes the rows itself, which isolates that row)."""
        rows_q = self.rows
        n = min(len(rows_q), batch_rows)
        segs = self.segs
        if not segs:  # only rows queued one by one
            segs.append((len(rows_q), None))
        parts: list[bytes | None] = []
        pos = k = 0
        for count, items in segs:
            if pos + count > n:
                break
            parts.append(items if items is not None else items_of(rows_q[pos : pos + count]))
            pos += count
            k += 1
        del segs[:k]
        if pos < n:  # the cut falls inside the next run: take its head, unencoded remainder
            parts.append(items_of(rows_q[pos:n]))
            segs[0] = (segs[0][0] - (n - pos), None)
        if n == len(rows_q):
            rows = rows_q
            self.rows = []
        else:
            rows = rows_q[:n]
            del rows_q[:n]
        self.space.set()
        if None in parts:
            return rows, None
        return rows, b"".join([array_head(n), *parts])  # type: ignore[list-item]


class Batch:
    """Rows cut from a queue (or a spool file), written in one transaction."""

    __slots__ = (
        "body",
        "done",
        "live",
        "n",
        "offset",
        "path",
        "rows",
        "seq",
        "spec",
        "writer_id",
    )

    def __init__(
        self,
        seq: int,
        spec: TableSpec,
        rows: list[Row] | None,
        n: int,
        *,
        live: bool,
        writer_id: uuid.UUID | None,
        path: Path | None = None,
    ) -> None:
        self.seq = seq
        """Order of the batch among its writer's batches (per table: commit order)."""
        self.writer_id = writer_id
        """The writer that cut the batch (its commit marks); None: a version 1 spool file."""
        self.offset = 0
        """Index of ``rows[0]`` in the batch as cut (a spooled remainder starts further on)."""
        self.spec = spec
        self.rows = rows
        """The rows when held in memory; None when they are in the spool file ``path``."""
        self.n = n
        self.path = path
        self.done = 0
        """Rows at the front already committed or rejected (after a partial, bisected write)."""
        self.live = live
        """Put by this process (False: recovered from a previous process's spool)."""
        self.body: bytes | None = None
        """All of ``rows`` msgpack-encoded when the batch was cut (None: encoded when written,
        or spooled). Held with the rows while the database is away."""


encoder = msgspec.msgpack.Encoder()


def items_of(rows: Sequence[Row]) -> bytes | None:
    """The msgpack encoding of ``rows`` without its array header (None if a row cannot be
    encoded: the batch is then encoded when written, which isolates the row)."""
    try:
        data = encoder.encode(rows)
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError):
        return None
    head = data[0]
    return data[1:] if head < 0xDC else data[3:] if head == 0xDC else data[5:]


def array_head(n: int) -> bytes:
    """msgpack array header for ``n`` items (fixarray, array 16, array 32)."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def one_more(segs: list[tuple[int, bytes | None]]) -> None:
    """A row queued on its own: extend the trailing unencoded run or start one."""
    if segs and segs[-1][1] is None:
        segs[-1] = (segs[-1][0] + 1, None)
    else:
        segs.append((1, None))
