"""Read-only SQL users: read market data, write nothing, see nothing private, time out."""

from __future__ import annotations

import threading
import time
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

from kalshibook import cli
from kalshibook.errors import InvalidInput, UnknownObject
from kalshibook.storage import migrate
from kalshibook.storage.reader_limits import run_watchdog
from kalshibook.storage.sql_users import create_sql_user, drop_sql_user, scram_verifier

pytestmark = [pytest.mark.db, pytest.mark.both_editions]


def login_url(db_url: str, role: str, password: str) -> str:
    parts = urlsplit(db_url)
    netloc = f"{role}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@pytest.fixture
def role_name(db_url: str):
    name = f"kb_t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(db_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        if exists:
            drop_sql_user(conn, name)


def test_a_sql_users_session_starts_without_jit_after_migrate(db_url: str, role_name: str) -> None:
    """docs/sql.md: JIT is off for SQL users by default, from the database's own setting that
    ``kalshibook migrate`` makes (kalshibook.storage.database_defaults); a session may turn it
    on. (A test database is a copy of a migrated template, and CREATE DATABASE does not copy
    database settings: the migrate below makes it.)"""
    with psycopg.connect(db_url, autocommit=True) as admin:
        user = create_sql_user(admin, role_name)
    migrate.upgrade(db_url)
    with psycopg.connect(login_url(db_url, role_name, user.password), autocommit=True) as conn:
        assert conn.execute("SHOW jit").fetchone() == ("off",)
        conn.execute("SET jit = on")
        assert conn.execute("SHOW jit").fetchone() == ("on",)


def test_sql_user_reads_market_only_and_times_out(db_url: str, role_name: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("INSERT INTO market.series (ticker, raw) VALUES ('KXHIGHNY', '{}'::jsonb)")
        admin.execute(
            "INSERT INTO private.api_keys (name, prefix, key_hash, credits)"
            " VALUES ('x', 'abcdef12', '\\x00', 1)"
        )
        user = create_sql_user(admin, role_name, statement_timeout="300ms", connection_limit=3)
        assert user.password not in repr(user)
        settings = dict(
            admin.execute(
                "SELECT split_part(c, '=', 1), split_part(c, '=', 2)"
                " FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole,"
                " unnest(s.setconfig) c WHERE r.rolname = %s",
                (role_name,),
            ).fetchall()
        )
        assert settings["default_transaction_read_only"] == "on"
        assert settings["statement_timeout"] == "300ms"
        limit = admin.execute(
            "SELECT rolconnlimit, rolcanlogin, rolpassword LIKE 'SCRAM-SHA-256$%%'"
            " FROM pg_authid WHERE rolname = %s",
            (role_name,),
        ).fetchone()
        assert limit == (3, True, True)

    with psycopg.connect(login_url(db_url, role_name, user.password), autocommit=True) as conn:
        assert conn.execute("SELECT ticker FROM market.series").fetchall() == [("KXHIGHNY",)]
        assert conn.execute("SELECT count(*) FROM market.trades").fetchone() == (0,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO market.series (ticker, raw) VALUES ('X', '{}')")
        # even with read-only switched off for the session, privileges forbid writing
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO market.series (ticker, raw) VALUES ('X', '{}')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM market.series")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM private.api_keys")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE market.mine (x int)")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(2)")
        conn.execute("SELECT pg_sleep(0.05)")  # below the timeout is fine


def test_sql_user_validation_and_drop(db_url: str, role_name: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for bad in ("Robert'); DROP TABLE x;--", "1abc", "a" * 64, "pg_admin", "postgres", ""):
            with pytest.raises(InvalidInput):
                create_sql_user(conn, bad)
        with pytest.raises(InvalidInput):
            create_sql_user(conn, role_name, statement_timeout="forever")
        with pytest.raises(InvalidInput):
            create_sql_user(conn, role_name, connection_limit=0)
        create_sql_user(conn, role_name)
        with pytest.raises(InvalidInput):
            create_sql_user(conn, role_name)  # exists
        with pytest.raises(InvalidInput):
            drop_sql_user(conn, "kalshibook_reader")  # not a SQL user
        drop_sql_user(conn, role_name)
        assert (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role_name,)).fetchone()
            is None
        )
        with pytest.raises(UnknownObject):
            drop_sql_user(conn, role_name)


def test_sql_user_cli(db_url: str, role_name: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", db_url)
    assert cli.main(["sql-user", "create", role_name, "--statement-timeout", "2s"]) == 0
    out = capsys.readouterr().out
    password = next(
        line.split(": ", 1)[1] for line in out.splitlines() if "password (shown once)" in line
    )
    with psycopg.connect(login_url(db_url, role_name, password)) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("2s",)
    assert cli.main(["sql-user", "create", "BAD NAME"]) == 1
    assert "invalid role name" in capsys.readouterr().err
    assert cli.main(["sql-user", "drop", role_name]) == 0


def test_scram_verifier_is_accepted_by_the_server_format() -> None:
    v = scram_verifier("secret", salt=b"0123456789abcdef")
    assert v.startswith("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$")
    assert "secret" not in v


# -- limits a reader cannot lift (issue 16, point 3) ----------------------------------------------


def _edition(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_setting('timescaledb.license')").fetchone()
    assert row is not None
    return str(row[0])


def test_reader_cannot_lift_its_disk_temp_table_or_connection_limits(
    db_url: str, role_name: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        user = create_sql_user(
            admin, role_name, connection_limit=2, temp_file_limit="1MB", statement_timeout="1min"
        )
    url = login_url(db_url, role_name, user.password)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SHOW temp_file_limit").fetchone() == ("1MB",)
        conn.execute("SET default_transaction_read_only = off")  # as an attacker would
        # a superuser-only setting: neither for the session nor as the role's default
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET temp_file_limit = -1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"ALTER ROLE {role_name} SET temp_file_limit = -1")
        # a sort spilling more than the limit fails instead of filling the disk
        conn.execute("SET work_mem = '64kB'")
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded):
            conn.execute("SELECT md5(g::text) FROM generate_series(1, 300000) g ORDER BY 1")
        # no temporary tables, even with read-only transactions switched off
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TEMP TABLE fill (x text)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.fill (x text)")
        # nor a larger connection limit
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"ALTER ROLE {role_name} CONNECTION LIMIT -1")
        with (
            psycopg.connect(url),
            pytest.raises(psycopg.OperationalError, match="too many connections"),
        ):
            psycopg.connect(url).close()


def _wait_terminated(conn: psycopg.Connection, sql: str, seconds: float) -> float:
    """Run ``sql`` on ``conn``; the seconds until the server ended the session."""
    began = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        conn.execute(sql)
    elapsed = time.monotonic() - began
    assert elapsed < seconds
    return elapsed


def test_reader_that_lifts_its_timeouts_is_stopped_by_the_watchdog(
    db_url: str, role_name: str
) -> None:
    """``statement_timeout`` and ``idle_in_transaction_session_timeout`` are user-settable; the
    watchdog ends the session anyway. On the Community edition nothing but its TimescaleDB job
    runs it; on the Apache edition the test runs it like the operator's cron would."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        user = create_sql_user(admin, role_name, statement_timeout="1s")
        admin.execute(f"ALTER ROLE {role_name} SET idle_in_transaction_session_timeout = '1s'")
        scheduled = _edition(admin) == "timescale"
        if scheduled:
            # a test database is cloned from a template, so TimescaleDB's launcher would only
            # notice it at its next poll (up to a minute): start its job scheduler now
            admin.execute("SELECT _timescaledb_functions.start_background_workers()")
    url = login_url(db_url, role_name, user.password)
    stop = threading.Event()

    def cron() -> None:
        with psycopg.connect(db_url, autocommit=True) as admin:
            while not stop.wait(1.0):
                run_watchdog(admin)

    runner = None if scheduled else threading.Thread(target=cron)
    if runner is not None:
        runner.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET statement_timeout = 0")  # allowed: the watchdog is the limit
            _wait_terminated(conn, "SELECT pg_sleep(60)", 30.0)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET idle_in_transaction_session_timeout = 0")
            conn.execute("BEGIN")
            conn.execute("SELECT 1")  # now idle in a transaction, past 1 s + grace soon
            pid = conn.info.backend_pid
            deadline = time.monotonic() + 30.0
            with psycopg.connect(db_url, autocommit=True) as admin:
                while time.monotonic() < deadline:
                    alive = admin.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)
                    ).fetchone()
                    if alive is None:
                        break
                    time.sleep(0.5)
                else:
                    pytest.fail("an idle transaction outlived the reader's idle timeout")
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
    finally:
        stop.set()
        if runner is not None:
            runner.join()


def test_watchdog_leaves_other_sessions_alone(db_url: str, role_name: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        create_sql_user(admin, role_name, statement_timeout="1s")
        with psycopg.connect(db_url, autocommit=True) as other:
            done: list[object] = []
            t = threading.Thread(
                target=lambda: done.append(other.execute("SELECT pg_sleep(4)").fetchone())
            )
            t.start()
            time.sleep(3.5)
            assert run_watchdog(admin) == 0  # an owner's 3.5 s statement is not a reader's
            t.join()
            assert done == [("",)]
