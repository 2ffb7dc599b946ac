"""``kalshibook status`` beyond the database: collector probe, verdict and rendering.

Three steps, kept apart so the middle one is pure:

1. I/O: :func:`probe_collector` (``GET /health`` of the collector with a short timeout) and
   :func:`kalshibook.storage.status_reads.read_database` (the database snapshot);
2. :func:`assess`: turns what was read into a :class:`Report` with a verdict (``problems`` and
   ``exit_code``) — no I/O, tested with literals;
3. :func:`render_text` / :func:`encode_json`: the human table and the machine document.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import httpx
import msgspec

from kalshibook.storage.status_reads import (
    APACHE,
    CAGG_NOTE,
    COMMUNITY,
    VIEW_NOTE,
    Channel,
    DatabaseState,
    DbSnapshot,
    Gaps,
    PolicyJob,
    Relation,
)

__all__ = (
    "EXIT_COLLECTOR",
    "EXIT_OK",
    "EXIT_POLICIES",
    "EXIT_REPLICAS",
    "EXIT_STALE",
    "CollectorState",
    "ReplicaLine",
    "Report",
    "assess",
    "collector_health_url",
    "encode_json",
    "format_age",
    "format_bytes",
    "format_rows",
    "probe_collector",
    "render_text",
    "unreachable_report",
    "with_replicas",
)

EXIT_OK: Final = 0
"""Healthy."""
EXIT_STALE: Final = 3
"""The freshest channel (or a ``--channel`` named one) is older than ``--stale-after``, or empty."""
EXIT_COLLECTOR: Final = 4
"""``--require-collector`` and the collector's ``/health`` is unreachable or not healthy."""
EXIT_POLICIES: Final = 5
"""Community edition: a policy's last run failed, or the job scheduler is off."""
EXIT_REPLICAS: Final = 6
"""A read replica (``KALSHIBOOK_REPLICA_URLS``) is unreachable, not a replica, or lagging."""
# 1 (database unreachable, schema missing) and 2 (bad configuration) come from the error tree.

# -- report types ---------------------------------------------------------------------------------


class CollectorState(msgspec.Struct, kw_only=True):
    url: str | None
    """The ``/health`` URL probed (None when the metrics server is disabled)."""
    state: str
    """``ok`` (2xx), ``unhealthy`` (any other HTTP status), ``unreachable`` or ``disabled``."""
    http_status: int | None = None
    body: Any = None
    """The health document as JSON when it parses, else its text (truncated)."""
    error: str | None = None


class ReplicaLine(msgspec.Struct, kw_only=True):
    name: str
    """The replica's URL without its password."""
    healthy: bool
    lag_seconds: float | None
    behind_bytes: float | None
    error: str | None


class Report(msgspec.Struct, kw_only=True):
    checked_at: datetime | None
    healthy: bool
    exit_code: int
    problems: list[str]
    stale_after_seconds: float
    collector: CollectorState
    database: DatabaseState
    channels: list[Channel] = msgspec.field(default_factory=list)
    gaps: Gaps | None = None
    hypertables: list[Relation] = msgspec.field(default_factory=list)
    candles: list[Relation] = msgspec.field(default_factory=list)
    policies: list[PolicyJob] = msgspec.field(default_factory=list)
    replicas: list[ReplicaLine] = msgspec.field(default_factory=list)


def with_replicas(report: Report, replicas: list[ReplicaLine]) -> Report:
    """``report`` with the read replicas' state; an unusable one is a problem (exit
    :data:`EXIT_REPLICAS` when nothing worse was found)."""
    report.replicas = replicas
    for r in replicas:
        if not r.healthy:
            report.problems.append(f"replica {r.name}: {r.error or 'unhealthy'}")
            if report.exit_code == EXIT_OK:
                report.exit_code = EXIT_REPLICAS
                report.healthy = False
    return report


# -- collector ------------------------------------------------------------------------------------


def collector_health_url(host: str, port: int) -> str | None:
    """``http://host:port/health``; a wildcard bind address is probed on loopback."""
    if port == 0:
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/health"


def probe_collector(url: str | None, *, timeout: float = 2.0) -> CollectorState:
    """``GET url`` once; never raises."""
    if url is None:
        return CollectorState(
            url=None, state="disabled", error="KALSHIBOOK_COLLECTOR_METRICS_PORT=0"
        )
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        reason = str(exc).strip() or type(exc).__name__
        return CollectorState(url=url, state="unreachable", error=reason)
    body: Any
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = response.text.strip()[:500]
    state = "ok" if response.is_success else "unhealthy"
    return CollectorState(url=url, state=state, http_status=response.status_code, body=body)


# -- verdict --------------------------------------------------------------------------------------


def assess(
    snapshot: DbSnapshot,
    collector: CollectorState,
    *,
    stale_after: float,
    required_channels: tuple[str, ...] = (),
    require_collector: bool = False,
) -> Report:
    """The report and its verdict (pure).

    Exit code :data:`EXIT_STALE` when every channel is empty ("no data yet"), when the freshest
    channel is older than ``stale_after`` seconds, or when a channel of ``required_channels`` is
    empty or older than that; else :data:`EXIT_COLLECTOR` when ``require_collector`` and the
    collector is not ``ok``; else :data:`EXIT_OK`. Channels not named in ``required_channels``
    may be old on their own (a quiet lifecycle channel is normal) without failing the check.
    """
    problems: list[str] = []
    exit_code = EXIT_OK
    channels: list[Channel] = []
    for ch in snapshot.channels:
        if ch.last_received_at is None:
            channels.append(msgspec.structs.replace(ch, age_seconds=None, state="empty"))
            continue
        age = (snapshot.now - ch.last_received_at).total_seconds()
        state = "fresh" if age <= stale_after else "old"
        channels.append(msgspec.structs.replace(ch, age_seconds=age, state=state))

    with_data = [c for c in channels if c.age_seconds is not None]
    if not with_data:
        problems.append(
            "no data yet: every channel is empty (is `kalshibook collect` running and "
            "writing to this database?)"
        )
        exit_code = EXIT_STALE
    else:
        freshest = min(with_data, key=lambda c: c.age_seconds or 0.0)
        assert freshest.age_seconds is not None
        if freshest.age_seconds > stale_after:
            problems.append(
                f"stale: the newest data ({freshest.channel}) was received "
                f"{format_age(freshest.age_seconds)} ago, more than --stale-after {stale_after:g} s"
            )
            exit_code = EXIT_STALE
    by_name = {c.channel: c for c in channels}
    for name in required_channels:
        required = by_name.get(name)
        if required is None or required.age_seconds is None:
            problems.append(f"channel {name}: no data yet")
            exit_code = EXIT_STALE
        elif required.age_seconds > stale_after:
            problems.append(
                f"channel {name}: last received {format_age(required.age_seconds)} ago, more than "
                f"--stale-after {stale_after:g} s"
            )
            exit_code = EXIT_STALE
    if require_collector and collector.state != "ok":
        detail = collector.error or (
            f"HTTP {collector.http_status}" if collector.http_status else collector.state
        )
        problems.append(f"collector {collector.state}: {detail}")
        if exit_code == EXIT_OK:
            exit_code = EXIT_COLLECTOR
    policy_problems = _policy_problems(snapshot)
    problems += policy_problems
    if policy_problems and exit_code == EXIT_OK:
        exit_code = EXIT_POLICIES
    return Report(
        checked_at=snapshot.now,
        healthy=exit_code == EXIT_OK,
        exit_code=exit_code,
        problems=problems,
        stale_after_seconds=stale_after,
        collector=collector,
        database=snapshot.database,
        channels=channels,
        gaps=snapshot.gaps,
        hypertables=snapshot.hypertables,
        candles=snapshot.candles,
        policies=snapshot.policies,
    )


def _policy_problems(snapshot: DbSnapshot) -> list[str]:
    """Failed last runs, disabled jobs and a scheduler that is off (Community edition)."""
    out: list[str] = []
    scheduler = snapshot.database.job_scheduler
    if scheduler is not None and (
        scheduler.startswith(("off", "unknown")) or "unavailable" in scheduler
    ):
        out.append(f"job scheduler {scheduler}")
    for job in snapshot.policies:
        name = f"{job.policy} policy of {job.relation} (job {job.job_id})"
        if not job.enabled:
            out.append(f"{name} is paused")
        elif job.last_status == "Failed":
            out.append(f"{name}: last run failed: {job.last_error or 'see the server log'}")
    return out


def unreachable_report(
    database: DatabaseState, collector: CollectorState, *, stale_after: float, exit_code: int
) -> Report:
    """The report when the database could not be read (for ``--json``)."""
    return Report(
        checked_at=None,
        healthy=False,
        exit_code=exit_code,
        problems=[f"database: {database.error}"],
        stale_after_seconds=stale_after,
        collector=collector,
        database=database,
    )


# -- rendering ------------------------------------------------------------------------------------


def format_age(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h`` (negative ages show as 0 s)."""
    s = max(0, math.floor(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_rows(rel: Relation) -> str:
    if rel.rows is None:
        return "-" if rel.kind in ("view", "materialized view") else "unknown"
    return f"{rel.rows:,}" if rel.rows_exact else f"~{rel.rows:,}"


def _ts(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _collector_line(c: CollectorState) -> str:
    if c.state == "disabled":
        return "disabled (KALSHIBOOK_COLLECTOR_METRICS_PORT=0)"
    head = f"{c.state} ({c.url}"
    head += f", HTTP {c.http_status})" if c.http_status is not None else ")"
    if c.error:
        return f"{head}: {c.error}"
    if isinstance(c.body, dict):
        parts = [f"{k}={_scalar(v)}" for k, v in c.body.items()]
        return f"{head}: {' '.join(parts)}" if parts else head
    if c.body not in (None, ""):
        return f"{head}: {_scalar(c.body)}"
    return head


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.replace("\n", " ")[:200]
    if isinstance(value, (int, float)) or value is None:
        return str(value).lower() if value is None else str(value)
    return msgspec.json.encode(value).decode()[:200]


def _table(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], indent: str = "  "
) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return (indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))).rstrip()

    return [line(header), *(line(r) for r in rows)]


def render_text(report: Report) -> str:
    """The human report (plain text, fixed-width columns)."""
    db = report.database
    lines = [f"kalshibook status at {_ts(report.checked_at)}"]
    lines.append(f"collector  {_collector_line(report.collector)}")
    if db.reachable:
        edition = {COMMUNITY: "community", APACHE: "apache"}.get(db.edition or "", db.edition)
        lines.append(
            f"database   reachable ({db.url}): PostgreSQL {db.server_version}, TimescaleDB "
            f"{db.timescaledb_version} {edition} edition, schema revision "
            f"{db.schema_revision or 'unknown'}"
        )
        if db.delta_extents is not None and db.delta_extents != "complete":
            lines.append(
                f"           delta extents {db.delta_extents}: reads of deltas scan to the "
                "present until `kalshibook rebuild-extents`"
            )
        if db.book_days is not None and db.book_days != "complete":
            lines.append(
                f"           book days {db.book_days}: market details count snapshots one by "
                "one until `kalshibook rebuild-extents`"
            )
    else:
        lines.append(f"database   unreachable ({db.url}): {db.error}")

    if report.channels:
        lines.append("")
        lines.append(f"freshness (stale after {report.stale_after_seconds:g} s)")
        rows = [
            (
                c.channel,
                _ts(c.last_received_at),
                "-" if c.age_seconds is None else format_age(c.age_seconds),
                _ts(c.last_ts),
                c.state,
            )
            for c in report.channels
        ]
        lines += _table(("channel", "last received", "age", "newest exchange ts", "state"), rows)

    if report.gaps is not None:
        g = report.gaps
        window = f"{g.window_hours:g} h"
        lines.append("")
        if g.count == 0:
            lines.append(f"gaps (last {window}): none")
        else:
            reasons = ", ".join(
                f"{r.reason} {r.gaps} ({r.markets} market{'s' if r.markets != 1 else ''})"
                for r in g.by_reason
            )
            lines.append(
                f"gaps (last {window}): {g.count} gap{'s' if g.count != 1 else ''} in "
                f"{g.markets} market{'s' if g.markets != 1 else ''} - {reasons}"
            )

    relations = report.hypertables + report.candles
    if relations:
        lines.append("")
        lines.append("storage")
        rows = []
        for r in relations:
            if r.kind == "view":
                detail = r.note or VIEW_NOTE
            elif r.kind == "continuous aggregate":
                refresh = f"last refresh {_ts(r.last_refresh)}" if r.last_refresh else ""
                detail = "; ".join(x for x in (r.compression, refresh) if x)
                if r.rows is None and r.note:
                    detail = "; ".join(x for x in (detail, r.note) if x)
            else:
                detail = r.compression or ""
            size = "-" if r.kind == "view" else format_bytes(r.total_bytes)
            rows.append((r.name, r.kind, format_rows(r), size, detail))
        lines += _table(("relation", "kind", "rows", "size", "compression / notes"), rows)
        total = sum(r.total_bytes or 0 for r in relations)
        lines.append(f"  total on disk: {format_bytes(total)}")
        if any(r.kind == "continuous aggregate" for r in relations):
            lines.append(f"  continuous aggregates: {CAGG_NOTE}")

    if db.job_scheduler is not None:
        lines.append("")
        lines.append(f"policies (job scheduler {db.job_scheduler})")
        jobs = [
            (
                j.relation,
                j.policy,
                "-" if j.schedule_seconds is None else format_age(j.schedule_seconds),
                _ts(j.last_run_started_at),
                (j.last_status or "never ran") if j.enabled else "paused",
                f"{j.runs}/{j.failures}",
                _ts(j.next_start),
            )
            for j in report.policies
        ]
        lines += _table(
            ("relation", "policy", "every", "last run", "status", "runs/failed", "next run"), jobs
        )

    if report.replicas:
        lines.append("")
        lines.append("read replicas")
        lines += _table(
            ("replica", "state", "lag", "behind"),
            [
                (
                    r.name,
                    "ok" if r.healthy else (r.error or "unhealthy"),
                    "-" if r.lag_seconds is None else format_age(r.lag_seconds),
                    "-" if r.behind_bytes is None else format_bytes(int(max(0, r.behind_bytes))),
                )
                for r in report.replicas
            ],
        )

    lines.append("")
    if report.problems:
        for p in report.problems:
            lines.append(f"PROBLEM: {p}")
    lines.append(f"verdict: {'OK' if report.healthy else 'NOT OK'} (exit {report.exit_code})")
    return "\n".join(lines) + "\n"


def encode_json(report: Report) -> bytes:
    """The report as one JSON document (times RFC 3339, sizes in bytes, ages in seconds)."""
    return msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"
