"""Read replicas (issue #15): a real streaming replica (``pg_basebackup -R``) of a private primary.

The API reads trades, candles and books from the replica and charges credits on the primary; a
replica whose replay is paused falls behind, is skipped once its lag passes the setting (the
primary serves, and the data the replica lacks appears), a stopped replica is skipped, lag shows
in ``/v1/status``, and with ``fallback = unavailable`` a request without a usable replica is a 503.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import replica_harness as harness
from litestar.testing import AsyncTestClient

from kalshibook.api.app import create_app
from kalshibook.api.deps import services_of
from kalshibook.settings import ApiSettings, CoreSettings, ReplicaSettings, Settings
from kalshibook.storage import migrate, replicas
from kalshibook.storage.api_keys import create_key

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.slow]

TICKER = "KXREPL-26DEC02-T1"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
SEED = (
    "INSERT INTO market.series (ticker, raw) VALUES ('KXREPL', '{}')",
    "INSERT INTO market.events (event_ticker, series_ticker, raw) "
    "VALUES ('KXREPL-26DEC02', 'KXREPL', '{}')",
    "INSERT INTO market.markets (ticker, event_ticker, series_ticker, status, raw) "
    "VALUES (%(t)s, 'KXREPL-26DEC02', 'KXREPL', 'active', '{}')",
    "INSERT INTO market.orderbook_snapshots (ts, market_ticker, received_at, source, epoch, sid, "
    "seq, yes_bids, no_bids) VALUES (%(t0)s, %(t)s, %(t0)s, 'snapshot', 1, 1, 1, "
    '\'[["0.4000", "10.00"]]\', \'[["0.5500", "5.00"]]\')',
)
INSERT_TRADE = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
VALUES (%s, %s, %s, 0.42, 0.58, 3, 'ws', now())
"""


@pytest.fixture
def clusters() -> Iterator[tuple[harness.Cluster, harness.Cluster]]:
    tag = f"r{uuid.uuid4().hex[:8]}"
    primary = harness.start_primary(tag)
    replica: harness.Cluster | None = None
    try:
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE kalshibook")
        migrate.upgrade(primary.url("kalshibook"))
        with psycopg.connect(primary.url("kalshibook"), autocommit=True) as conn:
            for statement in SEED:
                params = {"t": TICKER, "t0": T0}
                conn.execute(statement, params if "%(" in statement else None)
            for i in range(5):
                conn.execute(INSERT_TRADE, (T0 + timedelta(minutes=i), uuid.uuid4(), TICKER))
        replica = harness.start_replica(primary, tag)
        yield primary, replica
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()
        harness.remove(tag)


@pytest.fixture
async def api(
    clusters: tuple[harness.Cluster, harness.Cluster], request: pytest.FixtureRequest
) -> AsyncIterator[tuple[AsyncTestClient[Any], str]]:
    primary, replica = clusters
    fallback = getattr(request, "param", "primary")
    key = create_key(primary.url("kalshibook"), name="replica test", credits=1000).key
    settings = Settings(
        core=CoreSettings(database_url=primary.url("kalshibook")),
        api=ApiSettings(rate_limit_per_second=1e6),
        replica=ReplicaSettings(
            urls=replica.url("kalshibook"),
            max_lag_seconds=2.0,
            check_interval=0.2,
            fallback=fallback,
        ),
    )
    async with AsyncTestClient(app=create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, primary.url("kalshibook")


async def replica_status(client: AsyncTestClient[Any]) -> dict[str, Any]:
    r = await client.get("/v1/status")
    assert r.status_code == 200, r.text
    [state] = r.json()["data"]["replicas"]
    return dict(state)


async def until(predicate: Any, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.2)


async def trade_count(client: AsyncTestClient[Any]) -> int:
    r = await client.get(f"/v1/markets/{TICKER}/trades", params={"limit": 100})
    assert r.status_code == 200, r.text
    return len(r.json()["data"])


async def test_reads_from_the_replica_writes_on_the_primary(
    api: tuple[AsyncTestClient[Any], str],
    clusters: tuple[harness.Cluster, harness.Cluster],
    db_url: str,
) -> None:
    client, primary_url = api
    _, replica = clusters

    async def healthy() -> bool:
        return bool((await replica_status(client))["healthy"])

    await until(healthy)
    state = await replica_status(client)
    assert state["lag_seconds"] is not None
    assert state["lag_seconds"] <= 2.0

    await _a_standby_of_another_cluster_is_refused(db_url, replica)

    # Pause replay: a trade committed on the primary now is missing on the replica, and the API
    # does not show it while the replica is within its lag allowance.
    with psycopg.connect(replica.url("kalshibook"), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    with psycopg.connect(primary_url, autocommit=True) as conn:
        conn.execute(INSERT_TRADE, (T0 + timedelta(minutes=30), uuid.uuid4(), TICKER))
    assert await trade_count(client) == 5  # served by the replica
    r = await client.get(f"/v1/markets/{TICKER}/trades")
    remaining = int(r.headers["X-Credits-Remaining"])
    with psycopg.connect(primary_url) as conn:
        row = conn.execute(
            "SELECT credits FROM private.api_keys WHERE name = 'replica test'"
        ).fetchone()
    assert row is not None
    assert int(row[0]) == remaining  # charged on the primary

    # Past max_lag_seconds the replica is skipped: the primary serves, with the new trade.
    async def lagging() -> bool:
        return not (await replica_status(client))["healthy"]

    await until(lagging)
    assert (await replica_status(client))["error"] == "lagging"
    assert await trade_count(client) == 6
    for path, params in (
        (f"/v1/markets/{TICKER}/candles", {"interval": "1h", "start": T0.isoformat()}),
        (f"/v1/markets/{TICKER}/orderbook", {"at": (T0 + timedelta(minutes=1)).isoformat()}),
    ):
        r = await client.get(path, params=params)
        assert r.status_code == 200, (path, r.text)

    # Replay resumes: the replica catches up and serves again.
    with psycopg.connect(replica.url("kalshibook"), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_resume()")
    await until(healthy)
    assert await trade_count(client) == 6

    # A stopped replica is skipped, and /v1/status says so.
    replica.stop()
    assert await trade_count(client) == 6
    await until(lagging)
    assert (await replica_status(client))["error"] is not None


async def _a_standby_of_another_cluster_is_refused(
    other_primary: str, replica: harness.Cluster
) -> None:
    """The same healthy standby given to an API whose primary is another cluster (the test
    session's server): in recovery and caught up, but its data is not that primary's. It gets no
    reads (the primary answers: it has no such market), and both ``/v1/status`` and ``kalshibook
    status``'s measurement say why."""
    key = create_key(other_primary, name="other cluster", credits=100).key
    settings = Settings(
        core=CoreSettings(database_url=other_primary),
        api=ApiSettings(rate_limit_per_second=1e6),
        replica=ReplicaSettings(
            urls=replica.url("kalshibook"), max_lag_seconds=2.0, check_interval=0.2
        ),
    )
    async with AsyncTestClient(app=create_app(settings), raise_server_exceptions=False) as other:
        other.headers["Authorization"] = f"Bearer {key}"

        async def checked() -> bool:
            return (await replica_status(other))["error"] is not None

        await until(checked)
        state = await replica_status(other)
        assert state["healthy"] is False
        assert "another cluster" in state["error"], state
        r = await other.get(f"/v1/markets/{TICKER}/trades")
        assert r.status_code == 404, r.text  # not the standby's five trades
    [measured] = replicas.measure(other_primary, settings.replica)
    assert not measured.healthy
    assert measured.error is not None
    assert "another cluster" in measured.error


@pytest.mark.parametrize("api", ["unavailable"], indirect=True)
async def test_no_usable_replica_is_a_503_when_configured(
    api: tuple[AsyncTestClient[Any], str], clusters: tuple[harness.Cluster, harness.Cluster]
) -> None:
    client, _ = api
    _, replica = clusters

    async def healthy() -> bool:
        return bool((await replica_status(client))["healthy"])

    await until(healthy)
    assert await trade_count(client) == 5
    replica.stop()

    async def refused() -> bool:
        r = await client.get(f"/v1/markets/{TICKER}/trades")
        return r.status_code == 503

    await until(refused)
    r = await client.get(f"/v1/markets/{TICKER}/trades")
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["retry-after"] == "5"
    assert "replica" in r.json()["detail"]
    kalshi = await client.get("/trade-api/v2/markets/trades", params={"ticker": TICKER})
    assert kalshi.status_code == 503
    assert kalshi.headers["retry-after"] == "5"
    # /v1/status reads the primary: it shows the replica's state when no replica is usable
    state = await replica_status(client)
    assert state["healthy"] is False
    assert state["error"].startswith("unreachable: ")


def _signal_cluster(cluster: harness.Cluster, sig: signal.Signals) -> None:
    """``sig`` to the cluster's postmaster and every process it started (a hung server)."""
    pid = int((cluster.pgdata / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    for p in (pid, *map(int, children)):
        os.kill(p, sig)


async def test_a_replica_that_stops_answering_is_skipped(
    api: tuple[AsyncTestClient[Any], str], clusters: tuple[harness.Cluster, harness.Cluster]
) -> None:
    """A hung replica (its processes stopped: no error, no answer) is no longer chosen once its
    lag check goes unanswered; the primary serves, and the replica is used again once it
    answers."""
    client, _ = api
    _, replica = clusters

    async def healthy() -> bool:
        return bool((await replica_status(client))["healthy"])

    async def skipped() -> bool:
        return not await healthy()

    await until(healthy)
    _signal_cluster(replica, signal.SIGSTOP)
    try:
        await until(skipped, limit=30.0)
        error = (await replica_status(client))["error"]
        assert "no answer" in error, error
        assert await trade_count(client) == 5  # the primary (on the replica: a 504 at 10 s)
    finally:
        _signal_cluster(replica, signal.SIGCONT)
    await until(healthy, limit=30.0)


async def test_a_busy_replica_pool_is_not_a_down_replica(
    api: tuple[AsyncTestClient[Any], str],
) -> None:
    """Every connection of the replica's pool in use (requests in flight): a further request goes
    to the primary (fallback `primary`) and the replica stays healthy: its lag check has a
    connection of its own."""
    client, _ = api

    async def healthy() -> bool:
        return bool((await replica_status(client))["healthy"])

    await until(healthy)
    replicas = services_of(client.app.state).replicas
    assert replicas is not None
    [pool] = replicas.pools
    held = [await pool.getconn(timeout=10) for _ in range(pool.max_size)]
    try:
        assert await trade_count(client) == 5
        await asyncio.sleep(3 * 0.2 + 0.5)  # a few lag checks
        state = await replica_status(client)
        assert state["healthy"] is True, state
    finally:
        for conn in held:
            await pool.putconn(conn)


async def test_a_replica_refusing_new_connections_is_skipped(
    api: tuple[AsyncTestClient[Any], str], clusters: tuple[harness.Cluster, harness.Cluster]
) -> None:
    """The replica keeps its open sessions (the lag check's among them) but refuses new ones (its
    pg_hba.conf changed, reloaded) and the pool's connections are gone: once the pool has failed
    to connect, the lag check connects anew, fails the same way, and the replica is skipped (no
    request waits for its pool any more); it is used again once it accepts connections."""
    client, _ = api
    _, replica = clusters

    async def healthy() -> bool:
        return bool((await replica_status(client))["healthy"])

    async def refused() -> bool:
        # a request needs the pool: it tries to reconnect (one that took a pooled session just as
        # the test ended it is run again on the primary: the test below)
        await client.get(f"/v1/markets/{TICKER}/trades")
        state = await replica_status(client)
        return not state["healthy"] and "pg_hba.conf" in (state["error"] or "")

    await until(healthy)
    original = replica.read_text("pg_hba.conf")
    with psycopg.connect(replica.url("kalshibook"), autocommit=True) as admin:
        replica.write_text("pg_hba.conf", "host all all 127.0.0.1/32 reject\n" + original)
        admin.execute("SELECT pg_reload_conf()")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'kalshibook-api-replica-0'"
        )
        try:
            await until(refused)
            assert await trade_count(client) == 5  # the primary serves
        finally:
            replica.write_text("pg_hba.conf", original)
            admin.execute("SELECT pg_reload_conf()")
    await until(healthy)


WAITING = """
SELECT pid FROM pg_stat_activity
WHERE application_name = %s AND wait_event_type = 'Lock' AND position('market.trades' IN query) > 0
"""
REPLAYED_LOCK = """
SELECT count(*) FROM pg_locks
WHERE relation = 'market.trades'::regclass AND mode = 'AccessExclusiveLock' AND granted
"""


def _poll(url: str, query: str, params: Any, what: str, limit: float = 20.0) -> Any:
    """The first row of ``query`` that is not None or (0,), polled every 20 ms."""
    deadline = time.monotonic() + limit
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(query, params).fetchone()
            if row is not None and row != (0,):
                return row
            assert time.monotonic() < deadline, what
            time.sleep(0.02)


def _terminate_then_unlock(
    replica_url: str, primary_url: str, locker: psycopg.Connection[Any], out: list[Any]
) -> None:
    """Terminate the API's replica session once it waits for the trades' lock, see the request
    wait on the primary next, then release the lock (a thread: the test client holds the
    loop while it serves a request)."""
    try:
        (pid,) = _poll(replica_url, WAITING, ("kalshibook-api-replica-0",), "no replica read waits")
        with psycopg.connect(replica_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        _poll(primary_url, WAITING, ("kalshibook-api",), "the request was not run on the primary")
        out.append("ran again on the primary")
    except BaseException as exc:  # reported by the test
        out.append(exc)
    finally:
        locker.rollback()


async def test_a_replica_session_lost_mid_request_is_answered_by_another_server(
    api: tuple[AsyncTestClient[Any], str], clusters: tuple[harness.Cluster, harness.Cluster]
) -> None:
    """The replica's session of a request in flight is terminated while the request reads: the
    request is run again on the primary (a GET only reads) and answered there, charged once. The
    read is held still by a lock: the primary takes an ACCESS EXCLUSIVE lock on the trades, the
    replica's recovery takes it too once it replays the lock's WAL, and the request's read waits
    for it, first on the replica, then, run again, on the primary, until the lock goes."""
    client, primary_url = api
    _, replica = clusters

    async def healthy() -> bool:
        return bool((await replica_status(client))["healthy"])

    await until(healthy)
    assert await trade_count(client) == 5
    out: list[Any] = []
    with psycopg.connect(primary_url) as locker:
        locker.execute("LOCK TABLE market.trades IN ACCESS EXCLUSIVE MODE")
        with psycopg.connect(primary_url, autocommit=True) as other:
            other.execute("SELECT pg_switch_wal()")  # the lock's WAL goes to the replica
        _poll(replica.url("kalshibook"), REPLAYED_LOCK, None, "the lock was not replayed")
        helper = threading.Thread(
            target=_terminate_then_unlock,
            args=(replica.url("kalshibook"), primary_url, locker, out),
        )
        helper.start()
        try:
            response = await client.get(f"/v1/markets/{TICKER}/trades", params={"limit": 100})
        finally:
            helper.join(timeout=60)
    assert out == ["ran again on the primary"]
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 5
    with psycopg.connect(primary_url, autocommit=True) as conn:
        usage = conn.execute(
            "SELECT status FROM private.api_usage WHERE request_id = %s",
            (response.headers["X-Request-Id"],),
        ).fetchall()
    assert usage == [(200,)]  # one request, charged once, answered
