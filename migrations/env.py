"""Alembic environment: raw-SQL migrations, URL from the caller or KALSHIBOOK_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from kalshibook.storage.urls import sqlalchemy_url

config = context.config


def _url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("KALSHIBOOK_DATABASE_URL", "")
    if not url:
        raise RuntimeError("KALSHIBOOK_DATABASE_URL is not set")
    return sqlalchemy_url(str(url))


def run_migrations_offline() -> None:
    context.configure(url=_url(), literal_binds=True, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


# A migration that cannot get a lock gives up quickly (and kalshibook.storage.migrate runs the
# revision again) instead of queueing behind, or deadlocking with, TimescaleDB's policy jobs: it
# usually stops waiting before PostgreSQL's deadlock check (deadlock_timeout, 1 s by default) runs
# in a job that waits for us, so a job rarely fails because of a migration (it can still lose when
# it began waiting well before the migration did; its next run then succeeds).
LOCK_TIMEOUT = "500ms"


def run_migrations_online() -> None:
    engine = create_engine(
        _url(), poolclass=pool.NullPool, connect_args={"options": f"-c lock_timeout={LOCK_TIMEOUT}"}
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=None, transaction_per_migration=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
