"""Writing one export file from batches of rows: Parquet (zstd) or gzip CSV, atomically.

Rows arrive as Arrow record batches, or as batches of tuples in the table's column order (each
then becomes one Arrow record batch); each batch is written before the next is read, so memory
holds one batch. The file is written beside its final path and renamed into place; its sha256
is computed while writing (CSV) or after (Parquet, read back in 1 MiB blocks). Gzip headers
carry no time, so the same rows give the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kalshibook.export.tables import TableSpec, arrow_schema

__all__ = ("FORMATS", "Format", "Written", "csv_schema", "extension", "to_batch", "write_file")

Format = Literal["parquet", "csv"]
FORMATS: Final[tuple[Format, ...]] = ("parquet", "csv")
_BLOCK: Final = 1 << 20
GZIP_LEVEL: Final = 5  # ~level 9 sizes at a fraction of its time


def extension(fmt: Format) -> str:
    return "parquet" if fmt == "parquet" else "csv.gz"


class Written(msgspec.Struct, frozen=True):
    rows: int
    first_ts: datetime | None
    last_ts: datetime | None
    sha256: str
    bytes: int


def csv_schema(schema: pa.Schema) -> pa.Schema:
    """Decimals become exact strings (their scale kept); every other type stays."""
    return pa.schema(
        [pa.field(f.name, pa.string()) if pa.types.is_decimal(f.type) else f for f in schema]
    )


def to_batch(schema: pa.Schema, rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    """One record batch from row tuples; a value off its decimal scale raises (never rounds)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


class _Range:
    """The earliest and latest value of the time column over every batch (nulls ignored)."""

    def __init__(self, time_index: int) -> None:
        self.index = time_index
        self.first: datetime | None = None
        self.last: datetime | None = None

    def see(self, batch: pa.RecordBatch) -> None:
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

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return int(self.raw.write(data))


async def write_file(
    path: Path, spec: TableSpec, fmt: Format, batches: AsyncIterator[Any]
) -> Written:
    """Write every batch to ``path`` (replacing it atomically); the counts, range and checksum."""
    schema = arrow_schema(spec)
    names = [c.name for c in spec.columns]
    span = _Range(names.index(spec.time_column))
    rows = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if fmt == "parquet":
            with pq.ParquetWriter(tmp, schema, compression="zstd") as pw:
                async for batch in batches:
                    rb = batch if isinstance(batch, pa.RecordBatch) else to_batch(schema, batch)
                    span.see(rb)
                    rows += rb.num_rows
                    pw.write_batch(rb)
            digest = _sha256(tmp)
        else:
            out_schema = csv_schema(schema)
            with tmp.open("wb") as raw:
                hashing = _HashingFile(raw)
                gz = gzip.GzipFile(fileobj=hashing, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[call-overload]
                with gz, pacsv.CSVWriter(gz, out_schema) as cw:
                    async for batch in batches:
                        rb = batch if isinstance(batch, pa.RecordBatch) else to_batch(schema, batch)
                        span.see(rb)
                        rows += rb.num_rows
                        cw.write_batch(rb.cast(out_schema))
                digest = hashing.hash.hexdigest()
        size = tmp.stat().st_size
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return Written(rows, span.first, span.last, digest, size)
