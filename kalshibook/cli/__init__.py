"""`kalshibook` command line: one entry point, one module per subcommand in this package.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args, settings) -> int`` (the
simulator's ``run(args)`` needs no settings). Logging is configured once, here, for every command
(:func:`kalshibook.cli.logs.configure_logging`). Errors from the :class:`KalshibookError` tree
print as one line on stderr with the error's exit code; so do, with exit 1, the database, file and
decoding errors a command did not translate (:func:`kalshibook.cli.common.failure_line`): no
traceback reaches the user, no database password either.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg

from kalshibook.cli.common import failure_line
from kalshibook.cli.logs import configure_logging, settings_secrets
from kalshibook.errors import KalshibookError
from kalshibook.settings import Settings, unknown_variables

__all__ = ("COMMANDS", "build_parser", "main")

log = logging.getLogger("kalshibook")

# name -> (module, help)
DESCRIPTION = (
    "kalshibook: record Kalshi's public market data into TimescaleDB and serve it back "
    "(configuration: KALSHIBOOK_* environment variables, see .env.example)"
)
COMMANDS: dict[str, tuple[str, str]] = {
    "migrate": (
        "kalshibook.cli.migrate",
        "upgrade the database schema, then apply the KALSHIBOOK_STORAGE_* compression and "
        "retention policies",
    ),
    "collect": (
        "kalshibook.cli.collect",
        "run the collector daemon (Kalshi WS + REST -> TimescaleDB)",
    ),
    "serve": ("kalshibook.cli.serve", "run the REST API"),
    "keys": ("kalshibook.cli.keys", "create, list, revoke and top up API keys"),
    "sql-user": ("kalshibook.cli.sql_user", "create or drop read-only SQL login roles"),
    "service-user": (
        "kalshibook.cli.service_user",
        "create the least-privilege database login of the API or the collector",
    ),
    "status": (
        "kalshibook.cli.status",
        "data freshness, gaps, sizes and policy runs (non-zero exit when unhealthy)",
    ),
    "backfill": (
        "kalshibook.cli.backfill",
        "load history from Kalshi's REST: hierarchy, settlements, trades, Kalshi's candles",
    ),
    "verify": (
        "kalshibook.cli.verify",
        "compare kalshibook's candles with Kalshi's official candlesticks (non-zero exit over a "
        "threshold)",
    ),
    "refresh-candles": ("kalshibook.cli.refresh_candles", "refresh candle aggregates for a window"),
    "rebuild-extents": (
        "kalshibook.cli.rebuild_extents",
        "recompute the per-market delta extents and days after deltas were written outside the "
        "collector, then count the ended days' deltas; recompute the book days after snapshots "
        "were updated or deleted",
    ),
    "dedupe-trades": (
        "kalshibook.cli.dedupe_trades",
        "merge trades stored twice (a live copy on whole seconds and its REST copy) in databases "
        "recorded before kalshibook merged them",
    ),
    "export": (
        "kalshibook.cli.export",
        "write Parquet / gzip CSV files of recorded data (one per table, market and UTC day)",
    ),
    "sim": ("kalshibook.cli.sim", "run the local Kalshi-protocol exchange simulator"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one readable line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Any]]:
    parser = _Parser(prog="kalshibook", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules: dict[str, Any] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
        configure_logging(settings.core.log_level, settings_secrets(settings))
        for name, close in unknown_variables(os.environ):
            hint = f"; did you mean {close}?" if close else ""
            log.warning("%s is not a kalshibook setting and is ignored%s", name, hint)
        module = modules[args.command]
        if args.command == "sim":
            return int(module.run(args))
        return int(module.run(args, settings))
    except KalshibookError as exc:
        print(f"kalshibook {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except (psycopg.Error, OSError, msgspec.DecodeError) as exc:
        print(f"kalshibook {args.command}: {failure_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
