"""``kalshibook collect``: run the collector daemon until SIGTERM/SIGINT (exit 0 after a drain)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

import msgspec
import psycopg

from kalshibook.cli.common import check_schema
from kalshibook.collector.service import Collector
from kalshibook.gctune import tune_gc
from kalshibook.kalshi.auth import PrivateKey, load_private_key
from kalshibook.kalshi.rest import KalshiRest
from kalshibook.kalshi.ws import KalshiWebSocket
from kalshibook.settings import Settings
from kalshibook.storage.pool import make_pool
from kalshibook.storage.service_roles import enforce_login
from kalshibook.storage.urls import redact, unreachable
from kalshibook.storage.writer import Writer

__all__ = ("add_arguments", "run", "signal_handlers")

log = logging.getLogger("kalshibook.collector")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="connect without signing (only for a local simulator started with --no-auth)",
    )


@contextlib.contextmanager
def signal_handlers(loop: asyncio.AbstractEventLoop, on_stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM/SIGINT call ``on_stop`` while inside the block; previous handlers come back."""
    installed: list[signal.Signals] = []
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, on_stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
                pass
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _load_key(settings: Settings, no_auth: bool) -> PrivateKey | None:
    if no_auth:
        return None
    return load_private_key(settings.kalshi.private_key_path)


async def _check_schema(url: str, refuse_superuser: bool = False) -> None:
    login = await check_schema(url)
    enforce_login("collector", login.user, superuser=login.superuser, refuse=refuse_superuser)


async def main(settings: Settings, *, no_auth: bool = False) -> int:
    key = _load_key(settings, no_auth)
    url = settings.require_database()
    await _check_schema(url, settings.core.refuse_superuser)
    pool = make_pool(settings, min_size=1, max_size=4, name="kalshibook-collector")
    try:
        await pool.open(wait=True, timeout=30.0)
    except (psycopg.OperationalError, TimeoutError) as exc:
        await pool.close()
        raise unreachable(url, exc) from None
    try:
        async with Writer(settings, pool) as writer, KalshiRest(settings.kalshi, key) as rest:
            ws = KalshiWebSocket(settings.kalshi, key)
            collector = Collector(settings, pool, writer, rest=rest, ws=ws)
            loop = asyncio.get_running_loop()
            with signal_handlers(loop, collector.stop):
                shown = msgspec.to_builtins(settings)
                shown["core"]["database_url"] = redact(url)
                shown["api"]["cursor_secret"] = "***" if settings.api.cursor_secret else ""
                log.debug("settings %s", msgspec.json.encode(shown).decode())
                log.info(
                    "collector starting ws=%s rest=%s database=%s",
                    settings.kalshi.ws_url,
                    settings.kalshi.rest_url,
                    redact(url),
                )
                await collector.run()
    finally:
        await pool.close()
    log.info("collector exited cleanly")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    tune_gc()
    return asyncio.run(main(settings, no_auth=bool(getattr(args, "no_auth", False))))
