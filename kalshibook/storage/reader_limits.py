"""Limits on the read-only SQL logins (``kalshibook sql-user``) that the logins cannot lift.

What PostgreSQL enforces on its own, set by :func:`harden_readers` (idempotent; run by
``kalshibook migrate`` and by every ``sql-user create``):

- ``temp_file_limit`` per login (``ALTER ROLE … SET``): a superuser-only setting, so a reader's
  ``SET temp_file_limit`` is refused; one query's sorts and hashes spill at most this much to disk.
- No ``TEMPORARY`` on the database for ``PUBLIC`` (revoked): with ``default_transaction_read_only``
  switched off a reader still cannot create temporary tables. The database owner keeps it; a
  role that needs temporary tables (the collector's COPY staging) must be granted it.
- ``CONNECTION LIMIT`` per login: only a role with ``CREATEROLE`` can change it.

What PostgreSQL cannot enforce: ``statement_timeout`` and ``idle_in_transaction_session_timeout``
are user-settable, so a reader may ``SET`` them to 0. A server-side **watchdog** takes over:
:data:`WATCHDOG_FUNCTION` terminates any backend of a reader login that has been running one
statement longer than the login's own ``statement_timeout``, or been idle in a transaction longer
than its ``idle_in_transaction_session_timeout`` (each as configured on the role, plus
:data:`GRACE`), whatever the session set. On the Community edition a TimescaleDB job runs it every
:data:`WATCHDOG_INTERVAL`; on the Apache edition (no jobs) the operator schedules
``SELECT private.reader_watchdog()`` (cron, every few seconds; docs/operators.md).
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg import Connection, sql

log = logging.getLogger(__name__)

__all__ = (
    "GRACE",
    "TEMP_FILE_LIMIT",
    "WATCHDOG_INTERVAL",
    "harden_readers",
    "limit_login",
    "remove_watchdog",
    "run_watchdog",
)

READER_ROLE = "kalshibook_reader"
TEMP_FILE_LIMIT = "1GB"
"""Disk one reader session's query may spill (sorts, hashes); a superuser-only setting."""
GRACE = "2 seconds"
WATCHDOG_INTERVAL = "5 seconds"
DEFAULT_STATEMENT_TIMEOUT = "30s"
DEFAULT_IDLE_TIMEOUT = "10min"

UNLIMITED_READER_LOGINS = """
SELECT r.rolname FROM pg_roles r
JOIN pg_auth_members m ON m.member = r.oid AND m.roleid = %(reader)s::regrole
WHERE r.rolcanlogin AND NOT r.rolsuper
  AND NOT EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) c
                  WHERE s.setrole = r.oid AND starts_with(c, 'temp_file_limit='))
ORDER BY 1
"""

WATCHDOG_FUNCTION = """
CREATE OR REPLACE FUNCTION private.reader_watchdog(grace interval DEFAULT {grace}::interval)
RETURNS integer LANGUAGE sql VOLATILE AS $fn$
WITH readers AS (
    SELECT r.oid,
           coalesce((SELECT split_part(c, '=', 2) FROM pg_db_role_setting s, unnest(s.setconfig) c
                     WHERE s.setrole = r.oid AND starts_with(c, 'statement_timeout=')
                     ORDER BY s.setdatabase DESC LIMIT 1), {statement})::interval AS stmt,
           coalesce((SELECT split_part(c, '=', 2) FROM pg_db_role_setting s, unnest(s.setconfig) c
                     WHERE s.setrole = r.oid
                       AND starts_with(c, 'idle_in_transaction_session_timeout=')
                     ORDER BY s.setdatabase DESC LIMIT 1), {idle})::interval AS idle
    FROM pg_roles r
    JOIN pg_auth_members m ON m.member = r.oid AND m.roleid = 'kalshibook_reader'::regrole
    WHERE r.rolcanlogin AND NOT r.rolsuper
)
SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid))::integer
FROM pg_stat_activity a JOIN readers r ON a.usesysid = r.oid
WHERE a.pid <> pg_backend_pid()
  AND ((a.state = 'active' AND a.query_start < now() - (r.stmt + grace))
    OR (a.state LIKE 'idle in transaction%' AND a.state_change < now() - (r.idle + grace)))
$fn$;
REVOKE ALL ON FUNCTION private.reader_watchdog(interval) FROM PUBLIC;
CREATE OR REPLACE PROCEDURE private.reader_watchdog_job(job_id integer, config jsonb)
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM private.reader_watchdog();
END
$fn$;
REVOKE ALL ON PROCEDURE private.reader_watchdog_job(integer, jsonb) FROM PUBLIC;
"""

EDITION = "SELECT current_setting('timescaledb.license', true)"
WATCHDOG_JOB = """
SELECT job_id, schedule_interval FROM timescaledb_information.jobs
WHERE proc_schema = 'private' AND proc_name = 'reader_watchdog_job'
"""
ADD_WATCHDOG_JOB = (
    "SELECT add_job('private.reader_watchdog_job', %(interval)s::interval, initial_start => now())"
)
ALTER_WATCHDOG_JOB = "SELECT alter_job(%(job)s, schedule_interval => %(interval)s::interval)"
RUN_WATCHDOG = "SELECT private.reader_watchdog()"


def limit_login(conn: Connection[Any], name: str, temp_file_limit: str = TEMP_FILE_LIMIT) -> None:
    """The limits of one reader login that it cannot lift (caller checks ``name`` and the
    limit's form, e.g. ``1GB``)."""
    conn.execute(
        sql.SQL("ALTER ROLE {} SET temp_file_limit = {}").format(
            sql.Identifier(name), sql.Literal(temp_file_limit)
        )
    )


def harden_readers(conn: Connection[Any]) -> list[str]:
    """Database-wide reader limits and the watchdog; one line per reader login limited."""
    database = sql.Identifier(conn.info.dbname)
    with conn.transaction():
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(database))
        conn.execute(
            sql.SQL(WATCHDOG_FUNCTION).format(
                grace=sql.Literal(GRACE),
                statement=sql.Literal(DEFAULT_STATEMENT_TIMEOUT),
                idle=sql.Literal(DEFAULT_IDLE_TIMEOUT),
            )
        )
        logins = [str(r[0]) for r in conn.execute(UNLIMITED_READER_LOGINS, {"reader": READER_ROLE})]
        for name in logins:
            limit_login(conn, name)
        row = conn.execute(EDITION).fetchone()
        if row is not None and row[0] == "timescale":
            job = conn.execute(WATCHDOG_JOB).fetchone()
            if job is None:
                conn.execute(ADD_WATCHDOG_JOB, {"interval": WATCHDOG_INTERVAL})
            else:
                conn.execute(ALTER_WATCHDOG_JOB, {"job": job[0], "interval": WATCHDOG_INTERVAL})
        else:
            log.info(
                "Apache edition: no job scheduler; schedule `SELECT private.reader_watchdog()` "
                "every few seconds to enforce reader statement timeouts"
            )
    return [f"reader {name}: temp_file_limit {TEMP_FILE_LIMIT}" for name in logins]


def remove_watchdog(conn: Connection[Any]) -> None:
    """Unschedule the watchdog job (before the ``private`` schema is dropped by a downgrade)."""
    row = conn.execute(EDITION).fetchone()
    if row is not None and row[0] == "timescale":
        job = conn.execute(WATCHDOG_JOB).fetchone()
        if job is not None:
            conn.execute("SELECT delete_job(%s)", (job[0],))


def run_watchdog(conn: Connection[Any]) -> int:
    """One pass of the watchdog: the number of reader backends terminated."""
    row = conn.execute(RUN_WATCHDOG).fetchone()
    return int(row[0]) if row is not None else 0
