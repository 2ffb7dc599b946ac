"""`kalshibook migrate`: the schema to a revision, then the storage policies to the settings."""

from __future__ import annotations

import argparse
import logging

from alembic.util import CommandError

from kalshibook.errors import SchemaError
from kalshibook.settings import Settings
from kalshibook.storage import migrate
from kalshibook.storage.urls import redact


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    parser.add_argument(
        "--downgrade", action="store_true", help="downgrade to --revision instead of upgrading"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    logging.getLogger("alembic").setLevel(logging.WARNING)
    url = settings.require_database()
    try:
        if args.downgrade:
            migrate.downgrade(url, args.revision, settings.storage)
        else:
            migrate.upgrade(url, args.revision, settings.storage)
    except CommandError as exc:  # e.g. an unknown --revision
        raise SchemaError(f"{redact(url)}: {exc}") from None
    print(f"{redact(url)}: schema at revision {migrate.current_revision(url)}")
    return 0
