"""The database roles the collector and the API run as: only the grants each needs.

``kalshibook migrate`` (run as the database owner) calls :func:`apply_service_grants`, which makes
two ``NOLOGIN`` group roles and (re)grants them, idempotently, on every migrate (so relations a
later revision adds are covered too):

- ``kalshibook_api``: read ``market`` (every table, view and candle aggregate); in ``private``
  only what serving needs: read ``api_keys`` and update its ``credits`` / ``last_used_at``
  (charging, refunds), insert ``api_usage`` rows. No key can be created or revoked through it,
  no market data written.
- ``kalshibook_collector``: read, insert and update ``market`` (binary COPY, upserts), the writer's
  commit marks in ``private.writer_progress``, and ``TEMPORARY`` on the database (the COPY staging
  table of trades). No access to API keys or usage.

:func:`create_service_login` adds a ``LOGIN`` role to one of them (``kalshibook service-user``);
:func:`enforce_login` is what ``collect`` and ``serve`` do at start with the row of
:data:`LOGIN_INFO`: refuse a superuser login (``KALSHIBOOK_REFUSE_SUPERUSER``) or warn loudly.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from psycopg import Connection, sql

from kalshibook.errors import ConfigError, InvalidInput
from kalshibook.storage.reader_limits import harden_readers
from kalshibook.storage.sql_users import RESERVED, ROLE_NAME, scram_verifier

__all__ = (
    "API_ROLE",
    "COLLECTOR_ROLE",
    "LOGIN_INFO",
    "SERVICE_ROLES",
    "apply_service_grants",
    "create_service_login",
    "enforce_login",
    "superuser_refusal",
)

log = logging.getLogger(__name__)

API_ROLE = "kalshibook_api"
COLLECTOR_ROLE = "kalshibook_collector"
SERVICE_ROLES: dict[str, str] = {"api": API_ROLE, "collector": COLLECTOR_ROLE}

ENSURE_ROLES = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kalshibook_api') THEN
        CREATE ROLE kalshibook_api NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kalshibook_collector') THEN
        CREATE ROLE kalshibook_collector NOLOGIN;
    END IF;
END $$
"""

API_GRANTS = """
GRANT USAGE ON SCHEMA market TO kalshibook_api;
GRANT SELECT ON ALL TABLES IN SCHEMA market TO kalshibook_api;
ALTER DEFAULT PRIVILEGES IN SCHEMA market GRANT SELECT ON TABLES TO kalshibook_api;
GRANT USAGE ON SCHEMA private TO kalshibook_api;
GRANT SELECT ON private.api_keys TO kalshibook_api;
GRANT UPDATE (credits, last_used_at) ON private.api_keys TO kalshibook_api;
GRANT INSERT ON private.api_usage TO kalshibook_api;
"""

COLLECTOR_GRANTS = """
GRANT USAGE ON SCHEMA market TO kalshibook_collector;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA market TO kalshibook_collector;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA market TO kalshibook_collector;
ALTER DEFAULT PRIVILEGES IN SCHEMA market
    GRANT SELECT, INSERT, UPDATE ON TABLES TO kalshibook_collector;
ALTER DEFAULT PRIVILEGES IN SCHEMA market GRANT USAGE, SELECT ON SEQUENCES TO kalshibook_collector;
GRANT USAGE ON SCHEMA private TO kalshibook_collector;
"""
WRITER_PROGRESS = "SELECT to_regclass('private.writer_progress') IS NOT NULL"
"""The writer's commit marks exist from revision 0003 on (a migrate may stop before it)."""
WRITER_PROGRESS_GRANT = (
    "GRANT SELECT, INSERT, UPDATE, DELETE ON private.writer_progress TO kalshibook_collector"
)

LOGIN_INFO = "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"


def apply_service_grants(conn: Connection[Any]) -> None:
    """Create the service group roles if missing and grant them what they need (idempotent)."""
    database = sql.Identifier(conn.info.dbname)
    with conn.transaction():
        conn.execute(ENSURE_ROLES)
        conn.execute(API_GRANTS)
        conn.execute(COLLECTOR_GRANTS)
        row = conn.execute(WRITER_PROGRESS).fetchone()
        if row is not None and row[0]:
            conn.execute(WRITER_PROGRESS_GRANT)
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(
                database, sql.Identifier(API_ROLE), sql.Identifier(COLLECTOR_ROLE)
            )
        )
        conn.execute(
            sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(
                database, sql.Identifier(COLLECTOR_ROLE)
            )
        )


def create_service_login(
    conn: Connection[Any], kind: str, name: str, *, connection_limit: int = 50
) -> str:
    """A ``LOGIN`` role in the service group of ``kind`` (``api`` or ``collector``); its
    password, the only copy (sent to the server as a SCRAM verifier)."""
    group = SERVICE_ROLES.get(kind)
    if group is None:
        raise InvalidInput(f"unknown service {kind!r}: expected api or collector", "kind")
    if not ROLE_NAME.match(name) or name.startswith("pg_") or name in RESERVED | {group}:
        raise InvalidInput(f"invalid role name {name!r}", "name")
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
        raise InvalidInput(f"role {name!r} already exists", "name")
    harden_readers(conn)  # no TEMPORARY for PUBLIC in this database (a cloned one has it back)
    apply_service_grants(conn)
    password = secrets.token_urlsafe(24)
    with conn.transaction():
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} CONNECTION LIMIT {} IN ROLE {}").format(
                sql.Identifier(name),
                sql.Literal(scram_verifier(password)),
                sql.Literal(connection_limit),
                sql.Identifier(group),
            )
        )
    return password


def superuser_refusal(service: str, user: str, *, superuser: bool, refuse: bool) -> str | None:
    """What to say about a service connecting as ``user`` (pure): ``None`` when it is no
    superuser; else the message, which the caller raises (``refuse``) or logs as a warning."""
    if not superuser:
        return None
    verb = "refuses to run" if refuse else "is running"
    return (
        f"the {service} {verb} as the database superuser {user!r}: a bug or a stolen "
        f"connection could do anything to the cluster. Create its own login with "
        f"`kalshibook service-user create {service} NAME` (as the owner, after `kalshibook "
        f"migrate`) and point KALSHIBOOK_DATABASE_URL at it"
        + ("" if refuse else "; KALSHIBOOK_REFUSE_SUPERUSER=true makes this an error")
    )


def enforce_login(service: str, user: str, *, superuser: bool, refuse: bool) -> None:
    """At start: raise :class:`ConfigError` (``refuse``) or warn loudly for a superuser login
    (``user``, ``superuser``: the row of :data:`LOGIN_INFO`)."""
    message = superuser_refusal(service, user, superuser=superuser, refuse=refuse)
    if message is None:
        return
    if refuse:
        raise ConfigError(message)
    log.warning("%s", message)
