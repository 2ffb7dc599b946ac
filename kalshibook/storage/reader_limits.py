"""Limits on the read-only SQL logins (``kalshibook sql-user``) that the logins cannot lift.

What PostgreSQL enforces on its own, set by :func:`harden_readers` (idempotent; run by
``kalshibook migrate`` and by every ``sql-user create``):

- ``temp_file_limit`` per login (``ALTER ROLE … SET``): a superuser-only setting, so a reader's
  ``SET temp_file_limit`` is refused; one query's sorts and hashes spill at most this much to disk.
- No ``TEMPORARY`` on the database for ``PUBLIC`` (revoked): with ``default_transaction_read_only``
  switched off a reader still cannot create temporary tables. The database owner keeps it; a
  role that needs temporary tables (the collector's COPY staging) must be granted it.
- No ``EXECUTE`` for ``PUBLIC`` on the functions that write large objects
  (:data:`LARGE_OBJECT_WRITERS`, revoked in this database): ``lo_from_bytea`` & co. would store
  data of any size in ``pg_largeobject``. They are ``pg_catalog`` functions, so only a superuser
  can revoke it; run by another role, :func:`revoke_large_object_writes` logs the statement to run
  by hand. kalshibook itself uses no large object.
- No ``EXECUTE`` for ``PUBLIC`` on TimescaleDB's ``add_job`` (:func:`revoke_job_scheduling`): a
  reader's job would run as the reader on the cluster's background workers. Revoking needs the
  extension's owner or a superuser; another role gets the statement to run in a warning. The
  watchdog still deletes the jobs of reader logins (one granted ``add_job`` by hand).
- ``CONNECTION LIMIT`` per login: only a role with ``CREATEROLE`` can change it.

What PostgreSQL cannot enforce: ``statement_timeout`` and ``idle_in_transaction_session_timeout``
are user-settable, in a session and even as the login's own role defaults (any role may
``ALTER ROLE`` itself ``SET`` a user-settable parameter). A server-side **watchdog** takes over:
:data:`WATCHDOG_FUNCTION` terminates any backend of a reader login that has been running one
statement longer than the login's statement timeout, or been idle in a transaction longer than its
idle timeout (plus :data:`GRACE`), whatever the session or the role's settings say. Those limits
are the operator's, kept in :data:`LIMITS_TABLE` (in ``private``, which readers cannot reach):
written by ``sql-user create`` (:func:`record_limits`), filled by :func:`harden_readers` for a
reader login without a row (from its role settings when they parse, else the defaults). A login
with a row is watched in every database of the cluster (``postgres`` too); one without (made
since, by hand or by another kalshibook database of the cluster, whose own watchdog has its row)
only in this database, with the defaults. The watchdog also deletes the TimescaleDB jobs of reader
logins (``add_job`` is open to every role), and ends each backend or job on its own: one it may
not touch is a warning, not a failed pass; the role it runs as needs to see and end other
roles' sessions (a superuser, or ``pg_read_all_stats`` and ``pg_signal_backend``:
:func:`check_watchdog_privileges` warns). On the Community edition a TimescaleDB job runs it
every :data:`WATCHDOG_INTERVAL`; on the Apache edition (no jobs) the operator schedules
``SELECT private.reader_watchdog()`` (cron, every few seconds; docs/operators.md).
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from psycopg import Connection, sql

log = logging.getLogger(__name__)

__all__ = (
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_STATEMENT_TIMEOUT",
    "GRACE",
    "LARGE_OBJECT_WRITERS",
    "TEMP_FILE_LIMIT",
    "WATCHDOG_INTERVAL",
    "check_watchdog_privileges",
    "delete_reader_jobs",
    "forget_limits",
    "harden_readers",
    "limit_login",
    "parse_timeout",
    "record_limits",
    "remove_watchdog",
    "revoke_job_scheduling",
    "revoke_large_object_writes",
    "run_watchdog",
)

READER_ROLE = "kalshibook_reader"
TEMP_FILE_LIMIT = "1GB"
"""Disk one reader session's query may spill (sorts, hashes); a superuser-only setting."""
GRACE = "2 seconds"
WATCHDOG_INTERVAL = "5 seconds"
DEFAULT_STATEMENT_TIMEOUT = "30s"
DEFAULT_IDLE_TIMEOUT = "10min"

LARGE_OBJECT_WRITERS = (
    "lo_create(oid)",
    "lo_creat(integer)",
    "lo_from_bytea(oid,bytea)",
    "lo_import(text)",
    "lo_import(text,oid)",
    "lo_put(oid,bigint,bytea)",
    "lowrite(integer,bytea)",
    "lo_truncate(integer,integer)",
    "lo_truncate64(integer,bigint)",
)
"""The ``pg_catalog`` functions that create or write large objects (PostgreSQL 15: ``lo_import``
is already superuser-only; ``lo_truncate`` may extend an object)."""

# The writers PUBLIC may still execute in this database.
PUBLIC_LARGE_OBJECT_WRITERS = """
SELECT w FROM unnest(%(writers)s::text[]) w JOIN pg_proc p ON p.oid = w::regprocedure
WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
              WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
ORDER BY 1
"""
SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
# TimescaleDB's add_job in its schema while PUBLIC may run it: its identity arguments, and whether
# the current role may revoke that (the function's owner, the extension's, or a superuser)
PUBLIC_ADD_JOB = """
SELECT pg_get_function_identity_arguments(p.oid),
       pg_has_role(current_user, p.proowner, 'USAGE')
       OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s AND p.proname = 'add_job'
  AND EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
              WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
"""
# What the watchdog needs of the role it runs as: to see other roles' sessions (their state) and
# to end them.
WATCHDOG_PRIVILEGES = """
SELECT rolname::text, quote_ident(rolname),
       rolsuper OR (pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
                    AND pg_has_role(current_user, 'pg_signal_backend', 'USAGE'))
FROM pg_roles WHERE rolname = current_user
"""

UNLIMITED_READER_LOGINS = """
SELECT r.rolname FROM pg_roles r
JOIN pg_auth_members m ON m.member = r.oid AND m.roleid = %(reader)s::regrole
WHERE r.rolcanlogin AND NOT r.rolsuper
  AND NOT EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) c
                  WHERE s.setrole = r.oid AND starts_with(c, 'temp_file_limit='))
ORDER BY 1
"""

LIMITS_TABLE = """
CREATE TABLE IF NOT EXISTS private.reader_limits (
    role text PRIMARY KEY,
    statement_timeout interval NOT NULL CHECK (statement_timeout > interval '0'),
    idle_in_transaction_session_timeout interval NOT NULL
        CHECK (idle_in_transaction_session_timeout > interval '0'),
    set_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE private.reader_limits IS
    'Timeouts the reader watchdog enforces per SQL login (its role settings are its own to change)';
REVOKE ALL ON private.reader_limits FROM PUBLIC;
"""
UPSERT_LIMITS = """
INSERT INTO private.reader_limits AS l (role, statement_timeout,
                                        idle_in_transaction_session_timeout)
VALUES (%(role)s, %(statement)s, %(idle)s)
ON CONFLICT (role) DO UPDATE
SET statement_timeout = excluded.statement_timeout,
    idle_in_transaction_session_timeout = excluded.idle_in_transaction_session_timeout,
    set_at = now()
"""
FILL_LIMITS = """
INSERT INTO private.reader_limits (role, statement_timeout, idle_in_transaction_session_timeout)
VALUES (%(role)s, %(statement)s, %(idle)s)
ON CONFLICT (role) DO NOTHING
"""
# Rows of roles that are no reader login any more (dropped by hand, renamed, ...).
FORGET_LIMITS = """
DELETE FROM private.reader_limits l
WHERE NOT EXISTS (SELECT 1 FROM pg_roles r
                  JOIN pg_auth_members m ON m.member = r.oid AND m.roleid = %(reader)s::regrole
                  WHERE r.rolname = l.role AND r.rolcanlogin AND NOT r.rolsuper)
"""
# Reader logins without limits, with their role's timeout settings in this database (its own
# over the role's global one): text, as the role (i.e. perhaps the login itself) set them.
LOGINS_WITHOUT_LIMITS = """
SELECT r.rolname,
       (SELECT substr(c, length('statement_timeout=') + 1)
        FROM pg_db_role_setting s, unnest(s.setconfig) c
        WHERE s.setrole = r.oid AND starts_with(c, 'statement_timeout=')
          AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
        ORDER BY s.setdatabase DESC LIMIT 1),
       (SELECT substr(c, length('idle_in_transaction_session_timeout=') + 1)
        FROM pg_db_role_setting s, unnest(s.setconfig) c
        WHERE s.setrole = r.oid AND starts_with(c, 'idle_in_transaction_session_timeout=')
          AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
        ORDER BY s.setdatabase DESC LIMIT 1)
FROM pg_roles r
JOIN pg_auth_members m ON m.member = r.oid AND m.roleid = %(reader)s::regrole
WHERE r.rolcanlogin AND NOT r.rolsuper
  AND NOT EXISTS (SELECT 1 FROM private.reader_limits l WHERE l.role = r.rolname)
ORDER BY 1
"""

TIMESCALEDB_SCHEMA = """
SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'timescaledb'
"""

WATCHDOG_FUNCTION = """
CREATE OR REPLACE FUNCTION private.reader_watchdog(grace interval DEFAULT {grace}::interval)
RETURNS integer LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    target record;
    ended integer := 0;
BEGIN
    -- jobs of reader logins (add_job is open to every role): nothing of theirs runs on schedule
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        FOR target IN
            SELECT j.job_id, j.owner::text AS who
            FROM timescaledb_information.jobs j
            JOIN pg_roles r ON r.oid = j.owner::oid
            JOIN pg_auth_members m ON m.member = r.oid AND m.roleid = 'kalshibook_reader'::regrole
            WHERE r.rolcanlogin AND NOT r.rolsuper
        LOOP
            BEGIN
                PERFORM {timescaledb}.delete_job(target.job_id);
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'reader watchdog: cannot delete job % of %: %',
                    target.job_id, target.who, SQLERRM;
            END;
        END LOOP;
    END IF;
    -- the operator's limits, never the role's settings: a login with limits here, in any
    -- database of the cluster; one without (made by hand, or by another kalshibook database,
    -- whose watchdog has its limits), in this database only, with the defaults
    FOR target IN
        SELECT a.pid, r.rolname::text AS who
        FROM pg_stat_activity a
        JOIN pg_roles r ON r.oid = a.usesysid
        JOIN pg_auth_members m ON m.member = r.oid AND m.roleid = 'kalshibook_reader'::regrole
        LEFT JOIN private.reader_limits l ON l.role = r.rolname
        WHERE r.rolcanlogin AND NOT r.rolsuper AND a.pid <> pg_backend_pid()
          AND (l.role IS NOT NULL OR a.datname = current_database())
          AND ((a.state = 'active' AND a.query_start
                  < now() - (coalesce(l.statement_timeout, {statement}::interval) + grace))
            OR (a.state LIKE 'idle in transaction%' AND a.state_change
                  < now() - (coalesce(l.idle_in_transaction_session_timeout, {idle}::interval)
                             + grace)))
    LOOP
        BEGIN
            IF pg_terminate_backend(target.pid) THEN
                ended := ended + 1;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'reader watchdog: cannot end backend % of %: %',
                target.pid, target.who, SQLERRM;
        END;
    END LOOP;
    RETURN ended;
END
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
ROLE_JOBS = """
SELECT j.job_id FROM timescaledb_information.jobs j JOIN pg_roles r ON r.oid = j.owner::oid
WHERE r.rolname = %(name)s ORDER BY 1
"""

# A PostgreSQL time setting in milliseconds as its parser reads it (guc.c: parse_int): a
# strtol(…, 0) integer (decimal, 0x hex, 0 octal) or a strtod number, then an optional unit.
_NUMBER = re.compile(
    r"\s*(?P<num>[+-]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))"
    r"\s*(?P<unit>us|ms|s|min|h|d)?\s*"
)
_UNIT_MS = {
    "us": 0.001,
    "ms": 1.0,
    "s": 1000.0,
    "min": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
}
_MAX_MS = 2**31 - 1


def parse_timeout(value: str | None) -> timedelta | None:
    """A timeout setting as PostgreSQL stores it for a role (``30s``, ``1500``, ``1e3``,
    ``2 min``, …; milliseconds without a unit) as a positive duration; ``None`` for anything
    else (no setting, 0 = no timeout, out of range, a form this parser does not know)."""
    if value is None:
        return None
    m = _NUMBER.fullmatch(value)
    if m is None:
        return None
    text = m.group("num")
    digits = text.lstrip("+-")
    try:
        if digits[:2].lower() == "0x":
            number = float(int(digits, 16))
        elif any(c in digits for c in ".eE"):
            number = float(digits)
        elif len(digits) > 1 and digits.startswith("0"):
            number = float(int(digits, 8))
        else:
            number = float(int(digits))
    except ValueError:
        return None
    if text.startswith("-"):
        number = -number
    ms = round(number * _UNIT_MS[m.group("unit") or "ms"])
    if not 0 < ms <= _MAX_MS:
        return None
    return timedelta(milliseconds=ms)


def limit_login(conn: Connection[Any], name: str, temp_file_limit: str = TEMP_FILE_LIMIT) -> None:
    """The limits of one reader login that it cannot lift (caller checks ``name`` and the
    limit's form, e.g. ``1GB``)."""
    conn.execute(
        sql.SQL("ALTER ROLE {} SET temp_file_limit = {}").format(
            sql.Identifier(name), sql.Literal(temp_file_limit)
        )
    )


def record_limits(
    conn: Connection[Any], name: str, statement_timeout: timedelta, idle_timeout: timedelta
) -> None:
    """The timeouts the watchdog enforces on the reader login ``name`` (``private.reader_limits``,
    which :func:`harden_readers` creates)."""
    params = {"role": name, "statement": statement_timeout, "idle": idle_timeout}
    conn.execute(UPSERT_LIMITS, params)


def forget_limits(conn: Connection[Any], name: str) -> None:
    """Remove the watchdog's limits of ``name`` (a login being dropped)."""
    row = conn.execute("SELECT to_regclass('private.reader_limits') IS NOT NULL").fetchone()
    if row is not None and row[0]:
        conn.execute("DELETE FROM private.reader_limits WHERE role = %s", (name,))


def _fill_limits(conn: Connection[Any]) -> list[str]:
    """A row of limits for every reader login without one: its role's timeout settings when they
    parse, else the defaults (a login made before the table existed, or by hand)."""
    default_statement = parse_timeout(DEFAULT_STATEMENT_TIMEOUT)
    default_idle = parse_timeout(DEFAULT_IDLE_TIMEOUT)
    lines = []
    for name, statement_setting, idle_setting in conn.execute(
        LOGINS_WITHOUT_LIMITS, {"reader": READER_ROLE}
    ).fetchall():
        statement = parse_timeout(statement_setting) or default_statement
        idle = parse_timeout(idle_setting) or default_idle
        conn.execute(FILL_LIMITS, {"role": name, "statement": statement, "idle": idle})
        lines.append(
            f"reader {name}: watchdog limits statement {statement}, idle in transaction {idle} "
            f"(role settings {statement_setting!r}, {idle_setting!r})"
        )
    return lines


def revoke_large_object_writes(conn: Connection[Any]) -> list[str]:
    """No ``EXECUTE`` for ``PUBLIC`` on :data:`LARGE_OBJECT_WRITERS` in this database
    (idempotent): the functions revoked. Not being a superuser, it logs the statement to run by
    hand instead (a warning, at every call until it is run) and revokes nothing."""
    rows = conn.execute(PUBLIC_LARGE_OBJECT_WRITERS, {"writers": list(LARGE_OBJECT_WRITERS)})
    found = {str(r[0]) for r in rows}
    granted = [f for f in LARGE_OBJECT_WRITERS if f in found]
    if not granted:
        return []
    statement = sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC").format(
        sql.SQL(", ").join(sql.SQL("pg_catalog." + f) for f in granted)
    )
    row = conn.execute(SUPERUSER).fetchone()
    if row is None or not row[0]:
        log.warning(
            "SQL users can store data of any size as large objects (lo_from_bytea, ...): only a "
            "superuser can revoke it; as a superuser, in database %s, run: %s",
            conn.info.dbname,
            statement.as_string(conn),
        )
        return []
    conn.execute(statement)
    return granted


def revoke_job_scheduling(conn: Connection[Any], schema: str) -> list[str]:
    """No ``EXECUTE`` for ``PUBLIC`` on TimescaleDB's ``add_job`` in this database (idempotent):
    the functions revoked. A SQL user could otherwise schedule jobs, which the job scheduler runs
    as that user on the cluster's background workers (the watchdog deletes them; this keeps them
    from being made). kalshibook's own jobs are the policies (not made through ``add_job``) and
    the watchdog's, which its owner adds. Neither the function's owner (the extension's) nor a
    superuser: the statement to run is logged instead (a warning, at every call until it is
    run) and nothing is revoked."""
    revoked = []
    for args, may in conn.execute(PUBLIC_ADD_JOB, {"schema": schema}).fetchall():
        statement = sql.SQL("REVOKE EXECUTE ON FUNCTION {}.add_job({}) FROM PUBLIC").format(
            sql.Identifier(schema), sql.SQL(args)
        )
        if not may:
            log.warning(
                "SQL users can schedule TimescaleDB jobs (add_job; the watchdog deletes them): "
                "as the owner of the timescaledb extension or a superuser, in database %s, run: %s",
                conn.info.dbname,
                statement.as_string(conn),
            )
            continue
        conn.execute(statement)
        revoked.append(f"{schema}.add_job({args})")
    return revoked


def check_watchdog_privileges(conn: Connection[Any]) -> bool:
    """Whether the current role (the watchdog job's owner, or the operator running it) can see
    and end other roles' sessions; else a warning with the ``GRANT`` to run."""
    row = conn.execute(WATCHDOG_PRIVILEGES).fetchone()
    if row is None or row[2]:
        return True
    log.warning(
        "the SQL readers' watchdog runs as %s, which can neither see what other roles' sessions "
        "do nor end them, so it enforces no timeout; as a superuser run: "
        "GRANT pg_read_all_stats, pg_signal_backend TO %s",
        row[0],
        row[1],
    )
    return False


def harden_readers(conn: Connection[Any]) -> list[str]:
    """Database-wide reader limits, the watchdog and its limits; one line per change made."""
    database = sql.Identifier(conn.info.dbname)
    lines: list[str] = []
    with conn.transaction():
        conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(database))
        lines += [
            f"large objects: EXECUTE on {f} revoked from PUBLIC"
            for f in revoke_large_object_writes(conn)
        ]
        row = conn.execute(TIMESCALEDB_SCHEMA).fetchone()
        timescaledb = str(row[0]) if row is not None else "public"
        lines += [
            f"TimescaleDB jobs: EXECUTE on {f} revoked from PUBLIC"
            for f in revoke_job_scheduling(conn, timescaledb)
        ]
        conn.execute(LIMITS_TABLE)
        conn.execute(
            sql.SQL(WATCHDOG_FUNCTION).format(
                grace=sql.Literal(GRACE),
                statement=sql.Literal(DEFAULT_STATEMENT_TIMEOUT),
                idle=sql.Literal(DEFAULT_IDLE_TIMEOUT),
                timescaledb=sql.Identifier(timescaledb),
            )
        )
        logins = [str(r[0]) for r in conn.execute(UNLIMITED_READER_LOGINS, {"reader": READER_ROLE})]
        for name in logins:
            limit_login(conn, name)
        lines += [f"reader {name}: temp_file_limit {TEMP_FILE_LIMIT}" for name in logins]
        conn.execute(FORGET_LIMITS, {"reader": READER_ROLE})
        lines += _fill_limits(conn)
        check_watchdog_privileges(conn)
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
    for line in lines:
        log.info("%s", line)
    return lines


def delete_reader_jobs(conn: Connection[Any], name: str) -> list[int]:
    """Delete the TimescaleDB jobs the role ``name`` owns (a reader may ``add_job``; its jobs
    would keep the role from being dropped); their ids."""
    row = conn.execute(EDITION).fetchone()
    if row is None or row[0] != "timescale":
        return []  # no job scheduler, no jobs
    jobs = [int(r[0]) for r in conn.execute(ROLE_JOBS, {"name": name})]
    for job in jobs:
        conn.execute("SELECT delete_job(%s)", (job,))
    return jobs


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
