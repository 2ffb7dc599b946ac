"""Refreshing the candle aggregates for an operator, and saying what to run when it failed.

TimescaleDB lets only the owner of a continuous aggregate (a member of the owning role, or a
superuser) refresh it: ``refresh_continuous_aggregate`` fails with ``must be owner of view …``
for anyone else, whatever their grants. The collector's login (``kalshibook service-user create
collector``) can write every table the aggregates read, but not refresh them; the refresh
policies (run as the owner) fold late rows in only inside their windows (1m: the last 3 hours).
So the backfill and the collector, when they cannot refresh, give the operator the exact
``kalshibook refresh-candles`` command to run with the owner's URL (:func:`refresh_command`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg

from kalshibook.errors import StorageError
from kalshibook.storage.candles import ALL_SOURCES, CandleSource, refresh_candles
from kalshibook.storage.urls import scrub

__all__ = ("RefreshDenied", "minute_window", "refresh", "refresh_command")

AConn = psycopg.AsyncConnection[Any]

WHO: Final = (
    "SELECT current_user, (SELECT pg_get_userbyid(relowner) FROM pg_class "
    "WHERE oid = to_regclass('market.candles_trades_1m'))"
)
"""The login, and the owner of the aggregates (every one has the migrating role's)."""


class RefreshDenied(StorageError):
    """This database login may not refresh the candle aggregates (only their owner may)."""


def minute_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[start, end]`` widened to whole minutes (a command's arguments, easy to read)."""
    lo = start.astimezone(UTC).replace(second=0, microsecond=0)
    hi = end.astimezone(UTC).replace(second=0, microsecond=0)
    if hi < end:
        hi += timedelta(minutes=1)
    return lo, max(hi, lo + timedelta(minutes=1))


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def refresh_command(
    start: datetime, end: datetime, sources: tuple[CandleSource, ...] = ALL_SOURCES
) -> str:
    """The ``kalshibook refresh-candles`` command covering ``[start, end)`` for ``sources`` (what
    was written: a trade backfill's command refreshes the trades aggregates only)."""
    lo, hi = minute_window(start, end)
    command = f"kalshibook refresh-candles --start {_rfc3339(lo)} --end {_rfc3339(hi)}"
    if set(sources) != set(ALL_SOURCES):
        command += f" --source {','.join(s for s in ALL_SOURCES if s in sources)}"
    return command


async def refresh(
    conn: AConn,
    start: datetime,
    end: datetime,
    sources: tuple[CandleSource, ...] = ALL_SOURCES,
    progress: Callable[[str, datetime, datetime, float | None], None] | None = None,
) -> list[str]:
    """:func:`~kalshibook.storage.candles.refresh_candles`; a refusal for lack of privilege is a
    :class:`RefreshDenied` naming the login and the aggregates' owner (``conn`` in autocommit)."""
    try:
        return await refresh_candles(conn, start, end, sources, progress)
    except psycopg.errors.InsufficientPrivilege as exc:
        reason = scrub(str(exc).strip().splitlines()[0]) if str(exc).strip() else "denied"
        row = await (await conn.execute(WHO)).fetchone()
        user, owner = (str(row[0]), row[1]) if row is not None else ("?", None)
        by = f" (the owner is {owner!r})" if owner else ""
        raise RefreshDenied(
            f"login {user!r} may not refresh the candle aggregates: {reason}; only their "
            f"owner may{by}"
        ) from None
