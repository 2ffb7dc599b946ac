"""What the ``bench_*.py`` scripts share: their BENCHMARKS.md sections, percentiles, scratch
databases, the database URL, local ports and child processes.

The scripts import it as a sibling module (``import benchlib``): they are run as files
(``python bench/bench_api.py``, as ``scripts/bench.sh`` runs them), which puts ``bench/`` on
``sys.path``, and mypy finds it the same way (``bench/`` is not a package). Not named
``bench_*.py``: ``scripts/bench.sh`` runs every one of those.
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from kalshibook.storage.urls import redact, with_database

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"

# -- BENCHMARKS.md -------------------------------------------------------------------------------


def markers(name: str) -> tuple[str, str]:
    """The comments around the ``name`` section of BENCHMARKS.md."""
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def write_section(path: Path, name: str, section: str, after: str | None = None) -> None:
    """Replace the ``name`` section of ``path`` (the text between its markers); a new one goes
    after the ``after`` section, or at the end (a new file starts with a title)."""
    begin, end = markers(name)
    text = path.read_text() if path.exists() else "# kalshibook benchmarks\n"
    block = f"{begin}\n{section.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    elif after is not None and markers(after)[1] in text:
        head, tail = text.split(markers(after)[1], 1)
        text = head + markers(after)[1] + "\n\n" + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


# -- figures -------------------------------------------------------------------------------------
# Two percentile definitions are in use; each script keeps the one its published figures were
# computed with. They differ at the top: of 100 samples, pct_round's p99 is the second largest,
# pct_floor's the largest.


def pct_round(samples: list[float], q: float) -> float:
    """The ``q`` quantile: the sorted sample at index ``round(q * (n - 1))``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def pct_floor(samples: list[float], q: float) -> float:
    """The ``q`` quantile: the sorted sample at index ``floor(q * n)`` (at most ``n - 1``)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median_min_max(xs: list[float]) -> str:
    """``median (min–max)``, whole numbers with thousands separators."""
    return f"{statistics.median(xs):,.0f} ({min(xs):,.0f}–{max(xs):,.0f})"


# -- databases -----------------------------------------------------------------------------------


def saved_database_url() -> str:
    """The URL ``make db`` saved in ``.data/database_url`` ('' when there is none)."""
    path = ROOT / ".data" / "database_url"
    return path.read_text().strip() if path.exists() else ""


def default_url() -> str:
    """``KALSHIBOOK_DATABASE_URL``, else the URL ``make db`` saved."""
    url = os.environ.get("KALSHIBOOK_DATABASE_URL") or saved_database_url()
    if not url:
        raise SystemExit("no database: set KALSHIBOOK_DATABASE_URL or run `make db`")
    return url


def create_database(server_url: str, name: str, *, replace: bool = False) -> str:
    """Create the database ``name`` on the server of ``server_url`` (with ``replace``, after
    dropping one of that name); its URL."""
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        if replace:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop the database ``name`` on the server of ``server_url``, if there is one."""
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def run_in_scratch_database(url: str, prefix: str, run: Callable[[str], object]) -> int:
    """Call ``run`` with the URL of a scratch database ``{prefix}_{pid}``, created and migrated on
    the server of ``url`` (when ``url`` is empty, of the URL ``make db`` saved) and dropped
    afterwards. The exit status: 0, or 2 when there is no URL or the database cannot be created
    (said on stderr)."""
    from kalshibook.storage import migrate  # alembic: imported by the scripts that migrate only

    url = url or saved_database_url()
    if not url:
        print("KALSHIBOOK_DATABASE_URL is not set (run `make db`)", file=sys.stderr)
        return 2
    scratch = f"{prefix}_{os.getpid()}"
    try:
        scratch_url = create_database(url, scratch)
    except psycopg.Error as exc:
        admin = redact(with_database(url, "postgres"))
        print(f"cannot create a scratch database on {admin}: {exc}", file=sys.stderr)
        return 2
    try:
        migrate.upgrade(scratch_url)
        run(scratch_url)
    finally:
        drop_database(url, scratch)
    return 0


def reuse_or_create_database(server_url: str, name: str, reuse: bool) -> bool:
    """With ``reuse``, keep the database ``name`` if there is one; otherwise (re)create it empty.
    Whether an existing database is reused."""
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and not reuse:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if not (exists and reuse):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return bool(exists) and reuse


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


IDLE_CLOSED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
"""What a keep-alive connection the server closed while idle raises at the next request."""


def http_get(
    conn: http.client.HTTPConnection, target: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """``GET target`` on a keep-alive connection, body read in full: (status, body). uvicorn
    closes a connection idle for 5 s (its ``timeout_keep_alive``), as between the slow requests
    of the Apache edition's candles; such a request is sent again once on a new connection (the
    benches' GETs are all idempotent)."""
    try:
        return _get(conn, target, headers or {})
    except IDLE_CLOSED:
        conn.close()
    return _get(conn, target, headers or {})


def _get(
    conn: http.client.HTTPConnection, target: str, headers: dict[str, str]
) -> tuple[int, bytes]:
    conn.request("GET", target, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def rss_kib(pid: int) -> int | None:
    """The resident memory of process ``pid`` (``VmRSS``), KiB; None when it is gone (or has no
    such line: a zombie)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
