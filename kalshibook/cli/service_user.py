"""`kalshibook service-user create api|collector NAME`: the login the API or the collector runs as.

Run as the database owner after ``kalshibook migrate``. The login joins ``kalshibook_api`` or
``kalshibook_collector`` (:mod:`kalshibook.storage.service_roles`). Its database URL, password
included, is printed once, or written to ``--url-file`` (created with mode 0600, never printed).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

from kalshibook.cli.common import check_schema_sync
from kalshibook.errors import ConfigError
from kalshibook.settings import Settings
from kalshibook.storage.service_roles import SERVICE_ROLES, create_service_login
from kalshibook.storage.urls import redact, unreachable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create the login of a service (password shown once)")
    create.add_argument("service", choices=sorted(SERVICE_ROLES), help="which service")
    create.add_argument("name", help="role name: [a-z_][a-z0-9_]{0,62}")
    create.add_argument(
        "--url-file", type=Path, default=None, help="write the login's URL here (mode 0600)"
    )


def login_url(owner_url: str, name: str, password: str) -> str:
    """``owner_url`` with ``name:password`` as its user (same host, port, database, options)."""
    parts = urlsplit(owner_url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{quote(name, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (refuses to overwrite)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; remove it first") from None
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.require_database()
    check_schema_sync(url)
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    with conn:
        password = create_service_login(conn, args.service, args.name)
    login = login_url(url, args.name, password)
    print(f"created {args.service} login {args.name} on {redact(url)}")
    if args.url_file is not None:
        write_private(args.url_file, login)
        print(f"  its URL is in {args.url_file} (mode 0600)")
    else:
        print(f"  KALSHIBOOK_DATABASE_URL (shown once): {login}")
    return 0
