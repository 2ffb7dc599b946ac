"""`kalshibook serve`: the REST API under uvicorn.

uvicorn's own logging configuration is off (``log_config=None``): its loggers propagate to the one
handler :func:`kalshibook.cli.logs.configure_logging` installed, like every other command's.
"""

from __future__ import annotations

import argparse
import logging

import psycopg
import uvicorn

from kalshibook.api.app import create_app
from kalshibook.gctune import tune_gc
from kalshibook.settings import Settings
from kalshibook.storage.service_roles import LOGIN_INFO, enforce_login
from kalshibook.storage.urls import unreachable

log = logging.getLogger(__name__)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {text!r}")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (KALSHIBOOK_API_HOST)")
    parser.add_argument("--port", type=_port, default=None, help="port (KALSHIBOOK_API_PORT)")
    parser.add_argument(
        "--no-access-log", action="store_true", help="do not log one line per request"
    )


def _login(url: str) -> tuple[str, bool]:
    """``(user, superuser)`` of the login of ``url`` (psycopg.Error when it cannot connect)."""
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(LOGIN_INFO).fetchone()
    return (str(row[0]), bool(row[1])) if row else ("?", False)


def _preflight(url: str, refuse_superuser: bool, replica_urls: list[str]) -> None:
    """Fail with one line before uvicorn starts (a lifespan failure prints a traceback); refuse
    or warn about a superuser login, the replicas' logins included (a replica that cannot be
    reached now is only warned about: the API skips it until its lag check finds it)."""
    try:
        user, superuser = _login(url)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    enforce_login("api", user, superuser=superuser, refuse=refuse_superuser)
    for replica in replica_urls:
        try:
            user, superuser = _login(replica)
        except psycopg.Error as exc:
            log.warning("%s; the API reads from it once it answers", unreachable(replica, exc))
            continue
        enforce_login("api", user, superuser=superuser, refuse=refuse_superuser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    _preflight(
        settings.require_database(),
        settings.core.refuse_superuser,
        settings.replica.url_list(),
    )
    app = create_app(settings)
    tune_gc()  # after the app is built: its routes, schemas and OpenAPI document are frozen
    config = uvicorn.Config(
        app,
        host=args.host or settings.api.host,
        port=args.port if args.port is not None else settings.api.port,
        log_config=None,
        log_level=settings.core.log_level.lower(),
        access_log=not args.no_access_log,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        limit_concurrency=settings.api.max_connections,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
