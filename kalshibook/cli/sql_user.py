"""`kalshibook sql-user create NAME | drop NAME`: read-only SQL login roles."""

from __future__ import annotations

import argparse

import psycopg

from kalshibook.cli.common import check_schema_sync
from kalshibook.settings import Settings
from kalshibook.storage.reader_limits import TEMP_FILE_LIMIT
from kalshibook.storage.sql_users import create_sql_user, drop_sql_user
from kalshibook.storage.urls import redact, unreachable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a read-only login role (password shown once)")
    create.add_argument("name", help="role name: [a-z_][a-z0-9_]{0,62}")
    create.add_argument(
        "--statement-timeout", default="30s", help="per-statement limit, e.g. 30s, 500ms, 2min"
    )
    create.add_argument("--connection-limit", type=int, default=5, help="concurrent sessions")
    create.add_argument(
        "--temp-file-limit",
        default=TEMP_FILE_LIMIT,
        help="disk one session's query may spill, e.g. 512MB (the reader cannot raise it)",
    )
    drop = sub.add_parser("drop", help="drop a role made by `sql-user create`")
    drop.add_argument("name")


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.require_database()
    if args.action == "create":  # its grants need the schema; a drop does not
        check_schema_sync(url)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    with conn:
        if args.action == "create":
            user = create_sql_user(
                conn,
                args.name,
                statement_timeout=args.statement_timeout,
                connection_limit=args.connection_limit,
                temp_file_limit=args.temp_file_limit,
            )
            info = conn.info
            print(f"created read-only role {user.name} on {redact(url)}")
            print(f"  password (shown once): {user.password}")
            print(
                f"  connect: psql 'postgresql://{user.name}@{info.host}:{info.port}/"
                f"{user.database}'  (statement timeout {user.statement_timeout}, "
                f"at most {user.connection_limit} connections, "
                f"temp files {user.temp_file_limit})"
            )
            return 0
        drop_sql_user(conn, args.name)
        print(f"dropped role {args.name}")
        return 0
