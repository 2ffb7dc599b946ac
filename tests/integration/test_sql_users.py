"""Read-only SQL users: read market data, write nothing, see nothing private, time out."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from kalshibook import cli
from kalshibook.errors import InvalidInput, UnknownObject
from kalshibook.storage import migrate
from kalshibook.storage.reader_limits import (
    check_watchdog_privileges,
    harden_readers,
    revoke_job_scheduling,
    revoke_large_object_writes,
    run_watchdog,
)
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


SCHEDULED_DEADLINE = 75.0
LONG_SLEEP = "SELECT pg_sleep(85)"
"""Longer than SCHEDULED_DEADLINE: only the watchdog ends it in time."""
"""Seconds a test waits for the scheduled watchdog job (Community). A pass ends a session 1 s +
GRACE past its limit, every 5 s, once TimescaleDB launches the job; with the cluster's background
workers taken (the other xdist worker's fresh databases start their due jobs at once) a failed
launch is retried after 2 + rand(2^n - 1) s, up to a minute."""


def _wait_statement_older_than(admin: psycopg.Connection, pid: int, seconds: float) -> None:
    """Until backend ``pid``'s statement has been running for more than ``seconds``, or has
    ended after it started (a scheduled watchdog pass may end it first). A thread that starts it
    may be late on a loaded machine: a fixed sleep was not enough."""
    deadline = time.monotonic() + 30.0
    started = False
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT state = 'active', now() - query_start > make_interval(secs => %s)"
            " FROM pg_stat_activity WHERE pid = %s",
            (seconds, pid),
        ).fetchone()
        if row is not None and row[0]:
            if row[1]:
                return
            started = True
        elif started:
            return  # ended by someone else
        time.sleep(0.1)
    pytest.fail(f"backend {pid} never ran a statement for {seconds} s")


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
        user = create_sql_user(admin, role_name, statement_timeout="1s", idle_timeout="1s")
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
            _wait_terminated(conn, LONG_SLEEP, SCHEDULED_DEADLINE)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET idle_in_transaction_session_timeout = 0")
            conn.execute("BEGIN")
            conn.execute("SELECT 1")  # now idle in a transaction, past 1 s + grace soon
            pid = conn.info.backend_pid
            deadline = time.monotonic() + SCHEDULED_DEADLINE
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


# -- limits a reader cannot change by altering its own role, jobs, large objects, other DBs -------


@pytest.fixture
def other_role_name(db_url: str) -> Iterator[str]:
    name = f"kb_t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(db_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            drop_sql_user(conn, name)


@contextmanager
def watchdog_running(db_url: str) -> Iterator[bool]:
    """The watchdog as in production: its TimescaleDB job on the Community edition (the test
    database's scheduler started now), else a loop like the operator's cron; whether scheduled."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        scheduled = _edition(admin) == "timescale"
        if scheduled:
            admin.execute("SELECT _timescaledb_functions.start_background_workers()")
    stop = threading.Event()

    def cron() -> None:
        with psycopg.connect(db_url, autocommit=True) as admin:
            while not stop.wait(1.0):
                run_watchdog(admin)

    runner = None if scheduled else threading.Thread(target=cron)
    if runner is not None:
        runner.start()
    try:
        yield scheduled
    finally:
        stop.set()
        if runner is not None:
            runner.join()


def _as_reader_in_a_write_transaction(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("BEGIN READ WRITE")
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")


def test_reader_that_alters_its_own_role_timeouts_is_still_stopped(
    db_url: str, role_name: str
) -> None:
    """Any role may ``ALTER ROLE`` itself ``SET`` a user-settable parameter: the watchdog goes by
    the limits given at ``sql-user create`` (private.reader_limits), not by the role's settings."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        user = create_sql_user(admin, role_name, statement_timeout="1s", idle_timeout="1s")
    url = login_url(db_url, role_name, user.password)
    _as_reader_in_a_write_transaction(
        url,
        f"ALTER ROLE {role_name} SET statement_timeout = '100h'",
        f"ALTER ROLE {role_name} SET idle_in_transaction_session_timeout = 0",
    )
    with psycopg.connect(url, autocommit=True) as conn:  # the escape PostgreSQL allows
        assert conn.execute("SHOW statement_timeout").fetchone() == ("100h",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("0",)
    with watchdog_running(db_url):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET statement_timeout = 0")
            _wait_terminated(conn, LONG_SLEEP, SCHEDULED_DEADLINE)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("BEGIN")
            conn.execute("SELECT 1")  # idle in a transaction from now on
            began = time.monotonic()
            with psycopg.connect(db_url, autocommit=True) as admin:
                while time.monotonic() - began < SCHEDULED_DEADLINE:
                    alive = admin.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (conn.info.backend_pid,)
                    ).fetchone()
                    if alive is None:
                        break
                    time.sleep(0.5)
                else:
                    pytest.fail("an idle transaction outlived the login's configured idle timeout")
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")


def _sleep_in_thread(
    conn: psycopg.Connection, seconds: float
) -> tuple[threading.Thread, list[BaseException]]:
    """``pg_sleep`` on ``conn`` in a thread, without a statement timeout; the error it ended
    with lands in the list."""
    conn.execute("SET statement_timeout = 0")
    ended: list[BaseException] = []

    def sleep() -> None:
        try:
            conn.execute("SELECT pg_sleep(%s)", (seconds,))
        except psycopg.Error as exc:
            ended.append(exc)

    t = threading.Thread(target=sleep)
    t.start()
    return t, ended


def test_an_odd_role_setting_of_one_login_does_not_stop_the_watchdog(
    db_url: str, role_name: str, other_role_name: str
) -> None:
    """``'1e3'`` is a valid ``statement_timeout`` (1 s) but no interval: the watchdog, which read
    the role settings as intervals, failed on every pass while such a login ran a statement, so
    no reader's limits held (its own statement ran on)."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        odd = create_sql_user(admin, other_role_name)
        user = create_sql_user(admin, role_name, statement_timeout="1s")
        scheduled = _edition(admin) == "timescale"
    odd_url = login_url(db_url, other_role_name, odd.password)
    _as_reader_in_a_write_transaction(
        odd_url, f"ALTER ROLE {other_role_name} SET statement_timeout = '1e3'"
    )
    with (
        psycopg.connect(odd_url, autocommit=True) as odd_conn,
        psycopg.connect(login_url(db_url, role_name, user.password), autocommit=True) as conn,
        psycopg.connect(db_url, autocommit=True) as admin,
    ):
        odd_sleep, _ = _sleep_in_thread(odd_conn, 25)  # within its limits: 30 s, the default
        sleep, ended = _sleep_in_thread(conn, 20)
        try:
            _wait_statement_older_than(admin, conn.info.backend_pid, 3.2)  # 1 s + 2 s of grace
            # a pass that fails raises here; it or the scheduled job (Community) ends the sleep
            run_watchdog(admin)
            sleep.join(10.0)
            assert ended
            if scheduled:  # the scheduled passes succeed too
                job = admin.execute(
                    "SELECT job_id FROM timescaledb_information.jobs"
                    " WHERE proc_schema = 'private' AND proc_name = 'reader_watchdog_job'"
                ).fetchone()
                assert job is not None
                admin.execute("SELECT _timescaledb_functions.start_background_workers()")
                deadline = time.monotonic() + 15.0
                stats = None
                while time.monotonic() < deadline:
                    stats = admin.execute(
                        "SELECT total_successes, total_failures, last_run_status"
                        " FROM timescaledb_information.job_stats WHERE job_id = %s",
                        (job[0],),
                    ).fetchone()
                    if stats is not None and stats[0] + stats[1] >= 2:
                        break
                    time.sleep(0.5)
                assert stats is not None
                assert stats[1:] == (0, "Success")
        finally:
            odd_conn.cancel_safe()
            odd_sleep.join(30.0)
            sleep.join(30.0)


LIMITS = (
    "SELECT role, statement_timeout, idle_in_transaction_session_timeout"
    " FROM private.reader_limits WHERE role = ANY(%s) ORDER BY 1"
)


def test_harden_readers_gives_every_reader_login_limits(
    db_url: str, role_name: str, other_role_name: str
) -> None:
    """Logins made before the limits were kept (or by hand) get them from their role settings
    when they parse, else the defaults; a login's recorded limits are never overwritten."""
    hand_made = f"kb_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        create_sql_user(admin, role_name, statement_timeout="7s")
        create_sql_user(admin, other_role_name)
        assert sorted(admin.execute(LIMITS, ([role_name, other_role_name],)).fetchall()) == sorted(
            [
                (role_name, timedelta(seconds=7), timedelta(minutes=10)),
                (other_role_name, timedelta(seconds=30), timedelta(minutes=10)),
            ]
        )
        admin.execute("DELETE FROM private.reader_limits WHERE role = %s", (other_role_name,))
        admin.execute(f"ALTER ROLE {other_role_name} SET statement_timeout = '1e3'")
        admin.execute(f"ALTER ROLE {other_role_name} SET idle_in_transaction_session_timeout = 0")
        admin.execute(f"ALTER ROLE {role_name} SET statement_timeout = '100h'")
        admin.execute(f"CREATE ROLE {hand_made} LOGIN IN ROLE kalshibook_reader")
        admin.execute("INSERT INTO private.reader_limits VALUES ('kb_t_gone', '1s', '1s')")
        try:
            lines = harden_readers(admin)
            limits = admin.execute(
                LIMITS, ([role_name, other_role_name, hand_made, "kb_t_gone"],)
            ).fetchall()
        finally:
            admin.execute(f"DROP ROLE {hand_made}")
    assert sorted(limits) == sorted(
        [
            (role_name, timedelta(seconds=7), timedelta(minutes=10)),
            (other_role_name, timedelta(seconds=1), timedelta(minutes=10)),
            (hand_made, timedelta(seconds=30), timedelta(minutes=10)),
        ]
    )
    assert any(other_role_name in line and "'1e3'" in line for line in lines)


def _granted_add_job(admin: psycopg.Connection, role: str) -> None:
    """``add_job`` granted to the login by hand (migrate revoked it from PUBLIC): the watchdog
    still deletes what it schedules."""
    admin.execute(sql.SQL("GRANT EXECUTE ON FUNCTION add_job TO {}").format(sql.Identifier(role)))


def _reader_adds_a_job(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        row = conn.execute(
            "SELECT add_job('_timescaledb_functions.policy_retention', '1 hour',"
            """ config => '{"hypertable_id": 1, "drop_after": "1 second"}')"""
        ).fetchone()
    assert row is not None
    return int(row[0])


def _jobs_of(conn: psycopg.Connection, role: str) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE owner::text = %s", (role,)
    ).fetchall()


ADD_JOB_PUBLIC = """
SELECT has_function_privilege('public', p.oid, 'EXECUTE') FROM pg_proc p
WHERE p.proname = 'add_job'
"""


def test_reader_cannot_schedule_jobs(db_url: str, role_name: str) -> None:
    """migrate revoked ``add_job`` from PUBLIC: a SQL user's job is refused before it exists
    (both editions; on Apache it would fail anyway, for the license)."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        assert admin.execute(ADD_JOB_PUBLIC).fetchall() == [(False,)]
        user = create_sql_user(admin, role_name)
        before = admin.execute("SELECT count(*) FROM _timescaledb_config.bgw_job").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _reader_adds_a_job(login_url(db_url, role_name, user.password))
        after = admin.execute("SELECT count(*) FROM _timescaledb_config.bgw_job").fetchone()
    assert after == before


def test_job_scheduling_revoke_needs_the_owner(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither the extension's owner nor a superuser: the statement is logged, nothing revoked;
    the owner then revokes it, once."""
    plain = f"kb_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        schema = admin.execute(
            "SELECT extnamespace::regnamespace::text FROM pg_extension "
            "WHERE extname = 'timescaledb'"
        ).fetchone()
        assert schema is not None
        admin.execute("GRANT EXECUTE ON FUNCTION add_job TO PUBLIC")
        admin.execute(f"CREATE ROLE {plain} NOLOGIN")
        try:
            admin.execute(f"SET ROLE {plain}")
            with caplog.at_level(logging.WARNING, logger="kalshibook.storage.reader_limits"):
                assert revoke_job_scheduling(admin, schema[0]) == []
            admin.execute("RESET ROLE")
            assert admin.execute(ADD_JOB_PUBLIC).fetchall() == [(True,)]
            assert "REVOKE EXECUTE ON FUNCTION" in caplog.text
            assert ".add_job(proc regproc, schedule_interval interval" in caplog.text
            [revoked] = revoke_job_scheduling(admin, schema[0])
            assert revoked.startswith(f"{schema[0]}.add_job(")
            assert admin.execute(ADD_JOB_PUBLIC).fetchall() == [(False,)]
            assert revoke_job_scheduling(admin, schema[0]) == []  # idempotent
        finally:
            admin.execute("RESET ROLE")
            admin.execute(f"DROP ROLE {plain}")


def test_sql_user_drop_deletes_the_jobs_the_user_scheduled(db_url: str, role_name: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        user = create_sql_user(admin, role_name)
        _granted_add_job(admin, role_name)
        url = login_url(db_url, role_name, user.password)
        if _edition(admin) != "timescale":
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                _reader_adds_a_job(url)  # no job scheduler on the Apache edition
            return
        # the watchdog would delete the job too: keep it out of the way
        admin.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
            " WHERE proc_schema = 'private' AND proc_name = 'reader_watchdog_job'"
        )
        job = _reader_adds_a_job(url)
        assert _jobs_of(admin, role_name) == [(job,)]
        drop_sql_user(admin, role_name)
        assert (
            admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role_name,)).fetchone()
            is None
        )
        assert (
            admin.execute(
                "SELECT 1 FROM timescaledb_information.jobs WHERE job_id = %s", (job,)
            ).fetchone()
            is None
        )


def test_watchdog_deletes_the_jobs_of_reader_logins(db_url: str, role_name: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        if _edition(admin) != "timescale":
            pytest.skip("no jobs on the Apache edition")
        user = create_sql_user(admin, role_name)
        _granted_add_job(admin, role_name)
        jobs = "SELECT job_id FROM timescaledb_information.jobs ORDER BY 1"
        owners_jobs = admin.execute(jobs).fetchall()
        url = login_url(db_url, role_name, user.password)
        _reader_adds_a_job(url)
        assert len(_jobs_of(admin, role_name)) == 1
        run_watchdog(admin)
        assert _jobs_of(admin, role_name) == []
        assert admin.execute(jobs).fetchall() == owners_jobs
        # and from its own job, as scheduled
        _reader_adds_a_job(url)
        admin.execute("SELECT _timescaledb_functions.start_background_workers()")
        deadline = time.monotonic() + SCHEDULED_DEADLINE
        while _jobs_of(admin, role_name) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _jobs_of(admin, role_name) == []
        assert admin.execute(jobs).fetchall() == owners_jobs


def test_a_watchdog_pass_goes_on_past_what_it_may_not_touch(
    db_url: str, role_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Run by a role that may neither end a reader's backend (no pg_signal_backend) nor delete its
    job (not a member of the job's owner), a pass warns of each and returns: it does not fail.
    (Without pg_read_all_stats it would not even see what other roles' backends are doing.)"""
    plain = f"kb_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        # a long timeout, which the pass below shortens (other databases' watchdogs on the
        # server would end a statement past a short one)
        user = create_sql_user(admin, role_name, statement_timeout="1min")
        _granted_add_job(admin, role_name)
        url = login_url(db_url, role_name, user.password)
        scheduled = _edition(admin) == "timescale"
        if scheduled:
            admin.execute(
                "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
                " WHERE proc_schema = 'private' AND proc_name = 'reader_watchdog_job'"
            )
            job = _reader_adds_a_job(url)
        admin.execute(f"CREATE ROLE {plain} NOLOGIN IN ROLE pg_read_all_stats")  # sees states
        admin.execute(f"GRANT USAGE ON SCHEMA private TO {plain}")
        admin.execute(f"GRANT SELECT ON private.reader_limits TO {plain}")
        admin.execute(f"GRANT EXECUTE ON FUNCTION private.reader_watchdog(interval) TO {plain}")
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                sleep, ended = _sleep_in_thread(conn, 5)
                _wait_statement_older_than(admin, conn.info.backend_pid, 0.7)
                admin.execute(f"SET ROLE {plain}")
                notices: list[str] = []
                admin.add_notice_handler(lambda d: notices.append(str(d.message_primary)))
                row = admin.execute("SELECT private.reader_watchdog('-59.5 seconds')").fetchone()
                assert row == (0,)
                admin.execute("RESET ROLE")
                sleep.join(10.0)
            assert ended == []  # it ran to its end
            assert any("cannot end backend" in n and role_name in n for n in notices)
            if scheduled:
                assert any(f"cannot delete job {job} of {role_name}" in n for n in notices)
                assert _jobs_of(admin, role_name) == [(job,)]
                run_watchdog(admin)  # a superuser's pass may delete it
                assert _jobs_of(admin, role_name) == []
        finally:
            admin.execute("RESET ROLE")
            admin.execute(f"DROP OWNED BY {plain}")
            admin.execute(f"DROP ROLE {plain}")


def test_harden_readers_warns_when_the_watchdog_could_not_do_its_work(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    plain = f"kb_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        assert check_watchdog_privileges(admin)
        admin.execute(f"CREATE ROLE {plain} NOLOGIN")
        try:
            admin.execute(f"SET ROLE {plain}")
            with caplog.at_level(logging.WARNING, logger="kalshibook.storage.reader_limits"):
                assert not check_watchdog_privileges(admin)
            assert f"GRANT pg_read_all_stats, pg_signal_backend TO {plain}" in caplog.text
            admin.execute("RESET ROLE")
            admin.execute(f"GRANT pg_read_all_stats, pg_signal_backend TO {plain}")
            admin.execute(f"SET ROLE {plain}")
            assert check_watchdog_privileges(admin)
        finally:
            admin.execute("RESET ROLE")
            admin.execute(f"DROP ROLE {plain}")


WRITES_LARGE_OBJECTS = (
    "SELECT lo_from_bytea(0, 'x'::bytea)",
    "SELECT lo_creat(-1)",
    "SELECT lo_create(0)",
    "SELECT lo_put(1, 0, 'x'::bytea)",
    "SELECT lowrite(0, 'x'::bytea)",
    "SELECT lo_truncate(0, 1000000)",
    "SELECT lo_import('/etc/hostname')",
)


def test_reader_cannot_write_large_objects(db_url: str, role_name: str) -> None:
    """docs/sql.md: writes fail with permission denied; large objects are writes outside
    ``market`` that no table privilege covers (and ``temp_file_limit`` does not bound)."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        user = create_sql_user(admin, role_name)
    with psycopg.connect(login_url(db_url, role_name, user.password), autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        for statement in WRITES_LARGE_OBJECTS:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)


def test_large_object_revoke_needs_a_superuser(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a superuser: the statement to run by hand is logged and nothing is revoked."""
    plain = f"kb_t_{uuid.uuid4().hex[:10]}"
    check = "SELECT has_function_privilege('public', 'lo_from_bytea(oid,bytea)', 'EXECUTE')"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("GRANT EXECUTE ON FUNCTION lo_from_bytea(oid, bytea) TO PUBLIC")
        admin.execute(f"CREATE ROLE {plain} NOLOGIN IN ROLE pg_read_all_stats")  # sees states
        try:
            admin.execute(f"SET ROLE {plain}")
            with caplog.at_level(logging.WARNING, logger="kalshibook.storage.reader_limits"):
                assert revoke_large_object_writes(admin) == []
            admin.execute("RESET ROLE")
            assert admin.execute(check).fetchone() == (True,)
            assert (
                "as a superuser, in database "
                f"{admin.info.dbname}, run: REVOKE EXECUTE ON FUNCTION "
                "pg_catalog.lo_from_bytea(oid,bytea) FROM PUBLIC"
            ) in caplog.text
            assert revoke_large_object_writes(admin) == ["lo_from_bytea(oid,bytea)"]
            assert admin.execute(check).fetchone() == (False,)
            assert revoke_large_object_writes(admin) == []  # idempotent
        finally:
            admin.execute("RESET ROLE")
            admin.execute(f"DROP ROLE {plain}")


def test_kalshibook_uses_no_large_objects() -> None:
    """Revoking the large-object writers from PUBLIC takes nothing from kalshibook's roles."""
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"\blo_\w+\s*\(|\blo(?:read|write)\s*\(|largeobject|lobject", re.I)
    used = [
        str(path.relative_to(root))
        for folder in ("kalshibook", "migrations", "scripts")
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
        and path.suffix in {".py", ".sql", ".sh"}
        and path.name != "reader_limits.py"
        and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert used == []


def test_sql_user_create_warns_of_temporary_tables_in_other_databases(
    db_url: str,
    empty_db_url: str,
    role_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A new database (like ``postgres``) grants CONNECT and TEMPORARY to PUBLIC: the login can
    fill the disk with temporary tables there, which no limit of kalshibook's database covers."""
    other = str(psycopg.conninfo.conninfo_to_dict(empty_db_url)["dbname"])
    monkeypatch.setenv("KALSHIBOOK_DATABASE_URL", db_url)
    assert cli.main(["sql-user", "create", role_name]) == 0
    out, err = capsys.readouterr()
    password = next(
        line.split(": ", 1)[1] for line in out.splitlines() if "password (shown once)" in line
    )
    warning = [line for line in err.splitlines() if "temporary tables" in line]
    assert len(warning) == 1
    assert f"REVOKE TEMPORARY ON DATABASE {other} FROM PUBLIC" in warning[0]
    # what it warns of
    with psycopg.connect(login_url(empty_db_url, role_name, password), autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        conn.execute("CREATE TEMP TABLE fill (x text)")
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(f'REVOKE TEMPORARY ON DATABASE "{other}" FROM PUBLIC')
        drop_sql_user(admin, role_name)
        user = create_sql_user(admin, role_name)
    assert other not in user.temp_elsewhere
