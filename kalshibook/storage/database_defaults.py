"""Session defaults of the kalshibook database itself (``ALTER DATABASE … SET``), applied by every
``kalshibook migrate``: they reach every session of the database, ours (the collector, exports,
backfill, ``status``, ``refresh-candles``), TimescaleDB's policy jobs and any other client.

``jit = off``. PostgreSQL JIT-compiles a plan at every execution once its estimated cost passes
``jit_above_cost`` (100,000), and the estimates of a statement over a hypertable grow with its
chunks, so JIT comes for statements that read little and then compiles the expressions of every
chunk: measured on the 10M-trade year of bench/bench_candles.py, an export's day fingerprints of
one market's year of trades took 54-56 s with JIT and 0.84-0.92 s without, the raw GROUP BY of a
year of daily candles 30 s (29 of them compiling) against 0.76 s, and the Apache edition's candle
views for a year of 1d 13.7-16.7 s against 5.4-5.9. TimescaleDB's own projects turned it off at
the database level for this reason (timescale/promscale_extension#218, timescale/timescaledb#4222,
#6122), and PostgreSQL 19 turns it off by default. A database with a ``jit`` setting of its own
keeps it (an operator's choice), and so do SQL users, who may ``SET jit = on`` for a query that
gains from it. The API's connections turn it off on their own as well
(kalshibook.api.app.connection_options): their latency must not depend on a database setting that
could not be applied (``migrate`` run by a role that does not own the database).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import psycopg
from psycopg import Connection, sql

__all__ = ("apply_database_defaults",)

log = logging.getLogger(__name__)

# The database's own jit setting (not a role's), if it has one.
DATABASE_JIT: Final = """
SELECT c FROM pg_db_role_setting s, unnest(s.setconfig) c
WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.setrole = 0 AND starts_with(c, 'jit=')
"""


def apply_database_defaults(conn: Connection[Any]) -> None:
    """``jit = off`` on the current database unless it has a jit setting of its own
    (idempotent); new sessions see it. Without the privilege (``ALTER DATABASE`` needs the
    database's owner) it logs the statement to run by hand and goes on."""
    if conn.execute(DATABASE_JIT).fetchone() is not None:
        return
    statement = sql.SQL("ALTER DATABASE {} SET jit = off").format(sql.Identifier(conn.info.dbname))
    try:
        conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        log.warning(
            "cannot turn JIT off for the database (not its owner); as its owner run: %s",
            statement.as_string(conn),
        )
        return
    log.info("database %s: jit = off for every new session", conn.info.dbname)
