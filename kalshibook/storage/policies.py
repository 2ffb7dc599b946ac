"""Compression and retention policies, reconciled with the operator's settings.

Migration 0004 enables compression (Community edition); *when* chunks are compressed or dropped
is policy, and follows :class:`~kalshibook.settings.StorageSettings`. :func:`apply_policies`
runs after every ``kalshibook migrate``: for each relation it adds the policy a setting asks for,
replaces one whose interval differs, and removes one a setting turned off (0). Idempotent. On the
Apache edition (no compression, no job scheduler) it does nothing and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from kalshibook.settings import StorageSettings, env_var

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Policy:
    relation: str  # hypertable or continuous aggregate
    kind: str  # "compression" or "retention"
    setting: str  # StorageSettings field (days; 0 = no policy)


_CANDLE_SOURCES = ("trades", "quotes", "stats")
POLICIES: tuple[Policy, ...] = (
    Policy("market.trades", "compression", "trades_compress_after_days"),
    Policy("market.quotes", "compression", "quotes_compress_after_days"),
    Policy("market.market_stats", "compression", "market_stats_compress_after_days"),
    Policy("market.orderbook_deltas", "compression", "orderbook_deltas_compress_after_days"),
    Policy("market.orderbook_snapshots", "compression", "orderbook_snapshots_compress_after_days"),
    Policy("market.lifecycle_events", "compression", "lifecycle_events_compress_after_days"),
    *(
        Policy(f"market.candles_{src}_{lvl}", "compression", f"candles_{lvl}_compress_after_days")
        for src in _CANDLE_SOURCES
        for lvl in ("1m", "1h")
    ),
    Policy("market.orderbook_deltas", "retention", "orderbook_deltas_retention_days"),
    Policy("market.orderbook_snapshots", "retention", "orderbook_snapshots_retention_days"),
    Policy("market.quotes", "retention", "quotes_retention_days"),
    Policy("market.market_stats", "retention", "market_stats_retention_days"),
)

EDITION = "SELECT current_setting('timescaledb.license', true)"
# The policy job of one relation and kind, with its interval (compress_after / drop_after).
# A cagg's jobs are registered on its materialisation hypertable.
CURRENT_POLICY = """
SELECT j.job_id, coalesce(j.config ->> 'compress_after', j.config ->> 'drop_after')::interval
FROM timescaledb_information.jobs j
WHERE j.proc_name = %(proc)s
  AND format('%%I.%%I', j.hypertable_schema, j.hypertable_name) = coalesce(
      (SELECT format('%%I.%%I', materialization_hypertable_schema,
                     materialization_hypertable_name)
       FROM timescaledb_information.continuous_aggregates
       WHERE format('%%I.%%I', view_schema, view_name) = %(relation)s),
      %(relation)s)
"""
PROC = {"compression": "policy_compression", "retention": "policy_retention"}
ADD = {
    "compression": "SELECT add_compression_policy(%(relation)s::regclass, "
    "compress_after => %(after)s::interval)",
    "retention": "SELECT add_retention_policy(%(relation)s::regclass, "
    "drop_after => %(after)s::interval)",
}
REMOVE = {
    "compression": "SELECT remove_compression_policy(%(relation)s::regclass, if_exists => true)",
    "retention": "SELECT remove_retention_policy(%(relation)s::regclass, if_exists => true)",
}


def apply_policies(
    conn: psycopg.Connection[tuple[object, ...]], storage: StorageSettings
) -> list[str]:
    """Make the policies match ``storage``; one line per change made (empty when none)."""
    row = conn.execute(EDITION).fetchone()
    if row is None or row[0] != "timescale":
        retained = [
            p.setting
            for p in POLICIES
            if p.kind == "retention" and float(getattr(storage, p.setting)) > 0
        ]
        if retained:  # asked for, and not possible here: said loudly
            log.warning(
                "Apache edition: no retention policies; %s not applied (TimescaleDB's policies "
                "are Community features: drop old chunks with drop_chunks() from cron instead)",
                ", ".join(env_var("storage", f) for f in retained),
            )
        else:
            log.info("Apache edition: no compression or retention policies")
        return []
    changes: list[str] = []
    for policy in POLICIES:
        days = float(getattr(storage, policy.setting))
        want = timedelta(days=days) if days > 0 else None
        args = {"proc": PROC[policy.kind], "relation": policy.relation}
        current = conn.execute(CURRENT_POLICY, args).fetchone()
        have = current[1] if current is not None else None
        if have == want:
            continue
        with conn.transaction():
            if current is not None:
                conn.execute(REMOVE[policy.kind], args)
            if want is not None:
                conn.execute(ADD[policy.kind], {**args, "after": want})
        change = f"{policy.kind} policy of {policy.relation}: {_days(have)} -> {_days(want)}"
        log.info("%s", change)
        changes.append(change)
    return changes


def _days(value: object) -> str:
    if not isinstance(value, timedelta):
        return "none"
    return f"{value.total_seconds() / 86400:g} days"
