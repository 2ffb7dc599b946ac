"""The pool's check of a connection before handing it out (storage.pool.check_connection): a
connection whose backend is gone is replaced; a quiet idle one is handed out without a round
trip."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
from pathlib import Path

import psycopg
import pytest
from psycopg.pq import Trace

from kalshibook.settings import Settings
from kalshibook.storage.pool import _quiet, make_pool

PID = "SELECT pg_backend_pid()"


async def _pid(conn: psycopg.AsyncConnection) -> int:  # type: ignore[type-arg]
    cur = await conn.execute(PID)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_connection_whose_backend_was_terminated_is_replaced(
    settings: Settings, db_url: str
) -> None:
    pool = make_pool(settings, min_size=1, max_size=1, autocommit=True)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            first = await _pid(conn)
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            for _ in range(100):  # until the backend has exited (its goodbye is on the socket)
                gone = admin.execute(
                    "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", (first,)
                ).fetchone()
                if gone and gone[0]:
                    break
                await asyncio.sleep(0.05)
        async with pool.connection(timeout=10) as conn:
            second = await _pid(conn)
    finally:
        await pool.close()
    assert second != first


async def test_a_quiet_idle_connection_is_handed_out_without_a_round_trip(
    settings: Settings, tmp_path: Path
) -> None:
    pool = make_pool(settings, min_size=1, max_size=1, autocommit=True)
    await pool.open(wait=True)
    trace = tmp_path / "libpq.trace"
    try:
        async with pool.connection() as conn:
            pid = await _pid(conn)
        with trace.open("w") as f:
            conn.pgconn.trace(f.fileno())
            conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
            async with pool.connection() as again:
                assert again is conn
            conn.pgconn.untrace()
        async with pool.connection() as conn:
            assert await _pid(conn) == pid  # and it works
    finally:
        await pool.close()
    sent = trace.read_text()
    # nothing sent at all (AsyncConnectionPool.check_connection sends an empty Query)
    assert "F\t" not in sent, sent


def test_the_quiet_check_works_on_descriptors_above_1023() -> None:
    """``select`` fails on a descriptor number >= 1024 (FD_SETSIZE); a busy API server can have
    its pool's sockets there."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1600:
        pytest.skip(f"open-file limit {soft} is too low to place a socket at descriptor 1500")
    a, b = socket.socketpair()
    high = os.dup2(a.fileno(), 1500)
    try:
        assert _quiet(high)
        b.sendall(b"x")
        assert not _quiet(high)
    finally:
        os.close(high)
        a.close()
        b.close()
