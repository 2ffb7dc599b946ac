"""Migration 0012: a trade inserted again with microseconds into a compressed chunk is refused
(TimescaleDB checks a compressed chunk's unique key before the trigger truncates ``ts``: the copy
was stored twice), while the same insert into an uncompressed chunk keeps working as before."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

pytestmark = [pytest.mark.db, pytest.mark.both_editions]

T = datetime(2026, 3, 4, 10, 10, 5, 123000, tzinfo=UTC)
INSERT = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
VALUES (%s, %s, 'KXDUP', 0.42, 0.58, 1, %s, now())
ON CONFLICT DO NOTHING
"""
PAUSE_COMPRESSION = (
    "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
    "WHERE proc_name = 'policy_compression'"
)


def test_a_microsecond_copy_of_a_compressed_trade_is_refused(db_url: str, edition: str) -> None:
    stored, loose = uuid.uuid4(), uuid.uuid4()
    finer = T + timedelta(microseconds=456)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
        conn.execute(INSERT, (T, stored, "ws"))
        if edition == "community":
            conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('market.trades') c")
            with pytest.raises(psycopg.errors.UniqueViolation, match="stored already") as err:
                conn.execute(INSERT, (finer, stored, "rest"))
            assert "whole milliseconds" in str(err.value.diag.message_hint)
        else:  # no compression: the unique index sees the truncated copy
            conn.execute(INSERT, (finer, stored, "rest"))
        # in whole milliseconds ON CONFLICT applies; a new trade with microseconds goes in
        conn.execute(INSERT, (T, stored, "rest"))
        conn.execute(INSERT, (finer, loose, "rest"))
        rows = conn.execute(
            "SELECT trade_id, ts, created_time FROM market.trades ORDER BY trade_id"
        ).fetchall()
    assert sorted(rows) == sorted([(stored, T, T), (loose, T, finer)])


PARENT_INDEX_LOCKS = """
SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE l.pid = pg_backend_pid() AND c.relkind = 'i' AND c.relnamespace = 'market'::regnamespace
  AND c.relname LIKE 'trades%%'
"""


def test_a_microsecond_trade_into_an_uncompressed_chunk_does_not_plan_a_read(
    db_url: str,
) -> None:
    """Migration 0014: the stored-copy read is planned only for a row bound to a compressed chunk.
    Planning it opens the hypertable's own (parent) indexes, which the insert itself never does:
    0012's trigger, one expression, planned it for every row given with microseconds (~315 µs a
    row, growing with the chunks)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(PAUSE_COMPRESSION)
        conn.execute(INSERT, (T, uuid.uuid4(), "ws"))  # the chunk exists before the transaction
        with conn.transaction():
            conn.execute(INSERT, (T + timedelta(microseconds=7), uuid.uuid4(), "rest"))
            row = conn.execute(PARENT_INDEX_LOCKS).fetchone()
            assert row == (0,)
        assert conn.execute("SELECT count(*) FROM market.trades").fetchone() == (2,)
