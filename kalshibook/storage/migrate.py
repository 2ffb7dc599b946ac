"""Run alembic migrations programmatically, with clear errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config

from kalshibook.errors import DatabaseUnavailable, SchemaError
from kalshibook.storage.urls import redact

ROOT = Path(__file__).resolve().parents[2]

CHECK_TIMESCALEDB = """
SELECT (SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb') AS available,
       current_setting('shared_preload_libraries') AS preload
"""


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = url
    return cfg


def preflight(url: str) -> None:
    """Fail with one readable line when the server is unreachable or lacks TimescaleDB."""
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            row = conn.execute(CHECK_TIMESCALEDB).fetchone()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {reason}") from None
    except Exception as exc:  # noqa: BLE001 - malformed URLs raise various non-psycopg errors
        raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {exc}") from None
    assert row is not None
    available, preload = row
    if not available:
        raise SchemaError(
            f"{redact(url)}: the server has no timescaledb extension installed "
            "(use the timescale/timescaledb image or `make db`)"
        )
    if "timescaledb" not in str(preload):
        raise SchemaError(
            f"{redact(url)}: timescaledb is installed but not in shared_preload_libraries"
        )


def upgrade(url: str, revision: str = "head") -> None:
    preflight(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    preflight(url)
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
        return None if row is None else str(row[0])
