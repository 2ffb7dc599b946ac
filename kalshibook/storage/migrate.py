"""Run alembic migrations programmatically, with clear errors instead of tracebacks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from kalshibook.errors import SchemaError
from kalshibook.settings import StorageSettings
from kalshibook.storage.database_defaults import apply_database_defaults
from kalshibook.storage.policies import apply_policies
from kalshibook.storage.reader_limits import harden_readers, remove_watchdog
from kalshibook.storage.service_roles import apply_service_grants
from kalshibook.storage.urls import redact, unreachable

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)

CHECK_TIMESCALEDB = """
SELECT (SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb') AS available,
       current_setting('shared_preload_libraries') AS preload
"""


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = url
    return cfg


def preflight(url: str) -> None:
    """Fail with one readable line when the server is unreachable or lacks TimescaleDB."""
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            row = conn.execute(CHECK_TIMESCALEDB).fetchone()
    except Exception as exc:  # noqa: BLE001 - malformed URLs raise various non-psycopg errors
        raise unreachable(url, exc) from None
    assert row is not None
    available, preload = row
    if not available:
        raise SchemaError(
            f"{redact(url)}: the server has no timescaledb extension installed "
            "(use the timescale/timescaledb image or `make db`)"
        )
    if "timescaledb" not in str(preload):
        raise SchemaError(
            f"{redact(url)}: timescaledb is installed but not in shared_preload_libraries"
        )


CANDLES_REVISION = "0002"
COMPRESSION_REVISION = "0004"
EXCHANGE_ORDER_REVISION = "0005"
# Revisions that (re)create candle aggregates WITH NO DATA, going up or down through them.
AGGREGATE_REVISIONS = (CANDLES_REVISION, EXCHANGE_ORDER_REVISION)
DELTA_EXTENTS_REVISIONS = ("0009", "0015")
REBUILD_DELTA_EXTENTS = "SELECT markets, complete FROM market.rebuild_delta_extents()"
"""The first rebuild after 0009 created the extents (incomplete), or 0015 the days (extents
marked incomplete), outside the revision's transaction."""
EDITION = "SELECT current_setting('timescaledb.license')"
FIRST_SOURCE_ROW = """
SELECT least((SELECT min(ts) FROM market.trades), (SELECT min(ts) FROM market.quotes),
             (SELECT min(ts) FROM market.market_stats))
"""


def upgrade(url: str, revision: str = "head", storage: StorageSettings | None = None) -> None:
    """Upgrade the schema to ``revision``, then make the compression and retention policies
    match ``storage`` (the defaults when not given) once compression exists (0004), and apply
    the SQL readers' limits (:func:`~kalshibook.storage.reader_limits.harden_readers`) and the
    database's session defaults (:mod:`~kalshibook.storage.database_defaults`: ``jit = off``)."""
    preflight(url)
    before = current_revision(url)
    _retrying_on_locks(lambda: command.upgrade(alembic_config(url), revision))
    after = current_revision(url)
    if _crossed(before, after):
        materialise_candle_history(url)
    with psycopg.connect(url, autocommit=True) as conn:
        if any((before or "") < rev <= (after or "") for rev in DELTA_EXTENTS_REVISIONS):
            log.info("computing the delta extents (one scan of market.orderbook_deltas)")
            conn.execute(REBUILD_DELTA_EXTENTS)
        if (after or "") >= COMPRESSION_REVISION:
            apply_policies(conn, storage or StorageSettings())
        if after is not None:
            retrying_catalog_races(lambda: harden_readers(conn), "the readers' limits")
            retrying_catalog_races(lambda: apply_service_grants(conn), "the service grants")
            retrying_catalog_races(lambda: apply_database_defaults(conn), "the database defaults")


LOCK_RETRIES = 12
CATALOG_RETRIES = 6


def retrying_catalog_races(step: Callable[[], object], what: str) -> None:
    """Run ``step`` (idempotent grants and settings) again when it lost a race on a catalog row.

    ``GRANT … ON ALL TABLES`` rewrites the privileges of every hypertable, which TimescaleDB
    passes on to each chunk's catalog row; a policy job compressing a chunk at that moment (on
    the Community edition the scheduler starts a fresh database's compression policy within
    seconds, and a migrated history is old enough to compress) updates the same row, and
    PostgreSQL fails one of the two with ``tuple concurrently updated`` (XX000) rather than
    waiting (seen in the test suite, once in 1,248 tests). A lock not granted or a deadlock is
    the same race. The step is run again, a few times, before the migration gives up."""
    for attempt in range(1, CATALOG_RETRIES + 1):
        try:
            step()
            return
        except (
            psycopg.errors.InternalError_,
            psycopg.errors.LockNotAvailable,
            psycopg.errors.DeadlockDetected,
        ) as exc:
            racing = not isinstance(exc, psycopg.errors.InternalError_) or (
                "concurrently updated" in str(exc)
            )
            if not racing:
                raise
            if attempt == CATALOG_RETRIES:
                raise SchemaError(
                    f"{what} kept racing a TimescaleDB job on the catalog ({exc}); run "
                    "`kalshibook migrate` again"
                ) from None
            log.warning("%s raced a background job on the catalog; retrying (%d)", what, attempt)
            time.sleep(min(0.2 * attempt, 2.0))


def _retrying_on_locks(step: Callable[[], None]) -> None:
    """Run a migration step again when it gave up waiting for a lock (or lost a deadlock).

    Each revision runs in its own transaction with a short ``lock_timeout`` (migrations/env.py);
    on the Community edition the job scheduler may be running a policy (refresh, compression) of
    a relation the next revision alters. The revision is rolled back whole, so running it again,
    once the job is done, is safe; the job is rarely the one aborted (see migrations/env.py).
    """
    for attempt in range(1, LOCK_RETRIES + 1):
        try:
            step()
            return
        except sqlalchemy.exc.OperationalError as exc:
            if not isinstance(
                exc.orig, psycopg.errors.LockNotAvailable | psycopg.errors.DeadlockDetected
            ):
                raise
            if attempt == LOCK_RETRIES:
                raise SchemaError(
                    "the migration could not get its locks: a long-running query or TimescaleDB "
                    f"job holds them ({exc.orig}); run `kalshibook migrate` again"
                ) from None
            log.warning(
                "migration waited for a lock held by a background job; retrying (%d)", attempt
            )
            time.sleep(min(0.5 * attempt, 5.0))


def materialise_candle_history(url: str) -> None:
    """After the candle aggregates are created over existing data, materialise that history.

    Continuous aggregates are created ``WITH NO DATA`` (creation runs in the migration's
    transaction); real-time aggregation only covers rows after the last materialised bucket, so
    once the first policy run materialises the recent window, older history would disappear from
    the candles. ``refresh_continuous_aggregate`` refuses a transaction block, hence here, after
    the migration committed. Nothing to do on the Apache edition (plain views) or with no data.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        edition_row = conn.execute(EDITION).fetchone()
        if edition_row is None or edition_row[0] != "timescale":
            return
        first_row = conn.execute(FIRST_SOURCE_ROW).fetchone()
    if first_row is None or first_row[0] is None:
        return
    first: datetime = first_row[0]
    log.info("materialising candle history from %s", first.isoformat())
    asyncio.run(_refresh_all(url, first))


async def _refresh_all(url: str, first: datetime) -> None:
    from kalshibook.storage.candles import refresh_candles

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await refresh_candles(conn, first, datetime.now(UTC) + timedelta(days=1))


def downgrade(url: str, revision: str, storage: StorageSettings | None = None) -> None:
    """Downgrade the schema to ``revision``; aggregates a revision recreated get their history
    materialised and, from 0004 on, the compression and retention policies of ``storage`` (the
    defaults when not given) again (the recreated aggregates had none)."""
    preflight(url)
    if revision == "base":
        with psycopg.connect(url, autocommit=True) as conn:
            remove_watchdog(conn)
    before = current_revision(url)
    _retrying_on_locks(lambda: command.downgrade(alembic_config(url), revision))
    after = current_revision(url)
    if after is not None and after >= CANDLES_REVISION and _crossed(after, before):
        materialise_candle_history(url)
    if (after or "") >= COMPRESSION_REVISION:
        with psycopg.connect(url, autocommit=True) as conn:
            apply_policies(conn, storage or StorageSettings())


def _crossed(low: str | None, high: str | None) -> bool:
    """Whether going between revisions ``low`` < ``high`` passed a revision that (re)created
    candle aggregates empty (``high`` included, ``low`` excluded)."""
    lo, hi = low or "", high or ""
    return any(lo < rev <= hi for rev in AGGREGATE_REVISIONS)


def head_revision() -> str:
    """The newest revision of the migrations shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
        return None if row is None else str(row[0])
