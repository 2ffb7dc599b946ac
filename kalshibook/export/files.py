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
import contextlib
import gzip
import hashlib
import os
import re
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kalshibook.errors import KalshibookError
from kalshibook.export.tables import TableSpec, arrow_schema, dictionary_columns

__all__ = (
    "FORMATS",
    "BadValue",
    "Format",
    "Written",
    "csv_schema",
    "extension",
    "read_texts",
    "remove_stale_temps",
    "temp_path",
    "to_batch",
    "write_file",
)

Format = Literal["parquet", "csv"]
FORMATS: Final[tuple[Format, ...]] = ("parquet", "csv")
GZIP_LEVEL: Final = 5  # ~level 9 sizes at a fraction of its time
ZSTD_LEVEL: Final = 1  # Arrow's default; 3 saves ~10 % of the size for ~6 % more export time


TEMP_NAME: Final = re.compile(r"\..+\.[0-9]+\.tmp")
"""The temporary files :func:`write_file` writes beside their final path (``temp_path``)."""


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove the temporary files of :func:`write_file` left in ``directory`` by a run that was
    killed (``SIGKILL``, a crash); the removed paths. Only for a caller that holds the output
    directory's lock (kalshibook/export/run.py), so no running export owns them."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def extension(fmt: Format) -> str:
    return "parquet" if fmt == "parquet" else "csv.gz"


class Written(msgspec.Struct, frozen=True):
    rows: int
    first_ts: datetime | None
    last_ts: datetime | None
    sha256: str
    bytes: int
    replaced: bool = True  # False: the same bytes were already there (``keep``), left as they were


def read_texts(path: Path, fmt: Format, column: str) -> list[str]:
    """The non-null values of a text column of an export file (``[]`` when the file is missing;
    an unreadable file raises ``OSError`` or ``pyarrow.ArrowException``)."""
    if not path.exists():
        return []
    if fmt == "parquet":
        values = pq.read_table(path, columns=[column]).column(0)
    else:  # pyarrow decompresses by the .gz suffix
        convert = pacsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()})
        values = pacsv.read_csv(path, convert_options=convert).column(0)
    return [str(v) for v in values.to_pylist() if v is not None]


def csv_schema(schema: pa.Schema) -> pa.Schema:
    """Decimals become exact strings (their scale kept); every other type stays."""
    return pa.schema(
        [pa.field(f.name, pa.string()) if pa.types.is_decimal(f.type) else f for f in schema]
    )


Batch: TypeAlias = pa.Table | pa.RecordBatch


class BadValue(KalshibookError):
    """A stored value does not fit its column's exact export type (a size with three decimals,
    a price beyond the column's precision): the file is not written, nothing is rounded."""

    status = 500  # the API: a problem naming the value, not an unexplained internal error


def bad_value(name: str, value: Any, type_: pa.DataType, reason: str = "") -> BadValue:
    """The error for ``value`` of column ``name`` that ``type_`` cannot hold exactly."""
    if pa.types.is_decimal(type_):
        fits = f"{type_} ({type_.scale} decimals, {type_.precision} digits)"
    else:
        fits = str(type_)
    why = f": {reason}" if reason else ""
    return BadValue(
        f"column {name!r} holds {value}, which does not fit {fits} exactly (never rounded){why}"
    )


def to_batch(schema: pa.Schema, rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    """One record batch from row tuples; a value off its decimal scale raises :class:`BadValue`
    naming the column and the value (never rounds)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for col, f in zip(columns, schema, strict=True):
        try:
            arrays.append(pa.array(col, type=f.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise _locate(f, col, exc) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _locate(field: pa.Field, values: Sequence[Any], exc: Exception) -> BadValue:
    """The first of ``values`` that ``field``'s type refuses (only after the column failed)."""
    for value in values:
        try:
            pa.array([value], type=field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return bad_value(field.name, value, field.type)
    return BadValue(f"column {field.name!r} cannot be converted to {field.type}: {exc}")


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


async def _in_thread(fn: Callable[..., None], *args: Any) -> None:
    """``fn(*args)`` in a worker thread. Cancelled (Ctrl-C, SIGTERM, a client gone), it still
    waits for the thread to end before the cancel goes on: the writer is then closed, and
    closing a Parquet or CSV writer while a thread writes to it crashes the process."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # retrieved: the cancel is what goes on
        raise


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
            await _in_thread(pw.write_table, table, max(1, rb.num_rows))
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
            await _in_thread(_write_cast, cw, rb, out_schema)
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
    label: str = "",
) -> Written:
    """Write every batch to ``path`` (replacing it atomically); the counts, range and checksum.
    When the bytes' sha256 is ``keep`` and ``path`` exists, the file is left untouched. A value
    that does not fit its column raises :class:`BadValue`, its message prefixed by ``label``
    (the table, market and day), and leaves ``path`` as it was."""
    names = [c.name for c in spec.columns]
    span = _Range(names.index(spec.time_column))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
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
    except BadValue as exc:
        raise BadValue(f"{label}: {exc.message}" if label else exc.message) from None
    finally:
        tmp.unlink(missing_ok=True)
    return Written(rows, span.first, span.last, digest, size, replaced)
