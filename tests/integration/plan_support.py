"""Helpers for the plan tests: record the statements a read runs, then count the chunks of given
hypertables their plans hold (EXPLAIN on the API's connection options)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import psycopg
from psycopg import AsyncCursor, sql

from kalshibook.api.app import CONNECTION_OPTIONS

HYPERTABLE_IDS = """
SELECT id FROM _timescaledb_catalog.hypertable
WHERE schema_name = 'market' AND table_name = ANY(%(tables)s)
"""


class Recorder(AsyncCursor[Any]):
    """A cursor that remembers every statement it runs (the connection's cursor_factory)."""

    log: ClassVar[list[tuple[Any, Any]]] = []

    async def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        Recorder.log.append((query, params))
        return await super().execute(query, params, **kw)


def walk(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from walk(child)


def explain(conn: psycopg.Connection[Any], query: Any, params: Any, *, analyze: bool) -> Any:
    """The JSON plan of one recorded statement."""
    statement = query if isinstance(query, sql.Composable) else sql.SQL(query)
    head = "EXPLAIN (ANALYZE, FORMAT JSON) " if analyze else "EXPLAIN (FORMAT JSON) "
    [[doc]] = conn.execute(sql.SQL(head) + statement, params).fetchall()
    return (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]


def chunks_planned(url: str, statements: list[tuple[Any, Any]], tables: list[str]) -> int:
    """Chunks of the hypertables ``market.<tables>`` in the plans of these statements."""
    count = 0
    with psycopg.connect(url, autocommit=True, options=CONNECTION_OPTIONS) as conn:
        ids = conn.execute(HYPERTABLE_IDS, {"tables": tables}).fetchall()
        prefixes = tuple(f"_hyper_{i}_" for (i,) in ids)
        for query, params in statements:
            plan = explain(conn, query, params, analyze=False)
            # distinct chunks: a partially compressed chunk is scanned twice (its compressed
            # part and its heap), and is still one chunk of the plan
            count += len(
                {
                    node["Relation Name"]
                    for node in walk(plan)
                    if node.get("Relation Name", "").startswith(prefixes)
                }
            )
    return count


PAUSE_COMPRESSION = """
SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs
WHERE proc_name = 'policy_compression'
"""
"""A fixture's history is older than every compress-after, and a fresh database's scheduler runs
its policies within seconds: a chunk compressed between two of its inserts is left partially
compressed, which changes the plans the tests count. Run this before inserting."""
