"""What several subcommands share: the schema check, time options, and the last-resort error line.

- :func:`check_schema` is the one test that a database holds this version's kalshibook schema;
  every command that reads or writes the schema runs it first, so a database that was never
  migrated (or migrated by an older kalshibook) is one line saying to run ``kalshibook migrate``,
  not a driver error about a missing relation.
- :func:`parse_instant` reads ``--start`` / ``--end`` of ``backfill``, ``verify`` and
  ``refresh-candles``: a UTC day ``YYYY-MM-DD`` (its midnight), RFC 3339 or Unix seconds.
- :func:`failure_line` words an error no command turned into a :class:`KalshibookError` (a
  database statement that failed, a file that could not be written) as one line for
  :func:`kalshibook.cli.main`: no traceback, passwords of database URLs scrubbed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time
from typing import Any, Final, NamedTuple

import msgspec
import psycopg

from kalshibook.domain.times import LAST_DAY, MIN_TIME, parse_day, parse_time
from kalshibook.errors import ConfigError, InvalidInput, SchemaError, StorageError
from kalshibook.storage.urls import redact, scrub, unreachable

__all__ = (
    "EXIT_NOT_REFRESHED",
    "EXIT_NO_MATCH",
    "SCHEMA_CHECK",
    "Login",
    "check_schema",
    "check_schema_sync",
    "failure_line",
    "open_checked",
    "parse_instant",
    "split_names",
)

# Exit codes beyond 0 (done), 1 (failed: database unreachable or not migrated, markets failed,
# mismatches) and 2 (bad configuration or arguments). They mean what ``kalshibook status``'s
# codes of the same number mean, for the commands that move or read data.
EXIT_NO_MATCH: Final = 3
"""Nothing of what was asked for exists (the unknown names are on stderr): no data, like
``status``'s 3."""
EXIT_NOT_REFRESHED: Final = 5
"""The data was loaded, but the candle aggregates were not refreshed over it (this login may not):
``status`` exits 5 when a candle refresh policy fails."""

SCHEMA_CHECK: Final = """
SELECT 'market.orderbook_deltas' = ANY(t.names),
       ARRAY['private.writer_progress', 'market.backfill_progress', 'market.delta_extents',
             'market.delta_days', 'market.book_days'] <@ t.names,
       current_user, (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
FROM (SELECT coalesce(array_agg(schemaname || '.' || tablename), '{}') AS names
      FROM pg_catalog.pg_tables WHERE schemaname IN ('market', 'private')) t
"""
"""The first table of the schema (0001), and the later ones the commands write (0003's commit
marks, 0007's backfill progress, 0009's delta extents, 0015's delta days): on an older schema the
collector's every batch of deltas would fail and be retried, then spooled, forever. Read from the
catalogue, which every login may read (``to_regclass`` needs ``USAGE`` on the schema: a SQL user
has none on ``private``)."""


class Login(NamedTuple):
    """Who the checked URL logs in as."""

    user: str
    superuser: bool


async def check_schema(url: str) -> Login:
    """Raise :class:`~kalshibook.errors.DatabaseUnavailable` when ``url`` cannot be reached and
    :class:`~kalshibook.errors.SchemaError` (saying to run ``kalshibook migrate``) when it holds
    no kalshibook schema, or an older one; else return the login."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    try:
        async with conn:
            row = await (await conn.execute(SCHEMA_CHECK)).fetchone()
    except psycopg.Error as exc:
        raise _check_failed(url, exc) from None
    return _login(url, row)


def check_schema_sync(url: str) -> Login:
    """:func:`check_schema` for the commands that run without an event loop (``keys``,
    ``sql-user``, ``service-user``; also called from inside a running loop, e.g. a test)."""
    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None
    try:
        with conn:
            row = conn.execute(SCHEMA_CHECK).fetchone()
    except psycopg.Error as exc:
        raise _check_failed(url, exc) from None
    return _login(url, row)


def _check_failed(url: str, exc: psycopg.Error) -> StorageError:
    return StorageError(f"checking the schema of {redact(url)} failed: {_first_line(exc)}")


def _login(url: str, row: tuple[Any, ...] | None) -> Login:
    if row is None or not row[0]:
        raise SchemaError(f"{redact(url)} has no kalshibook schema: run `kalshibook migrate`")
    if not row[1]:
        raise SchemaError(
            f"the kalshibook schema in {redact(url)} is older than this version: "
            "run `kalshibook migrate`"
        )
    return Login(str(row[2]), bool(row[3]))


def parse_instant(value: str, name: str) -> datetime:
    """A UTC day ``YYYY-MM-DD`` (that day's midnight, UTC), or an instant in RFC 3339 with an
    offset or Unix seconds; :class:`InvalidInput` naming ``name`` otherwise."""
    try:
        return parse_time(value, name)
    except InvalidInput:
        pass
    try:
        return datetime.combine(parse_day(value.strip(), name), time(0), tzinfo=UTC)
    except InvalidInput:
        raise InvalidInput(
            f"{name}: {value!r} is not a UTC day YYYY-MM-DD (e.g. 2026-01-15), a time with a "
            "UTC offset (RFC 3339, e.g. 2026-01-15T00:00:00Z) or Unix seconds, from "
            f"{MIN_TIME.date()} to {LAST_DAY}",
            name,
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return scrub(text.splitlines()[0]) if text else type(exc).__name__


def failure_line(exc: Exception) -> str:
    """One line for an error that reached the command line's top: a database error, a file
    error (``OSError``: its file name and reason), a file that does not decode."""
    if isinstance(exc, psycopg.OperationalError):
        return f"the database connection failed: {_first_line(exc)}"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return f"this database login may not do that: {_first_line(exc)}"
    if isinstance(exc, psycopg.Error):
        return f"the database refused a statement: {_first_line(exc)}"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror or _first_line(exc)}"
    if isinstance(exc, msgspec.DecodeError):
        return f"cannot decode a file: {_first_line(exc)}"
    return _first_line(exc)


async def open_checked(url: str) -> psycopg.AsyncConnection[Any]:
    """The schema checked (:func:`check_schema`), then one autocommit connection for a command's
    work; a server that cannot be reached is one line (:func:`unreachable`)."""
    await check_schema(url)
    try:
        return await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise unreachable(url, exc) from None


def split_names(values: Iterable[str], flag: str) -> tuple[str, ...]:
    """The names of a ``flag`` whose values are comma-separated lists (repeatable or not),
    trimmed, repeats dropped; an empty name (``''``, ``A,,B``, ``,``) is refused: it must not
    quietly mean every market, or nothing."""
    out: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if not name:
                raise ConfigError(f"{flag} {value!r}: empty name")
            out.append(name)
    return tuple(dict.fromkeys(out))
