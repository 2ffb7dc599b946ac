"""The simulator's network side: Kalshi REST and WebSocket on one port, with fault injection.

One asyncio process. ``websockets``' server accepts every TCP connection; HTTP requests go to
:class:`~kalshibook.sim.gateway.HttpGateway` (REST answers, auth, the upgrade to the WebSocket);
each WebSocket connection is a :class:`~kalshibook.sim.session.Session` whose client commands
:mod:`~kalshibook.sim.commands` runs. This module holds the configuration, the server's lifecycle,
the generation pump and dispatch, and the fault controls.

Throughput: the model runs in a pump task at the configured frame rate; every emitted record's
``msg`` is encoded once (msgspec) and spliced into each subscriber's frame with its ``sid``/``seq``;
frames are framed by hand (server frames are unmasked and uncompressed) and written with one
``transport.write`` per connection per tick. Measured on a 2-CPU machine with
``python -m kalshibook.cli.sim_bench`` (server and reader in separate processes, one connection
subscribed to every channel of 1,000 markets, the reader decoding every frame and checking seq):
50,000 frames/s asked -> 50,000 delivered (also with ``--truth``), 100,000 -> 100,000;
beyond that it saturates at roughly 85-100k frames/s. No seq gap at any rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from kalshibook.errors import ConfigError
from kalshibook.kalshi.auth import WS_PATH, PublicKey, load_public_key
from kalshibook.sim import rest
from kalshibook.sim.commands import on_message
from kalshibook.sim.gateway import HttpGateway, wall_ms
from kalshibook.sim.model import Exchange
from kalshibook.sim.recorder import TruthWriter
from kalshibook.sim.records import Emit, ModelConfig
from kalshibook.sim.session import (
    CHANNEL_OF,
    DATA_KINDS,
    MALFORMED_FRAME,
    ORDERBOOK,
    Session,
    Sub,
    encode,
)
from kalshibook.sim.truth import Truth, load_truth

__all__ = ("SimConfig", "SimServer")

log = logging.getLogger("kalshibook.sim")
_ws_log = logging.getLogger("kalshibook.sim.ws")
_ws_log.setLevel(logging.WARNING)

_HEARTBEAT: Final = b"heartbeat"


class SimConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the simulator needs; the CLI builds one from its flags."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 = pick a free port (``SimServer.port`` tells which)."""
    seed: int = 1
    markets: int = 50
    start_behind_s: float = 0.0
    """Start the exchange clock this many seconds before the wall clock (tests that drive a
    compressed clock and then read what is already in the past)."""
    rate: float = 200.0
    """Data frames per second generated across all channels (0 = none unless ``step`` is called)."""
    lifetime: float = 600.0
    """Seconds a market trades (open -> close) on the compressed clock."""
    new_markets_per_min: float | None = None
    public_keys: dict[str, str] = msgspec.field(default_factory=dict)
    """Key id -> public key (PEM text or a file path)."""
    no_auth: bool = False
    auth_window: float = 60.0
    """Largest accepted |now - KALSHI-ACCESS-TIMESTAMP|, seconds (Kalshi's value is unknown)."""
    truth_path: str | None = None
    truth_checkpoint_every: int = 200
    ready_file: str | None = None
    heartbeat: float = 10.0
    """Seconds between server pings (body ``heartbeat``), as Kalshi does."""
    tick: float = 0.005
    max_buffer_bytes: int = 64 << 20
    """Unsent bytes a connection may accumulate before its subscriptions fail with error 25."""
    autopump: bool = True
    """Run the model on the clock; False = only :meth:`SimServer.step` makes it move."""
    trade_history: int = 500_000
    history_hours: float = 0.0
    """Exchange history generated before the simulator listens: markets created, traded, closed
    and settled this many hours before the wall clock (0 = none). Kalshi's ``/historical/cutoff``
    then lies in the middle of it, so older trades and settled markets are only served by the
    ``/historical/...`` endpoints."""
    history_rate: float = 20.0
    """Data frames per exchange second while generating the history."""
    # Faults (0 = off).
    drop_every: float = 0.0
    skip_seq_every: int = 0
    malformed_every: int = 0
    error_every: float = 0.0
    error_code: int = 10
    rest_429_burst: int = 0
    rest_429_every: float = 0.0
    stall_every: float = 0.0
    stall_for: float = 0.0
    yes_price_default: bool = False
    """Kalshi's announced flip of ``use_yes_price``'s default to true (KALSHI_API.md §4): an
    orderbook subscription that does not say ``use_yes_price: false`` would get its NO levels on
    the YES scale, which the simulator does not render; it refuses such a subscription (code 11)
    rather than send NO-leg prices under a YES-scale default."""


class SimServer:
    """The simulator: ``async with SimServer(SimConfig(...)) as sim:``.

    ``sim.rest_url`` / ``sim.ws_url`` are the Kalshi base URLs to point a client at;
    ``sim.model`` is the live :class:`~kalshibook.sim.model.Exchange`; the fault methods
    (``drop_all``, ``skip_seq``, ``send_malformed``, ``send_error``, ``start_429_burst``,
    ``stall``) act immediately and deterministically.
    """

    def __init__(
        self, config: SimConfig | None = None, *, keys: Mapping[str, PublicKey] | None = None
    ) -> None:
        self.config = cfg = config or SimConfig()
        if cfg.error_code not in (10, 25):
            raise ConfigError(f"error code must be 10 or 25, got {cfg.error_code}")
        keys_by_id: dict[str, PublicKey] = {
            k: load_public_key(v) for k, v in cfg.public_keys.items()
        }
        keys_by_id.update(keys or {})
        if not cfg.no_auth and not keys_by_id:
            raise ConfigError(
                "no public key configured: give --public-key KEY_ID=PATH (repeatable) or --no-auth"
            )
        self._model: Exchange | None = None
        self._server: Server | None = None
        self._sessions: list[Session] = []
        self._session_n = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._truth: TruthWriter | None = None
        self._stall_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Condition()
        self.host = cfg.host
        self.port = cfg.port
        self.stats: dict[str, int] = {
            "frames_generated": 0,
            "bytes_sent": 0,
            "rest_requests": 0,
            "rest_429": 0,
            "auth_rejected": 0,
            "ws_connections": 0,
            "overflows": 0,
            "commands_lost": 0,
            "commands_refused": 0,
        }
        self.unanswered: dict[str, list[bool]] = {}
        """Commands to lose, by name (:meth:`leave_unanswered`)."""
        self.refusals: dict[str, list[int]] = {}
        """Error codes answering commands, by name or ``name:action`` (:meth:`refuse_next`)."""
        self.yes_price_default = cfg.yes_price_default
        self._http = HttpGateway(self, keys_by_id, no_auth=cfg.no_auth, auth_window=cfg.auth_window)

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def model(self) -> Exchange:
        if self._model is None:
            raise RuntimeError("the simulator is not started")
        return self._model

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """Kalshi's REST base, e.g. ``http://127.0.0.1:PORT/trade-api/v2``."""
        return f"http://{self._netloc}{rest.REST_PREFIX}"

    @property
    def ws_url(self) -> str:
        """Kalshi's WebSocket URL, e.g. ``ws://127.0.0.1:PORT/trade-api/ws/v2``."""
        return f"ws://{self._netloc}{WS_PATH}"

    @property
    def truth_path(self) -> Path | None:
        return None if self._truth is None else self._truth.path

    @property
    def sessions(self) -> int:
        """Open WebSocket connections."""
        return len(self._sessions)

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        host = "127.0.0.1" if cfg.host == "localhost" else cfg.host
        self.host = host
        self._model = Exchange(
            ModelConfig(
                seed=cfg.seed,
                markets=cfg.markets,
                lifetime_s=cfg.lifetime,
                new_markets_per_min=cfg.new_markets_per_min,
                start_ms=wall_ms() - int((cfg.start_behind_s + cfg.history_hours * 3600) * 1000),
                trade_history=cfg.trade_history,
            )
        )
        if cfg.history_hours > 0:
            self._model.cutoff_ms = self._model.now_ms + int(cfg.history_hours * 1_800_000)
        history_end = wall_ms() - int(cfg.start_behind_s * 1000)
        if cfg.truth_path:
            self._truth = TruthWriter(
                cfg.truth_path,
                self._model,
                checkpoint_every=cfg.truth_checkpoint_every,
                meta=msgspec.to_builtins(cfg),
            )
        self._server = await serve(
            self._handler,
            host,
            cfg.port,
            process_request=self._http.process_request,
            compression=None,
            ping_interval=None,
            ping_timeout=None,
            close_timeout=2,
            max_size=1 << 20,
            logger=_ws_log,
        )
        if cfg.history_hours > 0:
            self._generate_history(history_end)
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        if cfg.autopump:
            self._spawn(self._pump(), "pump")
        if cfg.drop_every > 0:
            self._spawn(self._every(cfg.drop_every, self.drop_all), "drop")
        if cfg.error_every > 0:
            self._spawn(
                self._every(cfg.error_every, lambda: self.send_error(cfg.error_code)), "error"
            )
        if cfg.rest_429_every > 0 and cfg.rest_429_burst > 0:
            self._spawn(
                self._every(cfg.rest_429_every, lambda: self.start_429_burst(cfg.rest_429_burst)),
                "429",
            )
        if cfg.stall_every > 0 and cfg.stall_for > 0:
            self._spawn(self._every(cfg.stall_every, lambda: self.stall(cfg.stall_for)), "stall")
        if cfg.ready_file:
            path = Path(cfg.ready_file)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(f"{self.host}:{self.port}\n")
            os.replace(tmp, path)
        log.info("simulator listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._server is not None:
            for sess in list(self._sessions):
                sess.transport.abort()
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        pending = list(self._bg)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._truth is not None:
            self._truth.close()
        self._remove_ready_file()

    def _remove_ready_file(self) -> None:
        if self.config.ready_file:
            with contextlib.suppress(FileNotFoundError):
                Path(self.config.ready_file).unlink()

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"sim-{name}"))

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _every(self, seconds: float, action: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            action()

    # --- generation -------------------------------------------------------------------------------

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        rate = self.config.rate
        tick = self.config.tick
        t0 = loop.time()
        done = 0.0
        while True:
            await asyncio.sleep(tick)
            due = 0
            if rate > 0:
                target = rate * (loop.time() - t0)
                due = int(target - done)
                cap = max(1, int(rate * 0.2))
                if due > cap:  # fell behind: do not try to catch up more than 200 ms
                    done = target - cap
                    due = cap
            produced = self._generate(wall_ms(), due)
            done += produced

    def _generate_history(self, until_ms: int) -> None:
        """Run the model one exchange second at a time up to ``until_ms`` (nobody listens yet;
        the truth file, if any, records it all)."""
        model = self.model
        frames = max(0, int(self.config.history_rate))
        t = model.now_ms
        while t < until_ms:
            t = min(until_ms, t + 1000)
            out = model.advance(t, frames)
            if out and self._truth is not None:
                self._dispatch(out)

    def step(self, frames: int = 0, now_ms: int | None = None) -> list[Emit]:
        """Advance the exchange now (to ``now_ms`` or the wall clock) by ``frames`` data frames,
        publish everything and return what was emitted (for tests; works with ``autopump``
        off)."""
        out = self.model.advance(wall_ms() if now_ms is None else now_ms, frames)
        if out:
            self._dispatch(out)
        self._flush_all()
        return out

    def _generate(self, now_ms: int, frames: int) -> int:
        out = self.model.advance(now_ms, frames)
        produced = 0
        if out:
            self._dispatch(out)
            for e in out:
                if e.kind in DATA_KINDS:
                    produced += 1
        self._flush_all()
        return produced

    def _dispatch(self, out: list[Emit]) -> None:
        sessions = self._sessions
        truth = self._truth
        bodies: list[bytes] = []
        enc = encode
        channel_of = CHANNEL_OF
        for e in out:
            channel = channel_of.get(e.kind)
            if truth is None and (channel is None or not sessions):
                continue
            body = enc(e.msg)
            if truth is not None:
                bodies.append(body)
            if channel is None:
                continue
            ticker = e.ticker
            for sess in sessions:
                route = sess.routes.get(channel)
                if route is None:
                    continue
                all_subs, by = route
                for sub in all_subs:
                    sess.push(e.kind, sub, body)
                subs = by.get(ticker)
                if subs is not None:
                    for sub in subs:
                        sess.push(e.kind, sub, body)
        self.stats["frames_generated"] += len(out)
        if truth is not None:
            truth.record(out, bodies)

    def _flush_all(self) -> None:
        for sess in self._sessions:
            sess.flush()
        if self._truth is not None:
            self._truth.flush()

    # --- faults -----------------------------------------------------------------------------------

    @property
    def stalled(self) -> bool:
        return self._loop is not None and self._loop.time() < self._stall_until

    def stall(self, seconds: float) -> None:
        """Send nothing (frames, replies, heartbeats) for ``seconds``; frames are held, not lost."""
        assert self._loop is not None
        self._stall_until = self._loop.time() + seconds
        self._background(self._resume_after(seconds))

    def resume(self) -> None:
        """End a stall now."""
        self._stall_until = 0.0
        self._flush_all()

    async def _resume_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds + 0.001)
        if not self.stalled:
            self._flush_all()

    def drop_all(self, abrupt: bool = True) -> int:
        """Close every WebSocket now: abruptly (TCP reset, no close frame) or with close 1012."""
        sessions = list(self._sessions)
        for sess in sessions:
            if abrupt:
                sess.transport.abort()
            else:
                self._background(sess.ws.close(1012, "simulated restart"))
        return len(sessions)

    def update_series(
        self, ticker: str, *, title: str | None = None, fee_type: str | None = None
    ) -> None:
        """Kalshi edits series ``ticker`` now (wall clock): REST serves the new title / fee type
        and ``last_updated_ts``; nothing goes out on the WebSocket (Kalshi has no series frame)."""
        at = max(self.model.now_ms, wall_ms())
        s = self.model.update_series(ticker, at, title=title, fee_type=fee_type)
        if self._truth is not None:
            self._truth.series_changed(s, at)

    def skip_seq(self, count: int = 1) -> None:
        """The next ``count`` sequenced frames of every connection each skip one seq number."""
        for sess in self._sessions:
            sess.skip += count

    def leave_unanswered(self, command: str, count: int = 1, *, after: int = 0) -> None:
        """After the next ``after`` ones, ``count`` ``command`` commands (``subscribe``,
        ``update_subscription``, ...) of any connection are lost: neither carried out nor
        answered (the client's command timeout fires)."""
        self.unanswered.setdefault(command, []).extend([False] * after + [True] * count)

    def refuse_next(
        self, command: str, code: int, count: int = 1, *, action: str | None = None
    ) -> None:
        """The next ``count`` ``command`` commands (only those with ``params.action`` ==
        ``action`` when given) of any connection are answered with error ``code`` instead of
        being carried out. The error carries the command's id, and the sid and a seq of the
        subscription the command names, if any; a terminal code (10, 25) ends that
        subscription, as when Kalshi fails it while answering."""
        key = command if action is None else f"{command}:{action}"
        self.refusals.setdefault(key, []).extend([code] * count)

    def send_malformed(self) -> None:
        """Send one malformed (truncated JSON) text frame on every connection."""
        for sess in self._sessions:
            sess.queue(MALFORMED_FRAME)
            sess.flush()

    def send_error(self, code: int = 10, sid: int | None = None) -> int:
        """Fail one subscription per connection with terminal error ``code`` (10 or 25).

        The target is ``sid`` if given, else the connection's first orderbook_delta subscription,
        else its first subscription. The subscription is gone afterwards (resubscribe).
        Returns how many errors were sent.
        """
        if code not in (10, 25):
            raise ValueError("terminal error code must be 10 or 25")
        sent = 0
        for sess in self._sessions:
            sub: Sub | None
            if sid is not None:
                sub = sess.subs.get(sid)
            else:
                books = [s for s in sess.subs.values() if s.channel == ORDERBOOK]
                sub = books[0] if books else next(iter(sess.subs.values()), None)
            if sub is None:
                continue
            sess.error(None, code, sub)
            del sess.subs[sub.sid]
            sess.rebuild_routes()
            sess.flush()
            sent += 1
        return sent

    def start_429_burst(self, n: int) -> None:
        """Answer the next ``n`` REST requests with 429 ``{"error":"too many requests"}``."""
        self._http.rest_429_left = n

    def corrupt_next_list_items(self, n: int = 1) -> None:
        """In the next ``n`` REST list responses with items (markets, events, series, trades),
        the first item is replaced by one no client can decode (a number)."""
        self._http.rest_corrupt_left = n

    # --- helpers for tests ------------------------------------------------------------------------

    async def wait_for_sessions(self, n: int) -> None:
        """Wait until at least ``n`` WebSocket connections are open (wrap in a timeout)."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._sessions) >= n)

    async def _sessions_changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def load_truth(self) -> Truth:
        if self._truth is None:
            raise RuntimeError("the simulator was started without truth_path")
        self._truth.flush()
        return load_truth(self._truth.path)

    # --- WebSocket --------------------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        self._session_n += 1
        sess = Session(
            self,
            ws,
            self._session_n,
            skip_seq_every=self.config.skip_seq_every,
            malformed_every=self.config.malformed_every,
            max_buffer_bytes=self.config.max_buffer_bytes,
        )
        self._sessions.append(sess)
        self.stats["ws_connections"] += 1
        await self._sessions_changed()
        hb = asyncio.create_task(self._heartbeat(sess))
        try:
            async for message in ws:
                on_message(sess, message)
                sess.flush()
        except ConnectionClosed:
            pass
        finally:
            sess.closed = True
            self._sessions.remove(sess)
            await self._sessions_changed()
            hb.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hb

    async def _heartbeat(self, sess: Session) -> None:
        interval = self.config.heartbeat
        if interval <= 0:
            return
        waiter: Awaitable[float] | None = None
        while True:
            await asyncio.sleep(interval)
            if self.stalled or (isinstance(waiter, asyncio.Future) and not waiter.done()):
                continue  # stalled, or the last heartbeat is still unanswered
            try:
                waiter = await sess.ws.ping(_HEARTBEAT)
            except ConnectionClosed:
                return
