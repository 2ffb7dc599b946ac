"""Migration 0002 on the running server: relations, columns, reader access, catalog facts."""

from __future__ import annotations

import importlib.util
import re
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from kalshibook.storage import migrate
from kalshibook.storage.candles import CANDLE_CHAIN

pytestmark = [pytest.mark.db, pytest.mark.both_editions]

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "versions" / "0002_candles.py"
NAMES = [name.removeprefix("market.") for name, _level in CANDLE_CHAIN]


def _columns(conn: psycopg.Connection, name: str) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'market' AND table_name = %s ORDER BY ordinal_position",
            (name,),
        ).fetchall()
    ]


def test_candle_relations_exist_with_the_same_columns_at_every_level(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        license_ = conn.execute("SELECT current_setting('timescaledb.license')").fetchone()
        caggs = conn.execute(
            "SELECT count(*) FROM timescaledb_information.continuous_aggregates"
        ).fetchone()
        kinds = dict(
            conn.execute(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'market' AND c.relname LIKE 'candles_%'"
            ).fetchall()
        )
        assert sorted(kinds) == sorted(NAMES)
        assert set(kinds.values()) == {"v"}  # a cagg's user view is a view too
        if license_ == ("apache",):
            assert caggs == (0,)
        for source in ("trades", "quotes", "stats"):
            cols = [_columns(conn, f"candles_{source}_{lvl}") for lvl in ("1m", "1h", "1d")]
            assert cols[0] == cols[1] == cols[2], source
            assert cols[0][:2] == [
                ("bucket", "timestamp with time zone"),
                ("market_ticker", "text"),
            ]
            assert all(t != "double precision" for _c, t in cols[0])  # exact numerics only


def test_aggregates_used_are_parallelisable_and_bucketing_is_immutable(db_url: str) -> None:
    """What TimescaleDB checks when creating a cagg, verified on this server's catalog."""
    spec = importlib.util.spec_from_file_location("migration_0002", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    mig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mig)

    calls: set[str] = set()
    for _name, _level, body in mig.CANDLE_RELATIONS:
        calls |= {c.lower() for c in re.findall(r"\b(\w+)\s*\(", body)}
    aggregates = calls - {"time_bucket"}
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT p.proname, bool_and(a.aggcombinefn <> 0) FROM pg_aggregate a "
            "JOIN pg_proc p ON p.oid = a.aggfnoid WHERE p.proname = ANY(%s) GROUP BY p.proname",
            (sorted(aggregates),),
        ).fetchall()
        assert dict(rows) == dict.fromkeys(aggregates, True)
        volatility = conn.execute(
            "SELECT provolatile FROM pg_proc WHERE oid = ANY(ARRAY["
            "'time_bucket(interval, timestamptz)'::regprocedure, "
            "'time_bucket(interval, timestamptz, text, timestamptz, interval)'::regprocedure])"
        ).fetchall()
        assert volatility == [("i",), ("i",)]


def test_every_function_and_operator_of_the_bodies_is_immutable(db_url: str) -> None:
    """Cagg creation refuses any mutable function ("only immutable functions supported in
    continuous aggregate view", tsl/src/continuous_aggs/create.c): each body becomes a temporary
    view whose rewrite-rule dependencies list the extension functions it uses (dependencies on
    built-in objects are not recorded, so the built-ins the bodies use are checked by name)."""
    spec = importlib.util.spec_from_file_location("migration_0002_volatility", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    mig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mig)
    with psycopg.connect(db_url) as conn:
        for name, _level, body in mig.CANDLE_RELATIONS:
            conn.execute(
                sql.SQL("CREATE TEMP VIEW {} AS ").format(sql.Identifier(f"vol_{name}"))
                + sql.SQL(body)  # a fixed constant of the migration, not input
            )
        rows = conn.execute(
            """
            SELECT DISTINCT p.oid::regprocedure::text, p.provolatile
            FROM pg_class v
            JOIN pg_rewrite r ON r.ev_class = v.oid
            JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
            LEFT JOIN pg_operator o
                   ON d.refclassid = 'pg_operator'::regclass AND o.oid = d.refobjid
            JOIN pg_proc p
              ON (d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid) OR p.oid = o.oprcode
            WHERE v.relpersistence = 't' AND v.relname LIKE 'vol\\_candles\\_%'
            """
        ).fetchall()
        builtin = conn.execute(
            """
            SELECT p.oid::regprocedure::text, p.provolatile FROM pg_proc p
            WHERE p.pronamespace = 'pg_catalog'::regnamespace
              AND (p.proname IN ('sum', 'min', 'max', 'count')
                   OR p.oid IN ('numeric_mul(numeric, numeric)'::regprocedure,
                                'texteq(text, text)'::regprocedure,
                                'int8(numeric)'::regprocedure))
            """
        ).fetchall()
        conn.rollback()
    used = dict(rows)
    assert any(f.startswith("time_bucket(") for f in used)  # the dependencies were found
    assert any(f.startswith("first(") for f in used)
    assert {f: v for f, v in used.items() if v != "i"} == {}
    # sum/min/max/count (every overload), numeric *, text =, ::bigint of a numeric
    assert len(builtin) > 10
    assert {f: v for f, v in builtin if v != "i"} == {}


@pytest.fixture
def reader_url(db_url: str):
    role = f"kb_test_candles_{uuid.uuid4().hex[:8]}"
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
    parts = urlsplit(db_url)
    yield urlunsplit((parts.scheme, f"{role}:pw@{parts.hostname}:{parts.port}", parts.path, "", ""))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_reader_role_reads_every_candle_relation(
    db_url: str, reader_url: str, edition: str
) -> None:
    """The reader reads every level (on the Community edition a level's real-time part calls
    ``cagg_watermark()`` of the level below, which the GRANTs of 0002 make possible) and can
    drop none (a continuous aggregate is dropped as a materialized view, a plain view as a view:
    both need ownership)."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            "INSERT INTO market.trades (ts, trade_id, market_ticker, yes_price, no_price, count, "
            "source, received_at) "
            "VALUES ('2026-03-08 12:00Z', %s, 'KXR', 0.4, 0.6, 2, 'ws', now())",
            (uuid.uuid4(),),
        )
    with psycopg.connect(reader_url, autocommit=True) as conn:
        for name in NAMES:
            conn.execute(sql.SQL("SELECT * FROM market.{} LIMIT 1").format(sql.Identifier(name)))
        row = conn.execute("SELECT bucket, volume FROM market.candles_trades_1d").fetchone()
        assert row is not None
        assert row[1] == 2
        kind = "MATERIALIZED VIEW" if edition == "community" else "VIEW"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"DROP {kind} market.candles_trades_1d")


def test_downgrade_to_0001_drops_the_candles_and_upgrade_restores_them(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    migrate.downgrade(empty_db_url, "0001")
    every = "SELECT count(*) FROM pg_class WHERE relname LIKE 'candles\\_%'"
    # the candle relations (views: a continuous aggregate's user view is one too), not their
    # indexes (0010)
    count = every + " AND relkind = 'v'"
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute(every).fetchone() == (0,)
        assert conn.execute("SELECT to_regclass('market.trades')").fetchone() != (None,)
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute(count).fetchone() == (len(NAMES),)


MAT_CHUNK_INTERVALS = """
SELECT c.view_name, d.time_interval
FROM timescaledb_information.continuous_aggregates c
JOIN timescaledb_information.dimensions d
  ON d.hypertable_schema = c.materialization_hypertable_schema
 AND d.hypertable_name = c.materialization_hypertable_name
WHERE c.view_schema = 'market'
"""


def test_hourly_and_daily_materialisations_have_larger_chunks(
    empty_db_url: str, edition: str
) -> None:
    """0008: the 1h and 1d levels get chunks of 30 days and a year (a year of 1d candles then
    spans one or two chunks instead of 38); the 1m level keeps TimescaleDB's default (10 x the
    source's 1-day chunks); a downgrade restores 10 days. Nothing to set on Apache (views)."""
    migrate.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        got = {str(r[0]): r[1] for r in conn.execute(MAT_CHUNK_INTERVALS).fetchall()}
    if edition != "community":
        assert got == {}
        return
    ten = timedelta(days=10)
    assert got == {
        name: {"1m": ten, "1h": timedelta(days=30), "1d": timedelta(days=365)}[name[-2:]]
        for name in NAMES
    }
    migrate.downgrade(empty_db_url, "0007")
    with psycopg.connect(empty_db_url) as conn:
        got = {str(r[0]): r[1] for r in conn.execute(MAT_CHUNK_INTERVALS).fetchall()}
    assert got == dict.fromkeys(NAMES, ten)
