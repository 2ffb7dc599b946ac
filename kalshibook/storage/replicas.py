"""Read replicas: PostgreSQL streaming standbys the API reads from, with their lag watched.

kalshibook grows past one machine on PostgreSQL's own streaming replication: the API sends a
request's data reads to one replica (all of them: a response never mixes two servers) and keeps
writes (credits, usage, keys) on the primary. :class:`Replicas` owns one small pool per replica and
a monitor (:meth:`Replicas.monitor`, run by its owner as a task it awaits) that measures each
replica every ``check_interval`` seconds:

- **lag**: how long the primary has had WAL the replica has not replayed. Each check reads the
  primary's WAL position first and keeps it (:class:`WalSamples`); a replica replayed up to
  position R lags by the time since the primary first stood past R (0 when it has replayed
  everything: an idle primary writes nothing). ``kalshibook status`` measures once, without that
  history: there the age of the last replayed transaction stands in;
- **health**: reachable, in recovery, a standby of the primary's own cluster (the same
  ``system_identifier``: a URL that points at a standby of another cluster, say a staging one,
  would otherwise serve its data as ours), and at most ``max_lag_seconds`` behind. An unhealthy
  replica gets no reads until a later check finds it healthy again.

:meth:`Replicas.choose` picks a healthy replica (in turn); with none, the caller falls back to the
primary, or answers 503 when ``fallback = "unavailable"`` (settings: :class:`ReplicaSettings`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from kalshibook.settings import ReplicaSettings
from kalshibook.storage.pool import Pool
from kalshibook.storage.urls import redact, scrub

__all__ = (
    "PRIMARY_LSN",
    "REPLICA_POSITION",
    "ReplicaState",
    "Replicas",
    "apply_position",
    "lag_seconds",
    "measure",
)

log = logging.getLogger(__name__)

PRIMARY_LSN: Final = """
SELECT pg_current_wal_lsn()::text, (SELECT system_identifier FROM pg_control_system())::text
"""
REPLICA_POSITION: Final = """
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,
       pg_wal_lsn_diff(%(primary)s::pg_lsn, pg_last_wal_replay_lsn())::float8,
       (SELECT system_identifier FROM pg_control_system())::text
"""
"""``%(primary)s``: the primary's WAL position read just before (bytes behind = the difference).
The last column, like :data:`PRIMARY_LSN`'s, is the cluster's identity (``pg_control_system()``,
executable by every role): a streaming standby has its primary's."""
CHECK_TIMEOUT: Final = 2.0
WAL_SAMPLES: Final = 4096
"""The primary's WAL positions kept for the lag (one per replica check: over an hour at the
default interval with one replica)."""


def lag_seconds(
    behind_bytes: float | None, replay_age: float | None, missing_for: float | None = None
) -> float | None:
    """The replica's lag: 0 when it has replayed everything the primary wrote; else how long the
    primary has had WAL the replica lacks (``missing_for``, from :class:`WalSamples`), or without
    that history the age of its last replayed transaction (None: unknown). The replay age alone
    overstates the lag while the primary commits nothing (a long bulk load: WAL flows and is
    replayed, but the last replayed commit grows old)."""
    if behind_bytes is not None and behind_bytes <= 0:
        return 0.0
    if missing_for is not None:
        return max(0.0, missing_for)
    return None if replay_age is None else max(0.0, replay_age)


def lsn_int(text: str) -> int:
    """A PostgreSQL LSN (``16/B374D848``) as an integer."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


class WalSamples:
    """The primary's WAL position over the last checks: ``(time.monotonic(), lsn)``, at most
    ``size`` of them (bounded)."""

    def __init__(self, size: int) -> None:
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=size)

    def add(self, at: float, lsn: int) -> None:
        self._samples.append((at, lsn))

    def missing_for(self, replay_lsn: int, now: float) -> float | None:
        """Seconds since the primary first had WAL past ``replay_lsn`` (the oldest data the
        replica lacks): the time of the first sample beyond it, when an earlier sample was not.
        None when that moment is not known: no sample beyond it, or every kept sample beyond it
        (the replica was behind before the oldest one: just after the API started, or behind
        by longer than the samples reach), where the caller must not take the oldest sample's
        age for the lag (it is only a lower bound)."""
        before = False
        for at, lsn in self._samples:
            if lsn > replay_lsn:
                return now - at if before else None
            before = True
        return None


@dataclass
class ReplicaState:
    """What the last check found (shown by ``/v1/status`` and ``kalshibook status``)."""

    name: str
    """The replica's URL without its password."""
    healthy: bool = False
    lag_seconds: float | None = None
    behind_bytes: float | None = None
    error: str | None = None
    checked_at: float | None = None
    """time.monotonic() of the last check."""


def apply_position(
    state: ReplicaState,
    row: Any,
    max_lag: float,
    primary_system: str | None,
    wal: WalSamples | None = None,
) -> None:
    """Set ``state`` from a :data:`REPLICA_POSITION` row (``primary_system``: the primary's
    system identifier, None when the primary did not answer; ``wal``: the primary's recent WAL
    positions, for the lag; without them the replay age stands in)."""
    in_recovery, replay, age, behind, system = row
    state.behind_bytes = behind
    missing = None
    if wal is not None and replay is not None:
        missing = wal.missing_for(lsn_int(str(replay)), time.monotonic())
    state.lag_seconds = lag_seconds(behind, age, missing)
    if not in_recovery:
        state.healthy, state.error = False, "not a replica (not in recovery)"
    elif primary_system is None:
        state.healthy = False
        state.error = "not verified: the primary did not answer (its system identifier unknown)"
    elif str(system) != primary_system:
        state.healthy, state.behind_bytes, state.lag_seconds = False, None, None
        state.error = (
            f"a standby of another cluster (system identifier {system}; "
            f"the primary's is {primary_system})"
        )
    elif state.lag_seconds is None or state.lag_seconds > max_lag:
        state.healthy, state.error = False, "lagging"
    else:
        state.healthy, state.error = True, None


def measure(primary_url: str, settings: ReplicaSettings, *, timeout: int = 3) -> list[ReplicaState]:
    """Every configured replica measured once against the primary (``kalshibook status``)."""
    states = []
    primary_lsn = primary_system = None
    try:
        with psycopg.connect(primary_url, connect_timeout=timeout) as conn:
            row = conn.execute(PRIMARY_LSN).fetchone()
        if row is not None:
            primary_lsn, primary_system = str(row[0]), str(row[1])
    except psycopg.Error:
        pass
    for url in settings.url_list():
        state = ReplicaState(redact(url), checked_at=time.monotonic())
        try:
            with psycopg.connect(url, connect_timeout=timeout) as conn:
                position = conn.execute(REPLICA_POSITION, {"primary": primary_lsn}).fetchone()
            apply_position(state, position, settings.max_lag_seconds, primary_system)
        except psycopg.Error as exc:
            state.error = f"unreachable: {_first_line(exc)}"
        states.append(state)
    return states


class Replicas:
    """The API's replicas: pools, health and lag (a primary pool is needed to measure lag).

    The checks use their own connections (one per replica, one to the primary), never the
    request pools: a replica whose pool is busy serving requests is not down, and a check never
    waits behind requests. Each replica is watched by its own loop (:meth:`monitor`); a check
    without an answer within ``CHECK_TIMEOUT`` is abandoned (psycopg then tries for up to 5 s to
    cancel its query on that server): a replica that stops answering (a hung server, a network
    partition) holds up only its own loop, and :meth:`choose` takes no replica whose last answer
    is older than :attr:`stale_after`. A check connection is kept between checks, except after
    the replica's pool has failed to connect: then the check connects anew, so that a server
    that answers old sessions but refuses new ones is not taken for healthy. The owner cancels
    the monitor at shutdown."""

    def __init__(self, settings: ReplicaSettings, make_pool: Callable[[str, str], Pool]) -> None:
        self.settings = settings
        self.urls = settings.url_list()
        self.pools: list[Pool] = [
            make_pool(url, f"kalshibook-api-replica-{i}") for i, url in enumerate(self.urls)
        ]
        self.states = [ReplicaState(redact(url)) for url in self.urls]
        self._turn = itertools.count()
        self._checks: list[psycopg.AsyncConnection[Any] | None] = [None] * len(self.urls)
        self._pool_errors = [0] * len(self.urls)
        """Each pool's failed connection attempts as of its last check (psycopg_pool's count)."""
        self._primary: psycopg.AsyncConnection[Any] | None = None
        self._primary_lock = asyncio.Lock()
        self._wal = WalSamples(WAL_SAMPLES)
        self._primary_system: str | None = None
        """The primary's system identifier, once read (it never changes under a running API)."""
        self.stale_after = 2 * settings.check_interval + 2 * CHECK_TIMEOUT
        """Seconds after which a replica's last check no longer vouches for it."""

    def __bool__(self) -> bool:
        return bool(self.pools)

    async def open(self) -> None:
        """Open the pools without waiting: a replica that is down is only unhealthy."""
        for pool in self.pools:
            await pool.open(wait=False)

    async def close(self) -> None:
        for i in range(len(self._checks)):
            await self._drop_check_connection(i)
        if self._primary is not None:
            await self._primary.close()
            self._primary = None
        for pool in self.pools:
            await pool.close()

    def _fresh(self, state: ReplicaState) -> bool:
        at = state.checked_at
        return at is not None and time.monotonic() - at <= self.stale_after

    def choose(self, avoid: Pool | None = None) -> Pool | None:
        """A healthy replica's pool other than ``avoid``, in turn; None when there is none."""
        healthy = [
            p
            for p, s in zip(self.pools, self.states, strict=True)
            if s.healthy and self._fresh(s) and p is not avoid
        ]
        if not healthy:
            return None
        return healthy[next(self._turn) % len(healthy)]

    def mark_failed(self, pool: Pool, error: BaseException) -> None:
        """A read failed on ``pool``'s server: no more reads there until the next good check."""
        for p, state in zip(self.pools, self.states, strict=True):
            if p is pool:
                state.healthy = False
                state.error = type(error).__name__

    async def _primary_lsn(self, primary: Pool) -> str | None:
        """The primary's WAL position on the checks' own connection, shared by the replicas'
        loops (None: not known now; the lag then falls back to the replay age); its system
        identifier is kept from the same answer. Waiting for that connection and the query are
        each bounded by ``CHECK_TIMEOUT``."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await self._primary_lock.acquire()
        except TimeoutError:
            return None
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                if self._primary is None or self._primary.closed:
                    self._primary = await _connect_like(primary, "kalshibook-api-replica-check")
                row = await (await self._primary.execute(PRIMARY_LSN)).fetchone()
        except (psycopg.Error, OSError, TimeoutError):
            conn, self._primary = self._primary, None
            if conn is not None:
                await conn.close()
            return None
        finally:
            self._primary_lock.release()
        if row is None:
            return None
        self._primary_system = str(row[1])
        self._wal.add(time.monotonic(), lsn_int(str(row[0])))
        return str(row[0])

    async def check(self, primary: Pool) -> None:
        """Measure every replica once (each check bounded by ``CHECK_TIMEOUT``)."""
        await asyncio.gather(*(self._check_one(i, primary) for i in range(len(self.urls))))

    async def _drop_check_connection(self, i: int) -> None:
        conn, self._checks[i] = self._checks[i], None
        if conn is not None:
            await conn.close()

    async def _check_one(self, i: int, primary: Pool) -> None:
        state = self.states[i]
        primary_lsn = await self._primary_lsn(primary)
        errors = self.pools[i].get_stats().get("connections_errors", 0)
        if errors > self._pool_errors[i]:
            # the pool failed to connect since the last check: this check connects anew, as the
            # pool must (a server that keeps old sessions but refuses new ones, e.g. after a
            # pg_hba.conf or password change, is unusable for the pool: every request would wait
            # REPLICA_WAIT for it)
            await self._drop_check_connection(i)
        self._pool_errors[i] = errors
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                conn = self._checks[i]
                if conn is None or conn.closed:
                    conn = self._checks[i] = await _connect_like(
                        self.pools[i], f"kalshibook-api-replica-{i}-check"
                    )
                cur = await conn.execute(REPLICA_POSITION, {"primary": primary_lsn})
                row = await cur.fetchone()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._drop_check_connection(i)
            reason = (
                f"no answer within {CHECK_TIMEOUT:g} s"
                if isinstance(exc, TimeoutError)
                else _first_line(exc)
            )
            if state.healthy or state.error is None:
                log.warning("replica %s unavailable: %s", state.name, reason)
            state.healthy, state.error = False, f"unreachable: {reason}"
            state.lag_seconds = state.behind_bytes = None
            state.checked_at = time.monotonic()
            return
        assert row is not None
        was = state.error
        apply_position(state, row, self.settings.max_lag_seconds, self._primary_system, self._wal)
        if state.error != was and state.error is not None and not state.error.startswith("lag"):
            log.warning("replica %s not used: %s", state.name, state.error)
        state.checked_at = time.monotonic()

    async def _watch(self, i: int, primary: Pool, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._check_one(i, primary)
            except Exception:  # a defect: logged, the replica unusable, the other loops go on
                log.exception("replica %s: lag check failed", self.states[i].name)
                self.states[i].healthy, self.states[i].error = False, "lag check failed"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.check_interval)

    async def monitor(self, primary: Pool, stop: asyncio.Event) -> None:
        """Check every replica every ``check_interval`` seconds, each in its own loop, until
        ``stop`` is set."""
        async with asyncio.TaskGroup() as group:
            for i in range(len(self.urls)):
                group.create_task(self._watch(i, primary, stop), name=f"replica-check-{i}")

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "healthy": s.healthy and self._fresh(s),
                "lag_seconds": s.lag_seconds,
                "behind_bytes": s.behind_bytes,
                "error": s.error
                if self._fresh(s) or s.checked_at is None
                else f"no answer to the lag check for {time.monotonic() - s.checked_at:.0f} s",
            }
            for s in self.states
        ]


async def _connect_like(pool: Pool, application_name: str) -> psycopg.AsyncConnection[Any]:
    """A connection of its own to ``pool``'s server, with the pool's settings."""
    conninfo, given = pool.conninfo, pool.kwargs
    if not isinstance(conninfo, str) or not isinstance(given, dict):  # the API's pools: plain
        raise TypeError("a replica check needs a pool made with a URL and keyword arguments")
    kwargs = {**given, "autocommit": True, "application_name": application_name}
    return await psycopg.AsyncConnection.connect(conninfo, **kwargs)


def _first_line(exc: BaseException) -> str:
    """Why a connection or check failed, in one line without a password (libpq's message)."""
    text = str(exc).strip()
    return scrub(text.splitlines()[0]) if text else type(exc).__name__
