"""Foundation: migrations, hypertables, constraints, the read-only role, `kalshibook migrate`."""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_support import run_cli
from psycopg import sql

from kalshibook.storage import migrate

pytestmark = [pytest.mark.db, pytest.mark.both_editions]

MARKET_TABLES = {
    "series",
    "events",
    "markets",
    "settlements",
    "trades",
    "orderbook_snapshots",
    "orderbook_deltas",
    "quotes",
    "market_stats",
    "lifecycle_events",
    "book_gaps",
}
HYPERTABLES = {
    "trades": timedelta(days=1),
    "orderbook_snapshots": timedelta(days=1),
    "orderbook_deltas": timedelta(hours=6),
    "quotes": timedelta(days=1),
    "market_stats": timedelta(days=1),
    "lifecycle_events": timedelta(days=7),
    "book_gaps": timedelta(days=30),
}

SCHEMA_FINGERPRINT = [
    """SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default
       FROM information_schema.columns WHERE table_schema IN ('market', 'private')
       ORDER BY 1, 2, ordinal_position""",
    """SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
       WHERE schemaname IN ('market', 'private') ORDER BY 1, 2, 3""",
    """SELECT n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid)
       FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname IN ('market', 'private') ORDER BY 1, 2, 3""",
    """SELECT table_schema, table_name, grantee, privilege_type
       FROM information_schema.role_table_grants
       WHERE table_schema IN ('market', 'private') AND grantee <> 'postgres' ORDER BY 1, 2, 3, 4""",
    """SELECT h.hypertable_schema, h.hypertable_name, d.column_name, d.time_interval
       FROM timescaledb_information.hypertables h
       JOIN timescaledb_information.dimensions d USING (hypertable_schema, hypertable_name)
       ORDER BY 1, 2""",
    """SELECT n.nspname, c.relname, c.relkind FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname IN ('market', 'private') AND c.relkind IN ('r', 'v', 'm', 'S')
       ORDER BY 1, 2""",
    """SELECT defaclnamespace::regnamespace::text, defaclobjtype, defaclacl::text
       FROM pg_default_acl ORDER BY 1, 2""",
]


def fingerprint(url: str) -> list[list[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        return [conn.execute(q).fetchall() for q in SCHEMA_FINGERPRINT]


def test_up_down_up_gives_the_same_schema(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    first = fingerprint(empty_db_url)
    assert {r[1] for r in first[5] if r[0] == "market"} >= MARKET_TABLES
    migrate.downgrade(empty_db_url, "base")
    with psycopg.connect(empty_db_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('market', 'private')"
        ).fetchone()
    assert left == (0,)
    migrate.upgrade(empty_db_url)
    assert fingerprint(empty_db_url) == first


def test_every_hypertable_has_its_chunk_interval(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """SELECT h.hypertable_name, d.time_interval
               FROM timescaledb_information.hypertables h
               JOIN timescaledb_information.dimensions d USING (hypertable_schema, hypertable_name)
               WHERE h.hypertable_schema = 'market'"""
        ).fetchall()
        assert dict(rows) == HYPERTABLES
        for table in HYPERTABLES:
            idx = conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'market' AND tablename = %s",
                (table,),
            ).fetchall()
            time_col = "from_ts" if table == "book_gaps" else "ts"
            # trades: the index also holds the exchange order inside a millisecond (0005)
            suffix = ", exchange_seq DESC)" if table == "trades" else ")"
            assert any(f"(market_ticker, {time_col} DESC{suffix}" in r[0] for r in idx), table


INSERT_TRADE = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count,
                           taker_outcome_side, taker_book_side, source, received_at)
VALUES (%s, %s, 'KXTEST-1', %s, %s, %s, 'yes', 'bid', %s, now())
"""


def test_constraints_reject_bad_rows(db_url: str) -> None:
    ts = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(INSERT_TRADE, (ts, uuid.uuid4(), Decimal("1.01"), Decimal("0"), 1, "ws"))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(INSERT_TRADE, (ts, uuid.uuid4(), Decimal("-0.01"), Decimal("1"), 1, "ws"))
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute(INSERT_TRADE, (ts, uuid.uuid4(), None, Decimal("0.5"), 1, "ws"))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO market.quotes (ts, market_ticker, received_at, yes_bid) "
                "VALUES (now(), 'M', now(), 2)"
            )
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute(
                "INSERT INTO market.markets (ticker, event_ticker, status, raw) "
                "VALUES ('M', NULL, 'active', '{}')"
            )
        # the same trade from WS (ms) and REST (µs) is one trade
        trade_id = uuid.uuid4()
        conn.execute(INSERT_TRADE, (ts, trade_id, Decimal("0.42"), Decimal("0.58"), 3, "ws"))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(INSERT_TRADE, (ts, trade_id, Decimal("0.42"), Decimal("0.58"), 3, "ws"))
        rest_ts = ts + timedelta(microseconds=456)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                INSERT_TRADE, (rest_ts, trade_id, Decimal("0.42"), Decimal("0.58"), 3, "rest")
            )
        # ON CONFLICT DO NOTHING (the writer's dedupe path) keeps exactly one row
        conn.execute(
            INSERT_TRADE + " ON CONFLICT DO NOTHING",
            (rest_ts, trade_id, Decimal("0.42"), Decimal("0.58"), 3, "rest"),
        )
        rows = conn.execute(
            "SELECT ts, source, yes_price FROM market.trades WHERE trade_id = %s", (trade_id,)
        ).fetchall()
        assert rows == [(ts, "ws", Decimal("0.42"))]


@pytest.fixture
def reader_login(db_url: str) -> str:
    role = f"kb_test_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw' IN ROLE kalshibook_reader").format(
                sql.Identifier(role)
            )
        )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(role)
            )
        )
    return role


def _as(db_url: str, role: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(db_url)
    netloc = f"{role}:pw@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def test_reader_role_reads_market_data_only(db_url: str, reader_login: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            INSERT_TRADE,
            (datetime.now(UTC), uuid.uuid4(), Decimal("0.3"), Decimal("0.7"), 1, "ws"),
        )
    try:
        with psycopg.connect(_as(db_url, reader_login), autocommit=True) as conn:
            for table in sorted(MARKET_TABLES):
                conn.execute(
                    sql.SQL("SELECT * FROM market.{} LIMIT 1").format(sql.Identifier(table))
                )
            assert conn.execute("SELECT count(*) FROM market.trades").fetchone() == (1,)
            denied = [
                "INSERT INTO market.series (ticker, raw) VALUES ('X', '{}')",
                "UPDATE market.trades SET count = 2",
                "DELETE FROM market.trades",
                "TRUNCATE market.trades",
                "CREATE TABLE market.evil (x int)",
                "CREATE TABLE public.evil (x int)",
                "SELECT * FROM private.api_keys",
                "SELECT * FROM private.api_usage",
            ]
            for stmt in denied:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(stmt)
        # a table created later by the owner (as a later migration would) is readable too
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute("CREATE TABLE market.later_table (x int)")
            admin.execute("CREATE VIEW market.later_view AS SELECT 1 AS x")
        with psycopg.connect(_as(db_url, reader_login), autocommit=True) as conn:
            conn.execute("SELECT * FROM market.later_table")
            conn.execute("SELECT * FROM market.later_view")
    finally:
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(reader_login)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(reader_login)))


@pytest.mark.parametrize(
    ("env_url", "expected"),
    [
        (None, "KALSHIBOOK_DATABASE_URL is not set"),
        ("postgresql://nobody:x@127.0.0.1:1/nothing", "cannot connect"),
        ("not a url at all", "cannot connect"),
    ],
)
def test_migrate_cli_reports_bad_url_in_one_line(env_url: str | None, expected: str) -> None:
    proc = run_cli("migrate", url=env_url)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]
    assert "x@" not in lines[0]  # the password is never echoed


@pytest.fixture
def server_without_timescaledb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster that does not preload timescaledb."""
    import os
    import shutil
    import socket

    bindir = Path("/usr/lib/postgresql/15/bin")
    if not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries not installed")
    root = os.geteuid() == 0
    base = Path(tempfile.gettempdir()) / f"kb_plain_pg_{uuid.uuid4().hex[:8]}"
    base.mkdir()
    data = base / "data"

    def as_owner(*cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if root else list(cmd)
        subprocess.run(full, check=True, capture_output=True, cwd="/")

    if root:
        shutil.chown(base, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_owner(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
    as_owner(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(base / "log"),
        "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
        "start",
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        as_owner(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_migrate_cli_reports_a_server_without_timescaledb(server_without_timescaledb: str) -> None:
    proc = run_cli("migrate", url=server_without_timescaledb)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "timescaledb" in lines[0]
    with psycopg.connect(server_without_timescaledb) as conn:  # nothing was created
        assert conn.execute("SELECT to_regclass('public.alembic_version')").fetchone() == (None,)


def _hold_lock_for(url: str, relation: str, seconds: float) -> threading.Thread:
    """Hold ``relation`` exclusively for ``seconds`` (as a running policy job holds what it
    refreshes or compresses)."""
    held = threading.Event()

    def hold() -> None:
        with psycopg.connect(url) as conn:
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(*relation.split("."))
                )
            )
            held.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    return thread


def test_downgrade_and_upgrade_wait_out_a_lock_held_by_a_job(empty_db_url: str) -> None:
    """Migrations give up on a lock after 500 ms and run the revision again: a job holding a
    relation for longer than that (CI saw a policy refresh) neither fails the downgrade nor the
    upgrade."""
    migrate.upgrade(empty_db_url)
    holder = _hold_lock_for(empty_db_url, "market.trades", 1.5)
    try:
        migrate.downgrade(empty_db_url, "base")
    finally:
        holder.join()
    migrate.upgrade(empty_db_url, "0001")
    holder = _hold_lock_for(empty_db_url, "market.trades", 1.5)
    try:
        migrate.upgrade(empty_db_url)
    finally:
        holder.join()
    assert migrate.current_revision(empty_db_url) == migrate.head_revision()


def test_migrate_turns_jit_off_for_the_database_and_keeps_an_operators_choice(
    empty_db_url: str,
) -> None:
    """Every session of the database starts without JIT after `kalshibook migrate`
    (kalshibook.storage.database_defaults): the collector's, exports', the policy jobs' and any
    other client's; a database whose jit an operator set keeps that value."""
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SHOW jit").fetchone() == ("on",)  # PostgreSQL's default
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert conn.execute("SHOW jit").fetchone() == ("off",)
        name = sql.Identifier(conn.info.dbname)
        conn.execute(sql.SQL("ALTER DATABASE {} SET jit = on").format(name))
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SHOW jit").fetchone() == ("on",)


def test_downgrade_keeps_the_reader_role_another_database_is_granting_to(
    empty_db_url: str, edition_databases: Any
) -> None:
    """``kalshibook_reader`` is cluster-wide: while a migration of another database holds a grant
    to it (an open transaction), a downgrade to base keeps the role instead of failing on its lock
    after every retry (CI saw it: two migration tests on two databases at once)."""
    migrate.upgrade(empty_db_url)
    with edition_databases.database() as other, psycopg.connect(other) as conn:
        conn.execute("CREATE TABLE public.granted (x int)")
        conn.execute("GRANT SELECT ON public.granted TO kalshibook_reader")  # locks the role
        migrate.downgrade(empty_db_url, "base")
        conn.rollback()
    assert migrate.current_revision(empty_db_url) is None
    with psycopg.connect(empty_db_url) as check:
        kept = check.execute("SELECT 1 FROM pg_roles WHERE rolname = 'kalshibook_reader'")
        assert kept.fetchone() == (1,)


TRADE_AT_HOUR = """
INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, source,
                           received_at)
VALUES (%s, gen_random_uuid(), %s, 0.5, 0.5, 1, 'ws', now())
"""
WAITING = """
SELECT count(*) FROM pg_locks
WHERE NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
"""Lock requests waiting in this database (the migration's, behind the writer's transaction)."""
WITHOUT_DAY = """
SELECT count(*) FROM market.trades AS t
WHERE NOT EXISTS (SELECT FROM market.trade_days AS d
                  WHERE d.market_ticker = t.market_ticker AND d.source = t.source
                    AND d.first_hour <= t.ts AND d.end_hour > t.ts)
"""


def test_0013_counts_a_trade_committed_while_it_fills_the_trade_days(empty_db_url: str) -> None:
    """A writer's transaction open when revision 0013 starts (the collector keeps writing while
    `kalshibook migrate` runs) commits its trade after the fill would have read the table: the
    revision locks the trades against writes, waits for it, and the trade has its day."""
    migrate.upgrade(empty_db_url, "0012")
    at = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(TRADE_AT_HOUR, (at, "BEFORE"))
    opened, migrated = threading.Event(), threading.Event()

    def writer() -> None:
        """Commits once the migration waits for its lock, or has finished without one."""
        with psycopg.connect(empty_db_url) as conn, psycopg.connect(empty_db_url) as watch:
            conn.execute(TRADE_AT_HOUR, (at + timedelta(hours=5), "DURING"))
            opened.set()
            while not migrated.is_set() and watch.execute(WAITING).fetchone() == (0,):
                watch.rollback()
                time.sleep(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert opened.wait(10)
        migrate.upgrade(empty_db_url)
    finally:
        migrated.set()
        thread.join()
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM market.trades").fetchone() == (2,)
        assert conn.execute(WITHOUT_DAY).fetchone() == (0,)
