"""The writer's transactions, run in a child process (one per flusher) to get them off the GIL.

Formatting rows for binary ``COPY`` is CPU work in Python (~2 us a row through psycopg) and, in
the collector's single process, it competed with the WebSocket feed for one core: measured at a
third of the daemon's CPU. The writer (:mod:`kalshibook.storage.writer`) keeps everything that
decides *what* is written and *when* (queues, batches, order, retries, spool, commit marks, bad-row
isolation, stats); a :class:`CopyWorker` only runs one transaction at a time for it, in a child
process with its own connection, and returns the number of rows inserted or the error.

Protocol (the child's stdin/stdout; every message is a 4-byte big-endian length + msgpack):

* parent → child, once: ``["hello", conninfo, connect kwargs]``; the child answers ``["ready"]``;
* parent → child, per transaction: ``["write", table, mark]`` then the rows (a msgpack array
  of row arrays, exactly as in spool files);
* child → parent: ``["ok", inserted, skipped]`` (skipped: rows the commit mark shows committed
  before, see :func:`write_rows`) or ``["error", kind, sqlstate, message]`` where ``kind``
  is ``psycopg`` (a database or connection error; ``sqlstate`` when the server sent one),
  ``rows`` (a value psycopg cannot dump: a bad row) or ``internal`` (a bug).

The parent rebuilds the error as the same class of exception (:func:`rebuild`), so the writer
classifies it as before: bad rows are isolated, connection failures retried, bugs fatal. A child
that exits (crash, kill) fails the request as an :class:`OSError`, which is retried on a new
child; the batch's commit mark tells whether its transaction had committed. A child exits at the
end of its stdin, so it never outlives the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Final
from uuid import UUID

import msgspec
import psycopg
from psycopg import pq
from psycopg.adapt import Buffer, Dumper

from kalshibook.errors import StorageError
from kalshibook.gctune import tune_gc
from kalshibook.storage.extents import (
    MAINTAIN_DELTA_EXTENTS,
    WIDEN_DELTA_EXTENTS,
    KnownExtents,
    Widen,
    ended_before,
    row_spans,
    widen_params,
)
from kalshibook.storage.tables import (
    ALL_TABLES,
    DROP_STAGED_TRADE_COPIES,
    MOVE_STORED_TRADE_COPIES,
    TABLES,
    TRADE_COPY_BOUNDS,
    TRADE_COPY_SPREAD,
    TableSpec,
)

__all__ = ("CopyWorker", "WorkerStartError", "committed", "describe", "rebuild", "write_rows")

CLAIM_PROGRESS: Final = """
INSERT INTO private.writer_progress (writer_id, table_name, batch_seq, rows_done)
VALUES (%(writer_id)s, %(table)s, 0, 0)
ON CONFLICT (writer_id, table_name) DO NOTHING
"""
"""Make sure the writer's mark row for the table exists (waits for a transaction still inserting
it, e.g. one whose commit acknowledgement was lost)."""
LOCK_PROGRESS: Final = """
SELECT batch_seq, rows_done FROM private.writer_progress
WHERE writer_id = %(writer_id)s AND table_name = %(table)s
FOR UPDATE
"""
"""The committed mark, locked until this transaction ends: nothing can move it meanwhile."""
SET_PROGRESS: Final = """
UPDATE private.writer_progress SET batch_seq = %(seq)s, rows_done = %(done)s, updated_at = now()
WHERE writer_id = %(writer_id)s AND table_name = %(table)s
"""
"""Move the mark to the end of the rows written, in their transaction."""

_LEN: Final = struct.Struct(">I")
_START_TIMEOUT: Final = 60.0
"""Seconds a new worker may take to import and greet (a cold start on a slow disk)."""
_PIPE_SIZE: Final = 4 << 20
_MAX_MESSAGE: Final = 1 << 30

# -- dumpers ------------------------------------------------------------------------------------


class JsonTextDumper(Dumper):
    """jsonb in binary COPY from JSON text we already have (bytes or str): version byte + text."""

    format = pq.Format.BINARY
    oid = psycopg.postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> Buffer:
        text: bytes = obj.encode() if isinstance(obj, str) else obj
        return b"\x01" + text


_NUMERIC_OID: Final = psycopg.postgres.types["numeric"].oid
_NUMERIC_CACHE_MAX: Final = 1 << 16


class _NumericTexts(dict[str, Buffer]):
    """``decimal text -> binary numeric``, filled on a miss (``__missing__``). Bounded."""

    __slots__ = ("_inner",)

    def __init__(self) -> None:
        super().__init__()
        self._inner = psycopg.adapters.get_dumper_by_oid(_NUMERIC_OID, pq.Format.BINARY)(Decimal)

    def __missing__(self, text: str) -> Buffer:
        if text.__class__ is not str:
            raise TypeError(f"numeric column got {type(text).__name__} {text!r}")
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"invalid numeric {text[:40]!r}") from None
        data = self._inner.dump(value)
        assert data is not None
        if len(self) >= _NUMERIC_CACHE_MAX:
            self.clear()
        self[text] = data
        return data


numeric_texts: Final = _NumericTexts()


class NumericTextDumper(Dumper):
    """Binary ``numeric`` from the decimal text rows carry in the worker (``str(Decimal)``, as
    msgpack transports them), memoised by that text, which keeps the scale (``"0.5600"`` and
    ``"0.56"`` are different keys). ``dump`` is the cache's own lookup, so psycopg's C row
    formatter calls C directly for every known value: no Python frame per numeric (measured:
    the numeric dumper was most of a worker's CPU). Every byte string comes from psycopg's own
    dumper, so what is stored is unchanged."""

    format = pq.Format.BINARY
    oid = _NUMERIC_OID

    def __init__(self, cls: type, context: Any = None) -> None:
        super().__init__(cls, context)
        self.dump = numeric_texts.__getitem__  # type: ignore[method-assign,assignment]

    def dump(self, obj: Any) -> Buffer:  # replaced per instance by the C lookup above
        return numeric_texts[obj]


# -- one transaction ----------------------------------------------------------------------------


def committed(mark: dict[str, Any], batch_seq: int, rows_done: int, n: int) -> int:
    """How many of ``n`` rows (batch ``mark["seq"]``, from row ``mark["start"]`` on) the stored
    mark ``(batch_seq, rows_done)`` says are committed already."""
    seq, start = int(mark["seq"]), int(mark["start"])
    if batch_seq > seq:
        return n
    if batch_seq < seq:
        return 0
    return min(n, max(0, rows_done - start))


def write_rows(
    conn: psycopg.Connection[Any],
    spec: TableSpec,
    rows: Sequence[Sequence[Any]],
    mark: dict[str, Any] | None,
    known: KnownExtents,
) -> tuple[int, int]:
    """One transaction on ``conn``: ``(rows inserted, rows skipped as committed before)``.

    With ``mark`` (``writer_id, table, seq, start, done``: rows ``start..done`` of batch ``seq``)
    the writer's commit mark is read under a row lock first, the rows it already covers (a
    late-acknowledged commit, a replayed spool file, a part of a split batch) are skipped, and
    the mark moves to ``done`` in the same transaction as the rest.

    A table that ``keeps_extents`` (deltas) also widens the markets' delta extents and days to
    the rows, in the same transaction; ``known`` (the worker's) skips the markets whose rows lie
    inside hours seen committed before, and learns the ones written, after the commit. ``conn``
    must have run :data:`MAINTAIN_DELTA_EXTENTS` (the worker's connection does, once), else the
    deltas' trigger marks the extents incomplete."""
    widened: dict[str, Widen] = {}
    done = _transaction(conn, spec, rows, mark, known, widened)
    known.committed(widened)
    return done


def _transaction(
    conn: psycopg.Connection[Any],
    spec: TableSpec,
    rows: Sequence[Sequence[Any]],
    mark: dict[str, Any] | None,
    known: KnownExtents,
    widened: dict[str, Widen],
) -> tuple[int, int]:
    skipped = 0
    with conn.transaction(), conn.cursor() as cur:
        if mark is not None:
            cur.execute(CLAIM_PROGRESS, mark)
            cur.execute(LOCK_PROGRESS, mark)
            stored = cur.fetchone()
            assert stored is not None  # claimed just above
            skipped = committed(mark, stored[0], stored[1], len(rows))
            if skipped == len(rows):
                return 0, skipped
            rows = rows[skipped:]
            cur.execute(SET_PROGRESS, mark)
        if spec.mode == "upsert":
            cur.executemany(spec.write_sql, rows)
            return len(rows), skipped
        if spec.jsonb_columns:
            cur.adapters.register_dumper(None, JsonTextDumper)
        if "numeric" in spec.pg_types:
            cur.adapters.register_dumper(None, NumericTextDumper)
        with cur.copy(spec.write_sql) as copy:
            copy.set_types(spec.pg_types)
            # The formatter is what copy.write_row() calls; it hands back a buffer every ~32 KiB,
            # which copy.write() sends as is (binary format).
            format_row = copy.formatter.write_row
            send = copy.write
            for row in rows:
                data = format_row(row)
                if data:
                    send(data)
        if spec.keeps_extents:  # after the COPY, which has checked every row
            ended = ended_before(datetime.now(UTC))
            widened.update(known.uncovered(row_spans(rows), ended))
            if widened:
                cur.execute(WIDEN_DELTA_EXTENTS, widen_params(widened, ended))
        if spec.merge_sql is None:
            return len(rows), skipped
        if spec.copies_at_other_times:
            _reconcile_trade_copies(cur)
        cur.execute(spec.merge_sql)
        if cur.description is None:
            return cur.rowcount, skipped
        inserted = cur.fetchone()  # a merge that reports how many rows it inserted
        return (int(inserted[0]) if inserted else 0), skipped


def _reconcile_trade_copies(cur: psycopg.Cursor[Any]) -> None:
    """Staged trades with a copy stored at another time (see TRADE_COPY_BOUNDS): the stored copy
    moves to a staged REST copy's time; a staged whole-second WS copy is dropped, once the
    stored copy has what it knew (taker sides, the block flag) and the stored one lacked. Each
    statement runs only when the stage has such rows, bounded by their markets and times."""
    cur.execute(TRADE_COPY_BOUNDS)
    bounds = cur.fetchone()
    assert bounds is not None  # an aggregate: one row
    spread = TRADE_COPY_SPREAD
    for statement, (lo, hi, markets) in (
        (MOVE_STORED_TRADE_COPIES, bounds[0:3]),
        (DROP_STAGED_TRADE_COPIES, bounds[3:6]),
    ):
        if lo is not None:
            params = {"lo": lo - spread, "hi": hi + spread, "markets": markets, "spread": spread}
            cur.execute(statement, params)


# -- the child ----------------------------------------------------------------------------------

_WIRE_TYPES: Final[dict[str, Any]] = {
    "timestamptz": datetime,
    "text": str,
    "numeric": str,  # the exact decimal text: memoised by NumericTextDumper, scale kept
    "int8": int,
    "int4": int,
    "bool": bool,
    "uuid": UUID,
}


def _row_decoder(spec: TableSpec) -> msgspec.msgpack.Decoder[Any]:
    """Rows as the worker needs them. COPY tables: plain tuples of wire values (numerics as
    text); upserts (parameters of a statement, not a COPY): the table's row type."""
    if spec.mode == "upsert":
        return msgspec.msgpack.Decoder(list[spec.row_type], strict=False)  # type: ignore[name-defined]
    fields = tuple(_WIRE_TYPES.get(t, Any) | None for t in spec.pg_types)
    return msgspec.msgpack.Decoder(list[tuple[fields]], strict=False)  # type: ignore[valid-type]


_row_decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {
    spec.name: _row_decoder(spec) for spec in ALL_TABLES
}


def _read(stream: IO[bytes]) -> bytes | None:
    head = stream.read(4)
    if len(head) < 4:
        return None
    (n,) = _LEN.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        return None
    return data


def _write(stream: IO[bytes], payload: Any) -> None:
    data = msgspec.msgpack.encode(payload)
    stream.write(_LEN.pack(len(data)) + data)
    stream.flush()


class _Child:
    def __init__(self, conninfo: str, kwargs: dict[str, Any]) -> None:
        self.conninfo = conninfo
        self.kwargs = kwargs
        self.conn: psycopg.Connection[Any] | None = None
        self.staged: set[str] = set()
        self.known = KnownExtents()

    def connection(self) -> psycopg.Connection[Any]:
        conn = self.conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
            self.conn = conn = psycopg.connect(self.conninfo, **self.kwargs)
            self.staged.clear()
            # a new connection may reach another server (a failover that lost commits, a
            # restore): relearn the extents there
            self.known = KnownExtents()
            with conn.transaction():  # this connection keeps the delta extents (write_rows)
                conn.execute(MAINTAIN_DELTA_EXTENTS)
        return conn

    def write(self, table: str, mark: dict[str, Any] | None, body: bytes) -> list[Any]:
        spec = TABLES.get(table)
        if spec is None:
            return ["error", "internal", None, f"unknown table {table!r}"]
        try:
            rows = _row_decoders[table].decode(body)
            conn = self.connection()
            if spec.stage_sql is not None and table not in self.staged:
                with conn.transaction():
                    conn.execute(spec.stage_sql)
                self.staged.add(table)
            return ["ok", *write_rows(conn, spec, rows, mark, self.known)]
        except psycopg.Error as exc:
            if exc.sqlstate is None and isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
                # raised by psycopg itself (e.g. a NUL in a text parameter): the row is at fault,
                # not the connection, so it must be isolated, not retried
                return ["error", "rows", None, describe(exc)]
            return ["error", "psycopg", exc.sqlstate, describe(exc, type_name=False)]
        except (TypeError, ValueError, OverflowError, msgspec.DecodeError) as exc:
            return ["error", "rows", None, describe(exc)]
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails
            return ["error", "internal", None, describe(exc)]


def describe(exc: BaseException, *, type_name: bool = True) -> str:
    """``exc`` on one line for logs and error replies: ``Type: first line of the message``
    (``Type`` alone when it has none); ``type_name=False``: the first line only (for the psycopg
    errors :func:`rebuild` turns back into the same class, whose name the parent adds)."""
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text[0]}" if type_name else text[0]


def child_main() -> int:
    """``python -m kalshibook.storage.copyworker``: serve the parent until stdin ends.

    Signals meant for the collector (Ctrl-C reaches the whole process group, systemd signals the
    whole cgroup) are ignored: the worker finishes the transaction in hand and ends when the
    collector closes the pipe (or exits). Anything else that writes to stdout (a library, C code)
    is sent to stderr instead, so it cannot corrupt the protocol."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tune_gc()
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    hello = _read(stdin)
    if hello is None:
        return 0
    kind, conninfo, kwargs = msgspec.msgpack.decode(hello)
    if kind != "hello":
        return 2
    child = _Child(conninfo, kwargs)
    _write(stdout, ["ready"])
    try:
        while True:
            header = _read(stdin)
            body = _read(stdin) if header is not None else None
            if header is None or body is None:
                return 0
            _op, table, mark = msgspec.msgpack.decode(header)
            _write(stdout, child.write(table, mark, body))
    except BrokenPipeError:
        return 0
    finally:
        if child.conn is not None:
            with contextlib.suppress(psycopg.Error):
                child.conn.close()


# -- the parent's handle ------------------------------------------------------------------------


class WorkerStartError(StorageError):
    """A COPY worker process could not start (broken installation): not retried, the writer
    fails and the collector exits with this message."""


def rebuild(kind: str, sqlstate: str | None, message: str) -> Exception:
    """The child's error as an exception of the class the writer classifies."""
    if kind == "psycopg":
        cls: type[psycopg.Error] = psycopg.OperationalError
        if sqlstate:
            with contextlib.suppress(KeyError):
                cls = psycopg.errors.lookup(sqlstate)
        return cls(message)
    if kind == "rows":
        return ValueError(message)
    return RuntimeError(f"COPY worker: {message}")


async def _kill(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    return await proc.wait()


def _grow_pipe(stream: asyncio.StreamWriter) -> None:
    """Make the pipe to the child hold a whole batch (Linux: up to ``fs.pipe-max-size``).

    With the default 64 KiB, sending a 1.5 MB batch takes ~25 turns of an event loop that is
    busy with the feed (each turn ~10 ms at full rate): the pipe, not the database, became the
    limit. Best effort: other systems keep their default."""
    pipe = stream.transport.get_extra_info("pipe")
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is None or setsize is None:
        return
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        limit = 1 << 20
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), setsize, min(limit, _PIPE_SIZE))


class CopyWorker:
    """One child process running the writer's transactions, one at a time (not shared)."""

    def __init__(self, conninfo: str, kwargs: dict[str, Any], name: str) -> None:
        self._hello = msgspec.msgpack.encode(["hello", conninfo, kwargs])
        self._name = name
        self._proc: asyncio.subprocess.Process | None = None
        self._busy = False
        self.spawned = 0

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def _spawn(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kalshibook.storage.copyworker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.spawned += 1
        _grow_pipe(proc.stdin)
        try:
            proc.stdin.write(_LEN.pack(len(self._hello)) + self._hello)
            await proc.stdin.drain()
            async with asyncio.timeout(_START_TIMEOUT):
                (n,) = _LEN.unpack(await proc.stdout.readexactly(4))
                ready = msgspec.msgpack.decode(await proc.stdout.readexactly(n))
            if ready != ["ready"]:
                raise ValueError(f"unexpected greeting {ready!r}")
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            code = await _kill(proc)
            raise WorkerStartError(
                f"the COPY worker process {self._name} could not start (exit code {code}; its "
                f"error output is above): {type(exc).__name__}"
            ) from exc
        except BaseException:
            await _kill(proc)  # cancelled while starting: never leave it behind
            raise
        self._proc = proc
        return proc

    async def write(self, table: str, mark: dict[str, Any] | None, body: bytes) -> tuple[int, int]:
        """Run one transaction: ``(rows inserted, rows skipped as committed before)``. Errors as
        :func:`rebuild` makes them; :class:`OSError` when the child is gone or breaks the
        protocol (a new one is started by the next call)."""
        if self._busy:
            raise RuntimeError("a CopyWorker runs one transaction at a time")
        self._busy = True
        proc = self._proc
        try:
            if proc is None or proc.returncode is not None:
                proc = await self._spawn()
            assert proc.stdin is not None
            assert proc.stdout is not None
            header = msgspec.msgpack.encode(["write", table, mark])
            proc.stdin.write(_LEN.pack(len(header)) + header + _LEN.pack(len(body)))
            proc.stdin.write(body)
            await proc.stdin.drain()
            (n,) = _LEN.unpack(await proc.stdout.readexactly(4))
            if n > _MAX_MESSAGE:
                raise ValueError(f"a {n}-byte message")
            reply = msgspec.msgpack.decode(await proc.stdout.readexactly(n))
            if not isinstance(reply, list) or not reply or reply[0] not in ("ok", "error"):
                raise ValueError(f"an unexpected reply {reply!r:.80}")
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            code = await self._reap()
            raise OSError(f"the COPY worker process {self._name} exited (code {code})") from exc
        except ValueError as exc:  # incl. msgspec.DecodeError: the worker broke the protocol
            await self._reap()
            raise OSError(f"the COPY worker process {self._name} sent {exc}") from exc
        except BaseException:
            # Cancelled (or worse) mid-request: its reply would be read as the next one's.
            await self._reap()
            raise
        finally:
            self._busy = False
        if reply[0] == "ok":
            return int(reply[1]), int(reply[2])
        _, kind, sqlstate, message = reply
        raise rebuild(kind, sqlstate, message)

    async def _reap(self) -> int | None:
        proc, self._proc = self._proc, None
        return None if proc is None else await _kill(proc)

    async def close(self, grace: float = 5.0) -> None:
        """End the child: end of input (it finishes a transaction in progress), then kill."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(ConnectionError, OSError):
                proc.stdin.close()
        try:
            async with asyncio.timeout(grace):
                await proc.wait()
        except TimeoutError:
            await _kill(proc)


if __name__ == "__main__":
    sys.exit(child_main())
