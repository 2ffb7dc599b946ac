"""The writer's spool directory: batches on disk while the database is away, and rejected rows.

While the database is down the writer (:mod:`kalshibook.storage.writer`) holds batches in memory
up to ``memory_rows`` rows, then writes each further batch to its own fsynced spool file
``<seq>-<table>.spool`` (msgpack; lexical order = arrival order). On close it spools whatever is
still in memory; on start it replays the files a previous process left (:meth:`Spool.recover`).
A file is deleted only after its batch committed; one that cannot be read is moved to
``rejected/`` (:meth:`Spool.quarantine`), never deleted. Rows the database refuses as invalid are
appended, with the error, to ``rejected/<table>.jsonl``.

Layout of a file: ``(2, table, rows, writer_id, offset)``: the writer's commit-mark identity and
the index of ``rows[0]`` in the batch as cut, so a replay skips rows already committed (see the
writer's docstring). Version 1 files (``(1, table, rows)``, no commit mark) are still replayed,
at least once.

Every method here does blocking file I/O: the writer runs them in a thread (or, on close,
synchronously on purpose).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from kalshibook.storage.tables import ALL_TABLES, TABLES, TableSpec

__all__ = (
    "READ_ERRORS",
    "SPOOL_ERRORS",
    "SPOOL_SUFFIX",
    "SPOOL_VERSION",
    "Spool",
    "rejected_line",
    "spool_name",
)

log = logging.getLogger(__name__)

Row = Sequence[Any]

SPOOL_SUFFIX: Final = ".spool"
SPOOL_VERSION: Final = 2
"""Spool file layout: ``(2, table, rows, writer_id, offset)``. Version 1 files
(``(1, table, rows)``, no commit mark) are still replayed, at least once."""
SPOOL_ERRORS: Final = (OSError, TypeError, ValueError, msgspec.EncodeError)
"""What :meth:`Spool.write` raises when a batch cannot be spooled."""
READ_ERRORS: Final = (OSError, ValueError, msgspec.DecodeError)
"""What :meth:`Spool.read` raises for a file that cannot be read (to be quarantined)."""

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {
    spec.name: msgspec.msgpack.Decoder(
        tuple[int, str, list[spec.row_type], str, int],  # type: ignore[name-defined]
        strict=False,
    )
    for spec in ALL_TABLES
}
_decoders_v1: dict[str, msgspec.msgpack.Decoder[Any]] = {
    spec.name: msgspec.msgpack.Decoder(
        tuple[int, str, list[spec.row_type]],  # type: ignore[name-defined]
        strict=False,
    )
    for spec in ALL_TABLES
}


def spool_name(seq: int, table: str) -> str:
    return f"{seq:016d}-{table}{SPOOL_SUFFIX}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def rejected_line(table: str, row: Row, reason: str) -> bytes:
    """The ``rejected/<table>.jsonl`` record of a row the database refused."""
    return msgspec.json.encode(
        {"table": table, "error": reason, "row": [_json_safe(v) for v in row]}
    )


class Spool:
    """The spool directory of one writer (``writer_id``: its commit-mark identity)."""

    __slots__ = ("directory", "writer_id")

    def __init__(self, directory: Path, writer_id: uuid.UUID) -> None:
        self.directory = directory
        self.writer_id = writer_id

    def write(self, seq: int, spec: TableSpec, rows: Sequence[Row], offset: int = 0) -> Path:
        """Write batch ``seq`` (``rows`` start at index ``offset`` of the batch as cut) to its
        file, fsynced with its directory. Raises one of :data:`SPOOL_ERRORS`."""
        data = _encoder.encode((SPOOL_VERSION, spec.name, rows, str(self.writer_id), offset))
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / spool_name(seq, spec.name)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        self._fsync_dir()
        return path

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def read(path: Path, spec: TableSpec) -> tuple[list[Row], uuid.UUID | None, int]:
        """``(rows, writer_id, offset)`` of a spool file (``None, 0`` for version 1). Raises
        one of :data:`READ_ERRORS`."""
        data = path.read_bytes()
        try:
            version, table, rows, writer_id, offset = _decoders[spec.name].decode(data)
        except msgspec.ValidationError:
            version, table, rows = _decoders_v1[spec.name].decode(data)
            if version != 1 or table != spec.name:
                raise ValueError(
                    f"spool file for {table!r} version {version}, expected {spec.name!r}"
                ) from None
            return rows, None, 0
        if version != SPOOL_VERSION or table != spec.name:
            raise ValueError(f"spool file for {table!r} version {version}, expected {spec.name!r}")
        return rows, uuid.UUID(writer_id), offset

    def recover(self) -> list[tuple[int, TableSpec, Path]]:
        """The spool files a previous process left, oldest first: ``(seq, table, path)``.
        Incomplete (``.tmp``) files are removed, files of unknown tables left alone."""
        directory = self.directory
        found: list[tuple[int, TableSpec, Path]] = []
        if not directory.is_dir():
            return found
        for tmp in directory.glob(f"*{SPOOL_SUFFIX}.tmp"):
            log.warning("writer: removing incomplete spool file %s", tmp)
            tmp.unlink(missing_ok=True)
        for path in sorted(directory.glob(f"*{SPOOL_SUFFIX}")):
            seq_text, _, table = path.name.removesuffix(SPOOL_SUFFIX).partition("-")
            spec = TABLES.get(table)
            if spec is None or not seq_text.isdigit():
                log.error("writer: ignoring unknown spool file %s", path)
                continue
            found.append((int(seq_text), spec, path))
        return found

    def quarantine(self, path: Path) -> None:
        """Move an unreadable spool file to ``rejected/`` (never delete it)."""
        target = self.directory / "rejected" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)

    def append_rejected(self, table: str, line: bytes) -> None:
        """Append a :func:`rejected_line` to ``rejected/<table>.jsonl``, fsynced."""
        directory = self.directory / "rejected"
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / f"{table}.jsonl").open("ab") as f:
            f.write(line + b"\n")
            f.flush()
            os.fsync(f.fileno())
