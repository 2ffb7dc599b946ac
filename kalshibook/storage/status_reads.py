"""The database half of ``kalshibook status``: one snapshot of freshness, gaps and sizes.

:func:`read_database` runs a handful of fast catalogue and index queries and returns a
:class:`DbSnapshot`; :mod:`kalshibook.ops.status` probes the collector, judges the snapshot and
renders the report. Cheap by construction, so it can run every minute from cron on a large
database:

- freshness of a channel is the newest ``received_at`` among its 1,000 newest rows by exchange
  time (an ordered scan of the ``ts`` index over the newest chunks, never a full scan; the same
  rule as the API's ``/v1/status``);
- row counts are exact (``count(*)``) for hypertables whose heap is at most
  :data:`EXACT_COUNT_MAX_BYTES`, and TimescaleDB's ``approximate_row_count`` (statistics) above
  that;
- sizes come from ``hypertable_detailed_size``; compression from ``hypertable_compression_stats``
  on the Community edition only (the Apache edition has no compression);
- candle relations are continuous aggregates on the Community edition (the size shown is that of
  their materialisation hypertable) and plain views on the Apache edition (no storage at all).

Every query that depends on the edition runs in its own transaction and degrades to a note on
error, so one missing function never hides the rest of the snapshot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final, LiteralString

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import args_row

from kalshibook.errors import SchemaError
from kalshibook.storage.reads import (
    STATUS_CHANNELS,
    STATUS_CHUNKS,
    STATUS_FIRST,
    STATUS_TABLES,
    STATUS_WIDER,
    ChannelRow,
    status_channel_params,
    status_inexact,
)

__all__ = (
    "APACHE",
    "CAGG_NOTE",
    "CHANNELS",
    "COMMUNITY",
    "VIEW_NOTE",
    "Channel",
    "DatabaseState",
    "DbSnapshot",
    "GapReason",
    "Gaps",
    "Relation",
    "read_database",
)

CHANNELS: Final = (
    "trades",
    "orderbook_deltas",
    "orderbook_snapshots",
    "quotes",
    "market_stats",
    "lifecycle_events",
)
"""Hypertables the collector writes continuously, in display order."""

EXACT_COUNT_MAX_BYTES: Final = 64 * 1024 * 1024
"""Hypertables (and materialisations) whose heap is at most this big are counted exactly."""

APACHE = "apache"
COMMUNITY = "timescale"
APACHE_COMPRESSION = "n/a (apache edition)"
VIEW_NOTE = "view (computed on read)"
CAGG_NOTE = "rows and size of the materialization; the newest buckets are computed on read"

# -- SQL -----------------------------------------------------------------------------------------

DATABASE_INFO: LiteralString = """
SELECT now(),
       current_database(),
       split_part(current_setting('server_version'), ' ', 1),
       (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),
       current_setting('timescaledb.license', true),
       to_regnamespace('market') IS NOT NULL AND to_regclass('market.trades') IS NOT NULL,
       to_regclass('public.alembic_version') IS NOT NULL
"""
"""``now`` (the clock every age is measured with), names and versions, and whether the schema
exists (``to_reg*`` return NULL instead of raising)."""

SCHEMA_REVISION: LiteralString = "SELECT version_num FROM public.alembic_version LIMIT 1"
DELTA_EXTENTS_STATE: LiteralString = "SELECT complete, changed_at FROM market.delta_extents_state"
"""Whether the deltas' read extents can be used (migration 0009)."""
BOOK_DAYS_STATE: LiteralString = "SELECT complete, changed_at FROM market.book_days_state"
"""Whether the snapshots' per-day counts can be used (migration 0016)."""

GAPS: LiteralString = """
SELECT reason, count(*), count(DISTINCT market_ticker)
FROM market.book_gaps
WHERE to_ts >= %(since)s AND from_ts <= %(now)s
GROUP BY GROUPING SETS ((reason), ())
ORDER BY reason NULLS FIRST
"""
"""Gaps overlapping ``[since, now]``: one total row (``reason`` NULL) then one row per reason."""

HYPERTABLES: LiteralString = """
SELECT h.hypertable_name, h.compression_enabled,
       s.table_bytes, s.index_bytes, s.toast_bytes, s.total_bytes
FROM timescaledb_information.hypertables h
CROSS JOIN LATERAL hypertable_detailed_size(
    format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass) s
WHERE h.hypertable_schema = 'market'
ORDER BY h.hypertable_name
"""

CANDLE_RELATIONS: LiteralString = """
SELECT c.relname, c.relkind::text,
       ca.materialization_hypertable_schema, ca.materialization_hypertable_name,
       coalesce(ca.compression_enabled, false)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN timescaledb_information.continuous_aggregates ca
       ON ca.view_schema = n.nspname AND ca.view_name = c.relname
WHERE n.nspname = 'market' AND c.relname LIKE 'candles\\_%' AND c.relkind IN ('v', 'm')
ORDER BY c.relname
"""
"""Views and materialized views of ``market`` named ``candles_*``; for continuous aggregates
(Community edition) also their materialisation hypertable."""

CAGG_HYPERTABLES: LiteralString = """
SELECT ca.view_name, s.table_bytes, s.index_bytes, s.toast_bytes, s.total_bytes
FROM timescaledb_information.continuous_aggregates ca
CROSS JOIN LATERAL hypertable_detailed_size(
    format('%I.%I', ca.materialization_hypertable_schema,
           ca.materialization_hypertable_name)::regclass) s
WHERE ca.view_schema = 'market'
"""

CAGG_LAST_REFRESH: LiteralString = """
SELECT j.hypertable_name, max(nullif(js.last_successful_finish, '-infinity'))
FROM timescaledb_information.jobs j
JOIN timescaledb_information.job_stats js ON js.job_id = j.job_id
WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
GROUP BY j.hypertable_name
"""
"""Last successful refresh per materialisation hypertable (Community edition job statistics)."""

COMPRESSION_STATS: LiteralString = """
SELECT coalesce(sum(total_chunks), 0)::bigint,
       coalesce(sum(number_compressed_chunks), 0)::bigint,
       sum(before_compression_total_bytes)::bigint,
       sum(after_compression_total_bytes)::bigint
FROM hypertable_compression_stats(%s::regclass)
"""

POLICY_JOBS: LiteralString = """
SELECT j.job_id, j.proc_name, coalesce(ca.view_name, j.hypertable_name), j.schedule_interval,
       j.scheduled, nullif(js.last_run_started_at, '-infinity'),
       nullif(js.last_successful_finish, '-infinity'), js.last_run_status,
       js.total_runs, js.total_failures, nullif(js.next_start, '-infinity'),
       (SELECT e.err_message FROM timescaledb_information.job_errors e
        WHERE e.job_id = j.job_id ORDER BY e.finish_time DESC LIMIT 1)
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats js ON js.job_id = j.job_id
LEFT JOIN timescaledb_information.continuous_aggregates ca
       ON ca.materialization_hypertable_schema = j.hypertable_schema
      AND ca.materialization_hypertable_name = j.hypertable_name
WHERE j.proc_name IN ('policy_refresh_continuous_aggregate', 'policy_compression',
                      'policy_retention')
ORDER BY 3, 2
"""
"""Every refresh, compression and retention policy with its last run (Community edition); a job
that never ran or never succeeded has ``-infinity`` times, which psycopg cannot load: NULL."""

JOB_SCHEDULER: LiteralString = """
SELECT current_setting('timescaledb.max_background_workers')::int,
       (SELECT count(*) FROM pg_stat_activity
        WHERE backend_type = 'TimescaleDB Background Worker Scheduler'
          AND datname = current_database())
"""
"""The job scheduler's worker budget and whether one runs for this database."""

APPROXIMATE_ROWS: LiteralString = "SELECT approximate_row_count(%s::regclass)"

# -- snapshot types -------------------------------------------------------------------------------


class DatabaseState(msgspec.Struct, kw_only=True):
    url: str
    """Redacted URL (no password)."""
    reachable: bool
    database: str | None = None
    server_version: str | None = None
    timescaledb_version: str | None = None
    edition: str | None = None
    """``timescaledb.license``: ``timescale`` (Community) or ``apache``."""
    schema_revision: str | None = None
    job_scheduler: str | None = None
    """Community edition: ``running`` or why policies do not run; None on the Apache edition."""
    delta_extents: str | None = None
    """``complete``, or since when they are incomplete (migration 0009); None before 0009."""
    book_days: str | None = None
    """The same for the snapshots' per-day counts (migration 0016); None before 0016."""
    error: str | None = None


class Channel(msgspec.Struct, kw_only=True):
    channel: str
    last_received_at: datetime | None
    last_ts: datetime | None
    """Newest exchange time in the channel."""
    age_seconds: float | None = None
    """``checked_at − last_received_at``."""
    state: str = "empty"
    """``fresh`` (age ≤ --stale-after), ``old`` or ``empty``."""


class GapReason(msgspec.Struct, kw_only=True):
    reason: str
    gaps: int
    markets: int


class Gaps(msgspec.Struct, kw_only=True):
    window_hours: float
    since: datetime
    count: int
    markets: int
    by_reason: list[GapReason]


class Relation(msgspec.Struct, kw_only=True):
    name: str
    kind: str
    """``hypertable``, ``continuous aggregate``, ``view`` or ``materialized view``."""
    rows: int | None = None
    rows_exact: bool = False
    table_bytes: int | None = None
    index_bytes: int | None = None
    toast_bytes: int | None = None
    total_bytes: int | None = None
    compression: str | None = None
    """Human summary: ``n/a (apache edition)``, ``not enabled``, ``4.2x (12/30 chunks)``, ..."""
    compression_ratio: float | None = None
    """Uncompressed / compressed bytes of the compressed chunks."""
    last_refresh: datetime | None = None
    """Continuous aggregates: last successful policy refresh."""
    note: str | None = None


class PolicyJob(msgspec.Struct, kw_only=True):
    """One TimescaleDB policy job and its last run (Community edition)."""

    job_id: int
    policy: str
    """``refresh``, ``compression`` or ``retention``."""
    relation: str
    schedule_seconds: float | None
    enabled: bool
    last_run_started_at: datetime | None = None
    last_success_at: datetime | None = None
    last_status: str | None = None
    """``Success``, ``Failed`` or None (never ran)."""
    runs: int = 0
    failures: int = 0
    next_start: datetime | None = None
    last_error: str | None = None


POLICY_NAMES = {
    "policy_refresh_continuous_aggregate": "refresh",
    "policy_compression": "compression",
    "policy_retention": "retention",
}


class DbSnapshot(msgspec.Struct, kw_only=True):
    """Everything :func:`read_database` read; input of :func:`assess`."""

    database: DatabaseState
    now: datetime
    channels: list[Channel]
    gaps: Gaps
    hypertables: list[Relation]
    candles: list[Relation]
    policies: list[PolicyJob] = msgspec.field(default_factory=list)


def state_text(state: Any) -> str:
    """``complete`` or since when not, from a state row ``(complete, changed_at)`` (the delta
    extents', the book days'); no row reads as incomplete, as the reads take it (pure)."""
    if state is None:
        return "incomplete (its state row is missing)"
    complete, changed_at = state
    return "complete" if complete else f"incomplete since {changed_at.astimezone(UTC).isoformat()}"


# -- database -------------------------------------------------------------------------------------


def _optional(
    conn: psycopg.Connection[Any], query: LiteralString | sql.Composed, params: Any = None
) -> Any:
    """Rows of ``query`` in its own transaction, or the error text (edition-dependent SQL)."""
    try:
        with conn.transaction():
            return conn.execute(query, params).fetchall()
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()
        return text[0] if text else type(exc).__name__


def _row_count(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    table_bytes: int | None,
    toast_bytes: int | None,
) -> tuple[int | None, bool]:
    """Exact count for small tables, TimescaleDB's statistics-based estimate above.

    Compressed chunks keep their data in TOAST, hence heap + TOAST as the measure of size.
    """
    stored = None if table_bytes is None else table_bytes + (toast_bytes or 0)
    if stored is not None and stored <= EXACT_COUNT_MAX_BYTES:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        counted = _optional(conn, query)
        if not isinstance(counted, str) and counted:
            return int(counted[0][0]), True
    rows = _optional(conn, APPROXIMATE_ROWS, (f'"{schema}"."{table}"',))
    if isinstance(rows, str) or not rows or rows[0][0] is None:
        return None, False
    estimate = int(rows[0][0])
    if estimate <= 0:  # big heap, no statistics yet (ANALYZE has not run)
        return None, False
    return estimate, False


def _compression(
    conn: psycopg.Connection[Any], edition: str | None, table: str, enabled: bool
) -> tuple[str, float | None]:
    """``table``: a hypertable of ``market``, or a qualified name (``schema."name"``)."""
    if edition != COMMUNITY:
        return APACHE_COMPRESSION, None
    if not enabled:
        return "not enabled", None
    qualified = table if "." in table else f'market."{table}"'
    rows = _optional(conn, COMPRESSION_STATS, (qualified,))
    if isinstance(rows, str):
        return f"unavailable ({rows})", None
    total, compressed, before, after = rows[0] if rows else (0, 0, None, None)
    if not compressed:
        return f"enabled, 0/{total} chunks compressed", None
    if not before or not after:
        return f"enabled, {compressed}/{total} chunks compressed", None
    ratio = before / after
    return f"{ratio:.1f}x ({compressed}/{total} chunks)", ratio


def _candle_sort_key(name: str) -> tuple[int, str, int, str]:
    """trades, quotes, stats (the order of the migration), then 1m, 1h, 1d."""
    base, _, level = name.rpartition("_")
    source = {"candles_trades": 0, "candles_quotes": 1, "candles_stats": 2}.get(base, 9)
    return source, base, {"1m": 0, "1h": 1, "1d": 2}.get(level, 9), level


def read_database(conn: psycopg.Connection[Any], *, url: str, gap_window: timedelta) -> DbSnapshot:
    """Read everything the report needs. ``conn`` must be in autocommit mode.

    Raises :class:`SchemaError` when the database is not migrated.
    """
    info = conn.execute(DATABASE_INFO).fetchone()
    assert info is not None
    now, dbname, server_version, ts_version, edition, has_schema, has_alembic = info
    if ts_version is None:
        raise SchemaError(
            f"{url}: the timescaledb extension is not installed in database {dbname!r} "
            "(run `kalshibook migrate`)"
        )
    if not has_schema:
        raise SchemaError(
            f"{url}: no kalshibook schema in database {dbname!r} (run `kalshibook migrate`)"
        )
    revision = None
    if has_alembic:
        row = conn.execute(SCHEMA_REVISION).fetchone()
        revision = None if row is None else str(row[0])
    database = DatabaseState(
        url=url,
        reachable=True,
        database=str(dbname),
        server_version=str(server_version),
        timescaledb_version=str(ts_version),
        edition=None if edition is None else str(edition),
        schema_revision=revision,
    )

    extents = _optional(conn, DELTA_EXTENTS_STATE)
    if not isinstance(extents, str):  # an error: a schema before 0009
        database.delta_extents = state_text(extents[0] if extents else None)
    book_days = _optional(conn, BOOK_DAYS_STATE)
    if not isinstance(book_days, str):  # an error: a schema before 0016
        database.book_days = state_text(book_days[0] if book_days else None)

    # the same freshness rule as the API's /v1/status (one query for both)
    chunks = conn.execute(STATUS_CHUNKS, {"tables": STATUS_TABLES, "k": STATUS_FIRST}).fetchall()
    with conn.cursor(row_factory=args_row(ChannelRow)) as cur:
        channel_rows = cur.execute(STATUS_CHANNELS, status_channel_params(chunks)).fetchall()
        flagged = status_inexact(channel_rows, chunks)
        if flagged:
            wider = conn.execute(STATUS_CHUNKS, {"tables": flagged, "k": STATUS_WIDER}).fetchall()
            params = status_channel_params(chunks, wider=wider)
            channel_rows = cur.execute(STATUS_CHANNELS, params).fetchall()
            whole = status_inexact(channel_rows, wider, STATUS_WIDER)
            if whole:
                params = status_channel_params(chunks, whole, wider)
                channel_rows = cur.execute(STATUS_CHANNELS, params).fetchall()
    channels = [
        Channel(channel=r.table, last_received_at=r.last_received_at, last_ts=r.last_ts)
        for r in channel_rows
        if r.table in CHANNELS
    ]
    channels.sort(key=lambda c: CHANNELS.index(c.channel))

    since = now - gap_window
    total_gaps, total_markets = 0, 0
    reasons: list[GapReason] = []
    for reason, gaps, markets in conn.execute(GAPS, {"since": since, "now": now}).fetchall():
        if reason is None:
            total_gaps, total_markets = int(gaps), int(markets)
        else:
            reasons.append(GapReason(reason=str(reason), gaps=int(gaps), markets=int(markets)))
    gaps_summary = Gaps(
        window_hours=gap_window.total_seconds() / 3600,
        since=since,
        count=total_gaps,
        markets=total_markets,
        by_reason=reasons,
    )

    hypertables: list[Relation] = []
    order = {name: i for i, name in enumerate(CHANNELS)}
    found = sorted(conn.execute(HYPERTABLES).fetchall(), key=lambda r: (order.get(r[0], 99), r[0]))
    for name, enabled, table_b, index_b, toast_b, total_b in found:
        rows, exact = _row_count(conn, "market", str(name), table_b, toast_b)
        compression, ratio = _compression(conn, database.edition, str(name), bool(enabled))
        hypertables.append(
            Relation(
                name=str(name),
                kind="hypertable",
                rows=rows,
                rows_exact=exact,
                table_bytes=table_b,
                index_bytes=index_b,
                toast_bytes=toast_b,
                total_bytes=total_b,
                compression=compression,
                compression_ratio=ratio,
            )
        )

    policies: list[PolicyJob] = []
    if database.edition == COMMUNITY:
        database.job_scheduler, policies = _read_policies(conn)
    return DbSnapshot(
        database=database,
        now=now,
        channels=channels,
        gaps=gaps_summary,
        hypertables=hypertables,
        candles=_read_candles(conn, database.edition),
        policies=policies,
    )


def _read_policies(conn: psycopg.Connection[Any]) -> tuple[str, list[PolicyJob]]:
    """The scheduler's state and every policy job (Community edition)."""
    sched = _optional(conn, JOB_SCHEDULER)
    if isinstance(sched, str):
        scheduler = f"unknown ({sched})"
    else:
        workers, running = sched[0]
        if int(workers) == 0:
            scheduler = "off (timescaledb.max_background_workers = 0): policies never run"
        elif int(running) == 0:
            scheduler = "not running for this database yet (starts within a minute)"
        else:
            scheduler = "running"
    rows = _optional(conn, POLICY_JOBS)
    if isinstance(rows, str):
        return f"{scheduler}; jobs unavailable ({rows})", []
    jobs = [
        PolicyJob(
            job_id=int(job_id),
            policy=POLICY_NAMES.get(str(proc), str(proc)),
            relation=str(relation),
            schedule_seconds=None if schedule is None else schedule.total_seconds(),
            enabled=bool(enabled),
            last_run_started_at=started,
            last_success_at=success,
            last_status=None if status is None else str(status),
            runs=int(runs or 0),
            failures=int(failures or 0),
            next_start=next_start,
            last_error=None if error is None else str(error),
        )
        for (
            job_id,
            proc,
            relation,
            schedule,
            enabled,
            started,
            success,
            status,
            runs,
            failures,
            next_start,
            error,
        ) in rows
    ]
    return scheduler, jobs


def _read_candles(conn: psycopg.Connection[Any], edition: str | None) -> list[Relation]:
    relations = conn.execute(CANDLE_RELATIONS).fetchall()
    sizes: dict[str, tuple[int, int, int, int]] = {}
    refreshed: dict[str, datetime | None] = {}
    size_error: str | None = None
    if any(mat_name is not None for _n, _k, _s, mat_name, _c in relations):
        got = _optional(conn, CAGG_HYPERTABLES)
        if isinstance(got, str):
            size_error = got
        else:
            sizes = {str(r[0]): (r[1], r[2], r[3], r[4]) for r in got}
        jobs = _optional(conn, CAGG_LAST_REFRESH)
        if not isinstance(jobs, str):
            refreshed = {str(r[0]): r[1] for r in jobs}
    out: list[Relation] = []
    for name, relkind, mat_schema, mat_name, compressed in relations:
        name = str(name)
        if mat_name is not None:
            rel = Relation(
                name=name, kind="continuous aggregate", last_refresh=refreshed.get(str(mat_name))
            )
            rel.compression, rel.compression_ratio = _compression(
                conn, edition, f'{mat_schema}."{mat_name}"', bool(compressed)
            )
            if name in sizes:
                rel.table_bytes, rel.index_bytes, rel.toast_bytes, rel.total_bytes = sizes[name]
                rel.rows, rel.rows_exact = _row_count(
                    conn, str(mat_schema), str(mat_name), rel.table_bytes, rel.toast_bytes
                )
                rel.note = CAGG_NOTE
            else:
                rel.note = f"size unavailable ({size_error})" if size_error else None
            out.append(rel)
        elif relkind == "m":
            got = _optional(
                conn,
                "SELECT pg_total_relation_size(%s::regclass), pg_relation_size(%s::regclass)",
                (f'market."{name}"', f'market."{name}"'),
            )
            rel = Relation(name=name, kind="materialized view")
            if not isinstance(got, str) and got:
                rel.total_bytes, rel.table_bytes = int(got[0][0]), int(got[0][1])
            out.append(rel)
        else:
            note = VIEW_NOTE if edition != COMMUNITY else f"{VIEW_NOTE}; not a continuous aggregate"
            out.append(Relation(name=name, kind="view", note=note))
    out.sort(key=lambda r: _candle_sort_key(r.name))
    return out
