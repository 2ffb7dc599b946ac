"""Writing one export file from batches of rows: Parquet (zstd) or gzip CSV, atomically.

Rows arrive as Arrow tables or record batches, or as batches of tuples in the table's column
order (each then becomes one Arrow record batch); each is written before the next is read, so
memory holds one batch. In Parquet each batch is one row group (the raw tables' batches are
blocks of about 8 MiB of COPY text, some 90,000 deltas); only text columns are dictionary-encoded
(times, numbers and ids are nearly unique: trying a dictionary on them doubled the write time and
the size). The file is written beside its final path and renamed into place, its sha256 computed
from the bytes as they are written. Gzip headers carry no time, so the same rows give the same
bytes.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kalshibook.export.tables import TableSpec, arrow_schema, dictionary_columns

__all__ = ("FORMATS", "Format", "Written", "csv_schema", "extension", "to_batch", "write_file")

Format = Literal["parquet", "csv"]
FORMATS: Final[tuple[Format, ...]] = ("parquet", "csv")
GZIP_LEVEL: Final = 5  # ~level 9 sizes at a fraction of its time
ZSTD_LEVEL: Final = 1  # Arrow's default; 3 saves ~10 % of the size for ~6 % more export time


def extension(fmt: Format) -> str:
    return "parquet" if fmt == "parquet" else "csv.gz"


class Written(msgspec.Struct, frozen=True):
    rows: int
    first_ts: datetime | None
    last_ts: datetime | None
    sha256: str
    bytes: int
    replaced: bool = True  # False: the same bytes were already there (``keep``), left as they were


def csv_schema(schema: pa.Schema) -> pa.Schema:
    """Decimals become exact strings (their scale kept); every other type stays."""
    return pa.schema(
        [pa.field(f.name, pa.string()) if pa.types.is_decimal(f.type) else f for f in schema]
    )


Batch: TypeAlias = pa.Table | pa.RecordBatch


def to_batch(schema: pa.Schema, rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    """One record batch from row tuples; a value off its decimal scale raises (never rounds)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class _Range:
    """The earliest and latest value of the time column over every batch (nulls ignored)."""

    def __init__(self, time_index: int) -> None:
        self.index = time_index
        self.first: datetime | None = None
        self.last: datetime | None = None

    def see(self, batch: Batch) -> None:
        mm = pc.min_max(batch.column(self.index)).as_py()
        lo, hi = mm["min"], mm["max"]
        if lo is not None:
            self.first = lo if self.first is None or lo < self.first else self.first
        if hi is not None:
            self.last = hi if self.last is None or hi > self.last else self.last


class _HashingFile:
    """A write-only binary file that hashes what passes through it."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return int(self.raw.write(data))

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:  # the caller closes the underlying file
        self.closed = True


def _as_arrow(schema: pa.Schema, batch: Any) -> Batch:
    if isinstance(batch, pa.Table | pa.RecordBatch):
        return batch
    return to_batch(schema, batch)


async def _write_parquet(
    out: _HashingFile, spec: TableSpec, batches: AsyncGenerator[Any, None], span: _Range
) -> int:
    """Each batch one row group; the rows written."""
    schema, rows = arrow_schema(spec), 0
    with pq.ParquetWriter(
        pa.PythonFile(out, mode="w"),
        schema,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=dictionary_columns(spec),
    ) as pw:
        async for batch in batches:
            rb = _as_arrow(schema, batch)
            span.see(rb)
            rows += rb.num_rows
            table = pa.Table.from_batches([rb]) if isinstance(rb, pa.RecordBatch) else rb
            # compressing and hashing a block is CPU work: off the event loop (the API's)
            await asyncio.to_thread(pw.write_table, table, row_group_size=max(1, rb.num_rows))
    return rows


async def _write_csv(
    out: _HashingFile, spec: TableSpec, batches: AsyncGenerator[Any, None], span: _Range
) -> int:
    """A header, then every batch (decimals as exact text), gzip-compressed; the rows written."""
    schema, rows = arrow_schema(spec), 0
    out_schema = csv_schema(schema)
    gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
    with gz, pacsv.CSVWriter(gz, out_schema) as cw:
        async for batch in batches:
            rb = _as_arrow(schema, batch)
            span.see(rb)
            rows += rb.num_rows
            # the decimal -> text cast too: CPU work, off the event loop
            await asyncio.to_thread(_write_cast, cw, rb, out_schema)
    return rows


def _write_cast(cw: pacsv.CSVWriter, rb: Batch, schema: pa.Schema) -> None:
    cw.write(rb.cast(schema))


def _put_in_place(tmp: Path, path: Path, same_digest: bool) -> tuple[int, bool]:
    """Rename ``tmp`` onto ``path`` unless ``path`` already holds these bytes: (size, replaced)."""
    size = tmp.stat().st_size
    if same_digest and path.exists() and path.stat().st_size == size:
        return size, False
    tmp.replace(path)
    return size, True


async def write_file(
    path: Path,
    spec: TableSpec,
    fmt: Format,
    batches: AsyncGenerator[Any, None],
    *,
    keep: str | None = None,
) -> Written:
    """Write every batch to ``path`` (replacing it atomically); the counts, range and checksum.
    When the bytes' sha256 is ``keep`` and ``path`` exists, the file is left untouched."""
    names = [c.name for c in spec.columns]
    span = _Range(names.index(spec.time_column))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # close the batches' generator however the write ends, so that its cursor or COPY is
        # finished (or cancelled) and its transaction ended before the connection is used again
        async with aclosing(batches):
            with tmp.open("wb") as raw:
                hashing = _HashingFile(raw)
                write = _write_parquet if fmt == "parquet" else _write_csv
                rows = await write(hashing, spec, batches, span)
        digest = hashing.hash.hexdigest()
        size, replaced = _put_in_place(tmp, path, digest == keep)
    finally:
        tmp.unlink(missing_ok=True)
    return Written(rows, span.first, span.last, digest, size, replaced)
