"""Read-only SQL login roles for power users.

``create_sql_user`` makes a ``LOGIN`` role ``IN ROLE kalshibook_reader`` (SELECT on the ``market``
schema only; ``private`` stays invisible) with a generated password, read-only default
transactions, a statement timeout, a connection limit and CONNECT on the database. The password
is sent to the server as a SCRAM-SHA-256 verifier computed here, so the plain text never reaches
the server (nor its statement log); it is returned once to be shown to the user.

Limits of the model: ``default_transaction_read_only`` and ``statement_timeout`` are per-role
defaults a user can change, in their session and even as their role's defaults (``ALTER ROLE``
itself); what actually protects the data is that the role holds no privilege but ``SELECT`` on
``market`` (writes fail with ``permission denied``; large objects too, once revoked). What keeps a
reader from exhausting the server — a ``temp_file_limit`` it cannot change, no ``TEMPORARY`` on
the database, no large-object writes, its connection limit, and a watchdog that ends statements
and idle transactions past the timeouts given here (kept in ``private.reader_limits``, out of the
user's reach) and deletes the user's TimescaleDB jobs — is :mod:`kalshibook.storage.reader_limits`,
applied on every ``create``. Other databases of the cluster are not kalshibook's: ``create`` warns
when the new login could create temporary tables in one of them (``postgres`` grants it to
``PUBLIC`` by default).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import Connection, sql

from kalshibook.errors import InvalidInput, UnknownObject
from kalshibook.storage.reader_limits import (
    DEFAULT_IDLE_TIMEOUT,
    TEMP_FILE_LIMIT,
    delete_reader_jobs,
    forget_limits,
    harden_readers,
    limit_login,
    parse_timeout,
    record_limits,
)

__all__ = ("READER_ROLE", "SqlUser", "create_sql_user", "drop_sql_user", "scram_verifier")

READER_ROLE = "kalshibook_reader"
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TIMEOUT = re.compile(r"^(\d{1,9})\s*(ms|s|min|h)?$")
SIZE = re.compile(r"^(\d{1,9})\s*(kB|MB|GB|TB)$")
RESERVED = {READER_ROLE, "postgres", "public", "pg_signal_backend"}
SCRAM_ITERATIONS = 4096

log = logging.getLogger(__name__)

ROLE_INFO = """
SELECT r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls,
       pg_has_role(r.oid, %(reader)s, 'MEMBER')
FROM pg_roles r WHERE r.rolname = %(name)s
"""
# Other databases of the cluster the login may connect to and create temporary tables in
# (PUBLIC has both on a new database, on ``postgres`` and ``template1`` by default).
TEMP_ELSEWHERE = """
SELECT d.datname, quote_ident(d.datname) FROM pg_database d
WHERE d.datname <> current_database() AND d.datallowconn
  AND has_database_privilege(%(name)s, d.oid, 'CONNECT')
  AND has_database_privilege(%(name)s, d.oid, 'TEMPORARY')
ORDER BY 1
"""


@dataclass(frozen=True, slots=True)
class SqlUser:
    name: str
    database: str
    statement_timeout: str
    connection_limit: int
    temp_file_limit: str
    password: str = field(repr=False)
    temp_elsewhere: tuple[str, ...] = ()
    """Other databases of the cluster where the login can create temporary tables."""


def validate_role_name(name: str) -> str:
    if not ROLE_NAME.match(name) or name.startswith("pg_") or name in RESERVED:
        raise InvalidInput(
            f"invalid role name {name!r}: use lower-case letters, digits and _, starting with a "
            "letter or _, at most 63 characters (not pg_*, not a reserved name)",
            "name",
        )
    return name


def normalise_timeout(value: str, field: str = "statement_timeout") -> str:
    """``30s``, ``500ms``, ``2min``, ``1h`` or milliseconds → PostgreSQL's text form."""
    m = TIMEOUT.match(value.strip())
    if not m or int(m.group(1)) == 0:
        raise InvalidInput(
            f"invalid {field.replace('_', ' ')} {value!r}: use e.g. 500ms, 30s, 2min (must be > 0)",
            field,
        )
    return f"{int(m.group(1))}{m.group(2) or 'ms'}"


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802 / 7677)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode("ascii")

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def create_sql_user(
    conn: Connection[Any],
    name: str,
    *,
    statement_timeout: str = "30s",
    connection_limit: int = 5,
    temp_file_limit: str = TEMP_FILE_LIMIT,
    idle_timeout: str = DEFAULT_IDLE_TIMEOUT,
) -> SqlUser:
    """Create a read-only login role; the returned password is the only copy. Its timeouts are
    set on the role (a well-behaved session's own limits) and recorded for the watchdog (the
    limits the user cannot change)."""
    validate_role_name(name)
    timeout = normalise_timeout(statement_timeout)
    idle = normalise_timeout(idle_timeout, "idle_timeout")
    timeout_limit, idle_limit = parse_timeout(timeout), parse_timeout(idle)
    if timeout_limit is None or idle_limit is None:  # above PostgreSQL's maximum (24.8 days)
        raise InvalidInput("a timeout must be at most 2147483647ms (24 days)", "timeout")
    m = SIZE.match(temp_file_limit.strip())
    if not m or int(m.group(1)) == 0:
        raise InvalidInput(
            f"invalid temp file limit {temp_file_limit!r}: use e.g. 512MB, 1GB (must be > 0)",
            "temp_file_limit",
        )
    spill = f"{int(m.group(1))}{m.group(2)}"
    if not 1 <= connection_limit <= 1000:
        raise InvalidInput("connection limit must be between 1 and 1000", "connection_limit")
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
        raise InvalidInput(f"role {name!r} already exists", "name")
    harden_readers(conn)  # database-wide limits, the watchdog and its table of limits
    password = secrets.token_urlsafe(24)
    database = conn.info.dbname
    role = sql.Identifier(name)
    with conn.transaction():
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} CONNECTION LIMIT {} IN ROLE {}").format(
                role,
                sql.Literal(scram_verifier(password)),
                sql.Literal(connection_limit),
                sql.Identifier(READER_ROLE),
            )
        )
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
        conn.execute(
            sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(role, sql.Literal(timeout))
        )
        conn.execute(
            sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = {}").format(
                role, sql.Literal(idle)
            )
        )
        limit_login(conn, name, spill)
        record_limits(conn, name, timeout_limit, idle_limit)
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role)
        )
    rows = conn.execute(TEMP_ELSEWHERE, {"name": name}).fetchall()
    elsewhere = tuple(str(r[0]) for r in rows)
    if rows:
        revokes = "; ".join(f"REVOKE TEMPORARY ON DATABASE {r[1]} FROM PUBLIC" for r in rows)
        log.warning(
            "SQL user %s can connect to other databases of this cluster and create temporary "
            "tables there, which no limit of kalshibook's bounds (%s); to stop it, run as a "
            "superuser (or each database's owner): %s",
            name,
            ", ".join(elsewhere),
            revokes,
        )
    return SqlUser(
        name=name,
        database=database,
        statement_timeout=timeout,
        connection_limit=connection_limit,
        temp_file_limit=spill,
        password=password,
        temp_elsewhere=elsewhere,
    )


def drop_sql_user(conn: Connection[Any], name: str) -> None:
    """Drop a role made by :func:`create_sql_user` (refuses any other role)."""
    validate_role_name(name)
    row = conn.execute(ROLE_INFO, {"name": name, "reader": READER_ROLE}).fetchone()
    if row is None:
        raise UnknownObject(f"no role {name!r}", "name")
    privileged, is_reader = row
    if privileged or not is_reader:
        raise InvalidInput(f"role {name!r} is not a kalshibook read-only SQL user", "name")
    role = sql.Identifier(name)
    with conn.transaction():
        # its TimescaleDB jobs (DROP OWNED leaves them, and they would keep the role), the
        # privileges granted to it in this database (CONNECT, ...), then the role itself
        delete_reader_jobs(conn, name)
        forget_limits(conn, name)
        conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        conn.execute(
            sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                sql.Identifier(conn.info.dbname), role
            )
        )
        try:
            conn.execute(sql.SQL("DROP ROLE {}").format(role))
        except psycopg.errors.DependentObjectsStillExist as exc:
            raise InvalidInput(
                f"role {name!r} still has privileges elsewhere: {exc.diag.message_detail}",
                "name",
            ) from None
