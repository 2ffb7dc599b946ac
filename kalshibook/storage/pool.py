"""The psycopg connection pool: created closed, opened explicitly by its owner.

``make_pool`` never opens the pool (an async pool must not open in its constructor); the owner
calls ``await pool.open(wait=True)`` and closes it. Every connection handed out is checked first
(:func:`check_connection`), so connections broken by a database restart or a terminated backend
are replaced instead of failing the next query. ``open_pool`` does both for a block and never
closes a pool it was given.
"""

from __future__ import annotations

import select
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from kalshibook.settings import Settings
from kalshibook.storage.urls import unreachable

__all__ = (
    "RECONNECT_TIMEOUT",
    "Pool",
    "check_connection",
    "connect_kwargs",
    "make_pool",
    "open_pool",
)

Pool: TypeAlias = AsyncConnectionPool[AsyncConnection[Any]]

CONNECT_TIMEOUT = 5
"""Seconds libpq waits for a TCP/auth handshake before giving up."""
RECONNECT_TIMEOUT = 5.0
"""Seconds one chain of reconnection attempts lasts. psycopg_pool doubles the wait between the
attempts of a chain (1, 2, 4, 8 ... s) until this runs out, so with its default (5 min) a pool
whose database was away for a minute tried again only half a minute or more after it was back.
Short chains end while the waits are still short; a connection asked for afterwards starts a new
chain at once, so a pool notices a database that came back within seconds."""
KEEPALIVES: dict[str, Any] = {
    # Notice a dead peer (cut network, crashed host) in ~25 s instead of the kernel's hours.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


async def check_connection(conn: AsyncConnection[Any]) -> None:
    """The pool's check of a connection before handing it out; raises if it is unusable.

    An idle connection has nothing to read: a server that shut down, restarted or terminated the
    backend has sent its last message or closed the socket, which makes the socket readable. Only
    then (or when the connection is not idle) does this make the round trip of
    ``AsyncConnectionPool.check_connection``, an empty query; a quiet socket costs a ``poll``
    instead of a round trip (~0.2 ms of every API request). A peer gone without a word (a cut
    network) is not seen by either until the keepalives (:data:`KEEPALIVES`) or the query's own
    failure."""
    if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
        try:
            quiet = _quiet(conn.pgconn.socket)
        except (OSError, ValueError):  # no answer about the socket: the round trip decides
            quiet = False
        if quiet:
            return
    await AsyncConnectionPool.check_connection(conn)


def _quiet(fd: int) -> bool:
    """True when nothing is waiting to be read on ``fd`` (``poll``, not ``select``, which fails
    on descriptors above 1023)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return not poller.poll(0)


def connect_kwargs(name: str) -> dict[str, Any]:
    """libpq options of every kalshibook connection (``application_name`` = ``name``)."""
    return {"application_name": name, "connect_timeout": CONNECT_TIMEOUT, **KEEPALIVES}


def make_pool(
    settings: Settings,
    *,
    min_size: int,
    max_size: int,
    name: str = "kalshibook",
    timeout: float = 30.0,
    autocommit: bool = False,
    options: str | None = None,
    reconnect_timeout: float = RECONNECT_TIMEOUT,
    url: str | None = None,
    configure: Callable[[AsyncConnection[Any]], Awaitable[None]] | None = None,
) -> Pool:
    """A closed pool on ``settings``' database (``KALSHIBOOK_DATABASE_URL``, or ``url``: a read
    replica's): the one pool
    constructor of the code base (the collector and the API call it with their options).

    ``timeout`` is the default wait for a connection from :meth:`AsyncConnectionPool.connection`;
    ``autocommit`` and ``options`` (server settings, ``-c name=value ...``) apply to every
    connection; ``reconnect_timeout`` is how long one chain of attempts to replace a connection
    lasts (:data:`RECONNECT_TIMEOUT`); ``configure`` runs on each new connection before the pool
    hands it out (psycopg_pool's, in the pool's own task: it must leave the connection idle).
    """
    kwargs = connect_kwargs(name)
    if autocommit:
        kwargs["autocommit"] = True
    if options:
        kwargs["options"] = options
    return AsyncConnectionPool(
        url or settings.require_database(),
        connection_class=AsyncConnection,
        kwargs=kwargs,
        min_size=min_size,
        max_size=max_size,
        open=False,
        check=check_connection,
        name=name,
        timeout=timeout,
        reconnect_timeout=reconnect_timeout,
        configure=configure,
    )


@asynccontextmanager
async def open_pool(
    settings: Settings,
    *,
    pool: Pool | None = None,
    min_size: int = 1,
    max_size: int = 4,
    name: str = "kalshibook",
    open_timeout: float = 30.0,
) -> AsyncIterator[Pool]:
    """Yield ``pool`` untouched if given (its owner closes it), else a new opened pool that is
    closed on exit. Raises :class:`DatabaseUnavailable` when no connection can be made."""
    if pool is not None:
        yield pool
        return
    own = make_pool(settings, min_size=min_size, max_size=max_size, name=name)
    try:
        await own.open(wait=True, timeout=open_timeout)
    except (psycopg.OperationalError, TimeoutError) as exc:
        await own.close()
        raise unreachable(settings.require_database(), exc) from None
    try:
        yield own
    finally:
        await own.close()
