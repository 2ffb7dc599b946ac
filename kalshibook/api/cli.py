"""`kalshibook serve`: the REST API under uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from kalshibook.api.app import create_app
from kalshibook.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (KALSHIBOOK_API_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (KALSHIBOOK_API_PORT)")
    parser.add_argument(
        "--no-access-log", action="store_true", help="do not log one line per request"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_database()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host or settings.api.host,
        port=args.port if args.port is not None else settings.api.port,
        log_level=settings.core.log_level.lower(),
        access_log=not args.no_access_log,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
