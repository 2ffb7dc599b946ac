"""The simulator's network side: Kalshi REST and WebSocket on one port, with fault injection.

One asyncio process. ``websockets``' server accepts every TCP connection; ``process_request``
answers plain HTTP REST requests under ``/trade-api/v2`` (one response per connection,
``Connection: close``) and lets the upgrade to ``/trade-api/ws/v2`` through. Both check Kalshi's
signature headers unless auth is off.

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
import http
import logging
import os
import struct
import time
import urllib.parse
from collections.abc import Awaitable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from kalshibook.errors import ConfigError
from kalshibook.kalshi.auth import (
    HEADER_KEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WS_PATH,
    PublicKey,
    load_public_key,
    verify,
)
from kalshibook.sim import rest
from kalshibook.sim.model import (
    CLOSED,
    DELTA,
    EVENT_LIFECYCLE,
    LIFECYCLE,
    TICKER,
    TRADE,
    Emit,
    Exchange,
    Market,
    ModelConfig,
)
from kalshibook.sim.recorder import TruthWriter
from kalshibook.sim.truth import Truth, load_truth

__all__ = ("SimConfig", "SimServer")

log = logging.getLogger("kalshibook.sim")
_ws_log = logging.getLogger("kalshibook.sim.ws")
_ws_log.setLevel(logging.WARNING)

ORDERBOOK: Final = "orderbook_delta"
CHANNELS: Final = (ORDERBOOK, "ticker", "trade", "market_lifecycle_v2")
SEQUENCED: Final = frozenset({ORDERBOOK, "trade", "market_lifecycle_v2"})
_CHANNEL_OF: Final[dict[str, str]] = {
    DELTA: ORDERBOOK,
    TRADE: "trade",
    TICKER: "ticker",
    LIFECYCLE: "market_lifecycle_v2",
    EVENT_LIFECYCLE: "market_lifecycle_v2",
}
_DATA_KINDS: Final = frozenset({DELTA, TRADE, TICKER})
_PREFIX: Final[dict[str, bytes]] = {
    k: b'{"type":"%s","sid":' % k.encode()
    for k in (DELTA, TRADE, TICKER, LIFECYCLE, EVENT_LIFECYCLE, "orderbook_snapshot")
}
ERROR_TEXT: Final[dict[int, str]] = {
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Subscription IDs required",
    5: "Unknown command",
    7: "Unknown subscription ID",
    8: "Unknown channel name",
    9: "Authentication required",
    10: "Channel error",
    11: "Invalid parameter",
    12: "Exactly one subscription ID is required",
    13: "Unsupported action",
    14: "Market Ticker required",
    15: "Action required",
    25: "Subscription buffer overflow",
}
MALFORMED_FRAME: Final = b'{"type":"orderbook_delta","sid":1,"seq":'
"""What ``malformed`` faults send: a truncated JSON text frame (it consumes no seq)."""
_HEARTBEAT: Final = b"heartbeat"
_HIGH_WATER: Final = 1 << 20
_HDR_SMALL: Final = tuple(bytes((0x81, n)) for n in range(126))
_HDR_MID: Final = struct.Struct("!BBH")
_HDR_BIG: Final = struct.Struct("!BBQ")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SimConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the simulator needs; the CLI builds one from its flags."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 = pick a free port (``SimServer.port`` tells which)."""
    seed: int = 1
    markets: int = 50
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


class _Sub:
    __slots__ = ("channel", "markets", "seq", "sequenced", "sid", "skip_ack")

    def __init__(
        self, sid: int, channel: str, markets: dict[str, None] | None, skip_ack: bool
    ) -> None:
        self.sid = sid
        self.channel = channel
        self.markets = markets
        """Ordered set of market tickers, ``None`` = all markets."""
        self.seq = 0
        self.sequenced = channel in SEQUENCED
        self.skip_ack = skip_ack


class _Session:
    """One WebSocket connection: its subscriptions and its outgoing frame buffer."""

    def __init__(self, server: SimServer, ws: ServerConnection, n: int) -> None:
        self.server = server
        self.ws = ws
        self.n = n
        self.transport = ws.transport
        self.subs: dict[int, _Sub] = {}
        self.next_sid = 1
        self.routes: dict[str, tuple[list[_Sub], dict[str, list[_Sub]]]] = {}
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.skip = 0
        self.seq_frames = 0
        self.data_frames = 0
        self.closed = False

    # --- routing ----------------------------------------------------------------------------------

    def rebuild_routes(self) -> None:
        routes: dict[str, tuple[list[_Sub], dict[str, list[_Sub]]]] = {}
        for sub in self.subs.values():
            all_subs, by = routes.setdefault(sub.channel, ([], {}))
            if sub.markets is None:
                all_subs.append(sub)
            else:
                for t in sub.markets:
                    by.setdefault(t, []).append(sub)
        self.routes = routes

    # --- output -----------------------------------------------------------------------------------

    def queue(self, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            hdr = _HDR_SMALL[n]
        elif n < 65536:
            hdr = _HDR_MID.pack(0x81, 126, n)
        else:
            hdr = _HDR_BIG.pack(0x81, 127, n)
        self.pending.append(hdr)
        self.pending.append(payload)
        self.pending_bytes += n + len(hdr)

    def send(self, obj: Any) -> None:
        self.queue(_encode(obj))

    def push(self, kind: str, sub: _Sub, body: bytes) -> None:
        """Queue one data frame for ``sub`` (seq assigned here, faults applied)."""
        if sub.sequenced:
            self.seq_frames += 1
            every = self.server.config.skip_seq_every
            if self.skip:
                self.skip -= 1
                sub.seq += 1
            elif every and self.seq_frames % every == 0:
                sub.seq += 1
            sub.seq += 1
            self.queue(b'%s%d,"seq":%d,"msg":%s}' % (_PREFIX[kind], sub.sid, sub.seq, body))
        else:
            self.queue(b'%s%d,"msg":%s}' % (_PREFIX[kind], sub.sid, body))
        self.data_frames += 1
        every = self.server.config.malformed_every
        if every and self.data_frames % every == 0:
            self.queue(MALFORMED_FRAME)

    def next_seq(self, sub: _Sub) -> int | None:
        if not sub.sequenced:
            return None
        sub.seq += 1
        return sub.seq

    def send_scoped(self, sub: _Sub, type_: str, cmd_id: int | None, msg: Any = None) -> None:
        """A control frame on a sid; it consumes a seq on sequenced channels."""
        frame: dict[str, Any] = {}
        if cmd_id:
            frame["id"] = cmd_id
        frame["type"] = type_
        frame["sid"] = sub.sid
        seq = self.next_seq(sub)
        if seq is not None:
            frame["seq"] = seq
        if msg is not None:
            frame["msg"] = msg
        self.send(frame)

    def error(self, cmd_id: int | None, code: int, sub: _Sub | None = None, **extra: Any) -> None:
        msg: dict[str, Any] = {"code": code, "msg": ERROR_TEXT.get(code, "Error")}
        msg.update(extra)
        if sub is not None:
            self.send_scoped(sub, "error", cmd_id, msg)
        else:
            frame: dict[str, Any] = {"id": cmd_id} if cmd_id else {}
            frame["type"] = "error"
            frame["msg"] = msg
            self.send(frame)

    def snapshot(self, sub: _Sub, m: Market, cmd_id: int | None) -> None:
        body = _encode(self.server.model.snapshot_msg(m))
        sub.seq += 1
        if cmd_id:
            self.queue(
                b'{"id":%d,"type":"orderbook_snapshot","sid":%d,"seq":%d,"msg":%s}'
                % (cmd_id, sub.sid, sub.seq, body)
            )
        else:
            self.queue(
                b'{"type":"orderbook_snapshot","sid":%d,"seq":%d,"msg":%s}'
                % (sub.sid, sub.seq, body)
            )

    def flush(self) -> None:
        if not self.pending or self.closed:
            return
        server = self.server
        if self.ws.protocol.state is not State.OPEN or self.transport.is_closing():
            self.pending.clear()
            self.pending_bytes = 0
            return
        if server.stalled or self.transport.get_write_buffer_size() > _HIGH_WATER:
            if self.pending_bytes > server.config.max_buffer_bytes:
                self.overflow()
            return
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        server.stats["bytes_sent"] += len(data)
        self.transport.write(data)

    def overflow(self) -> None:
        """Too slow a reader: drop what is queued and fail every subscription with error 25."""
        self.pending.clear()
        self.pending_bytes = 0
        for sub in list(self.subs.values()):
            self.error(None, 25, sub)
        self.subs.clear()
        self.rebuild_routes()
        self.server.stats["overflows"] += 1


_encoder = msgspec.json.Encoder()
_encode = _encoder.encode
_decoder = msgspec.json.Decoder()


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
        self._keys: dict[str, PublicKey] = {
            k: load_public_key(v) for k, v in cfg.public_keys.items()
        }
        self._keys.update(keys or {})
        if not cfg.no_auth and not self._keys:
            raise ConfigError(
                "no public key configured: give --public-key KEY_ID=PATH (repeatable) or --no-auth"
            )
        self._model: Exchange | None = None
        self._server: Server | None = None
        self._sessions: list[_Session] = []
        self._session_n = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._truth: TruthWriter | None = None
        self._stall_until = 0.0
        self._429_left = 0
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
        }

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
    def base_url(self) -> str:
        return f"http://{self._netloc}"

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
                start_ms=_wall_ms(),
                trade_history=cfg.trade_history,
            )
        )
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
            process_request=self._process_request,
            compression=None,
            ping_interval=None,
            ping_timeout=None,
            close_timeout=2,
            max_size=1 << 20,
            logger=_ws_log,
        )
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
            produced = self._generate(_wall_ms(), due)
            done += produced

    def step(self, frames: int = 0, now_ms: int | None = None) -> list[Emit]:
        """Advance the exchange now (to ``now_ms`` or the wall clock) by ``frames`` data frames,
        publish everything and return what was emitted (for tests; works with ``autopump``
        off)."""
        out = self.model.advance(_wall_ms() if now_ms is None else now_ms, frames)
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
                if e.kind in _DATA_KINDS:
                    produced += 1
        self._flush_all()
        return produced

    def _dispatch(self, out: list[Emit]) -> None:
        sessions = self._sessions
        truth = self._truth
        bodies: list[bytes] = []
        enc = _encode
        channel_of = _CHANNEL_OF
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

    def skip_seq(self, count: int = 1) -> None:
        """The next ``count`` sequenced frames of every connection each skip one seq number."""
        for sess in self._sessions:
            sess.skip += count

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
            sub: _Sub | None
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
        self._429_left = n

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

    # --- HTTP -------------------------------------------------------------------------------------

    def _auth_error(self, headers: Headers, path: str) -> str | None:
        if self.config.no_auth:
            return None
        key_id = headers.get(HEADER_KEY)
        ts_text = headers.get(HEADER_TIMESTAMP)
        signature = headers.get(HEADER_SIGNATURE)
        if not key_id or not ts_text or not signature:
            return "missing KALSHI-ACCESS-KEY, KALSHI-ACCESS-TIMESTAMP or KALSHI-ACCESS-SIGNATURE"
        try:
            ts = int(ts_text)
        except ValueError:
            return "KALSHI-ACCESS-TIMESTAMP must be Unix milliseconds"
        if abs(_wall_ms() - ts) > self.config.auth_window * 1000:
            return "KALSHI-ACCESS-TIMESTAMP is too far from the server clock"
        key = self._keys.get(key_id)
        if key is None:
            return "unknown API key"
        if not verify(key, signature, ts, "GET", path):
            return "invalid signature"
        return None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path.rstrip("/") == WS_PATH:
            err = self._auth_error(request.headers, path)
            if err is not None:
                self.stats["auth_rejected"] += 1
                return _response(401, _auth_body(err))
            return None
        if path.startswith(rest.REST_PREFIX + "/"):
            self.stats["rest_requests"] += 1
            if self._429_left > 0:
                self._429_left -= 1
                self.stats["rest_429"] += 1
                return _response(429, b'{"error":"too many requests"}')
            err = self._auth_error(request.headers, path)
            if err is not None:
                self.stats["auth_rejected"] += 1
                return _response(401, _auth_body(err))
            q = urllib.parse.parse_qs(query, keep_blank_values=True)
            status, body = rest.handle(self.model, path, q, self.model.now_ms)
            return _response(status, body)
        return _response(404, b'{"error":{"code":"not_found","message":"not found","details":""}}')

    # --- WebSocket --------------------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        self._session_n += 1
        sess = _Session(self, ws, self._session_n)
        self._sessions.append(sess)
        self.stats["ws_connections"] += 1
        await self._sessions_changed()
        hb = asyncio.create_task(self._heartbeat(sess))
        try:
            async for message in ws:
                self._on_message(sess, message)
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

    async def _heartbeat(self, sess: _Session) -> None:
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

    def _on_message(self, sess: _Session, message: str | bytes) -> None:
        try:
            cmd = _decoder.decode(message)
        except msgspec.DecodeError:
            sess.error(None, 1)
            return
        if not isinstance(cmd, dict):
            sess.error(None, 1)
            return
        raw_id = cmd.get("id")
        cmd_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
        name = cmd.get("cmd")
        params = cmd.get("params")
        if name == "subscribe":
            self._subscribe(sess, cmd_id, params)
        elif name == "unsubscribe":
            self._unsubscribe(sess, cmd_id, params)
        elif name == "update_subscription":
            self._update(sess, cmd_id, params)
        elif name == "list_subscriptions":
            subs = [{"channel": s.channel, "sid": s.sid} for s in sess.subs.values()]
            reply: dict[str, Any] = {"id": cmd_id} if cmd_id else {}
            reply["type"] = "ok"
            reply["msg"] = subs
            sess.send(reply)
        else:
            sess.error(cmd_id, 5)

    def _markets_param(self, params: dict[str, Any]) -> tuple[list[str] | None, str | None]:
        """Market tickers named by ``market_ticker(s)``/``market_id(s)``: (tickers, error)."""
        given = [
            k
            for k in ("market_ticker", "market_tickers", "market_id", "market_ids")
            if params.get(k) not in (None, "", [])
        ]
        if not given:
            return None, None
        if len(given) > 1:
            return None, "give only one of market_ticker, market_tickers, market_id, market_ids"
        key = given[0]
        value = params[key]
        values: list[Any] = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) and v for v in values):
            return None, f"{key} must be a string or a list of strings"
        if key in ("market_id", "market_ids"):
            by_id = self.model.markets_by_id
            unknown = [v for v in values if v not in by_id]
            if unknown:
                return None, "unknown market ids: " + ",".join(unknown[:10])
            values = [by_id[v].ticker for v in values]
        return list(dict.fromkeys(values)), None

    def _unknown(self, tickers: Iterable[str]) -> list[str]:
        markets = self.model.markets
        return [t for t in tickers if t not in markets]

    def _subscribe(self, sess: _Session, cmd_id: int | None, params: Any) -> None:
        if not isinstance(params, dict):
            sess.error(cmd_id, 2)
            return
        channels = params.get("channels")
        if not channels or not isinstance(channels, list):
            sess.error(cmd_id, 3)
            return
        for ch in channels:
            if ch not in CHANNELS:
                sess.error(cmd_id, 8, channel=ch if isinstance(ch, str) else str(ch))
                return
        tickers, bad = self._markets_param(params)
        if bad is not None:
            sess.error(cmd_id, 11, detail=bad)
            return
        if ORDERBOOK in channels and not tickers:
            sess.error(cmd_id, 14)
            return
        if params.get("use_yes_price"):
            # NO levels are always NO-leg prices (Kalshi's default); refuse rather than mislead.
            sess.error(cmd_id, 11, detail="use_yes_price is not supported by the simulator")
            return
        if tickers:
            unknown = self._unknown(tickers)
            if unknown:
                sess.error(cmd_id, 11, market_tickers=unknown)
                return
        skip_ack = bool(params.get("skip_ticker_ack"))
        initial_ticker = bool(params.get("send_initial_snapshot"))
        model = self.model
        new: list[_Sub] = []
        for ch in dict.fromkeys(channels):
            markets = None if ch == "market_lifecycle_v2" or not tickers else dict.fromkeys(tickers)
            sub = _Sub(sess.next_sid, ch, markets, skip_ack)
            sess.next_sid += 1
            sess.subs[sub.sid] = sub
            new.append(sub)
            reply: dict[str, Any] = {"id": cmd_id} if cmd_id else {}
            reply["type"] = "subscribed"
            reply["msg"] = {"channel": ch, "sid": sub.sid}
            sess.send(reply)
        for sub in new:
            if sub.channel == ORDERBOOK:
                assert sub.markets is not None
                for t in sub.markets:
                    sess.snapshot(sub, model.markets[t], None)
            elif sub.channel == "ticker" and initial_ticker:
                targets = (
                    list(sub.markets)
                    if sub.markets is not None
                    else [m.ticker for m in model.market_list if m.status == "active"]
                )
                for t in targets:
                    sess.push(TICKER, sub, _encode(model.ticker_msg(model.markets[t])))
        sess.rebuild_routes()

    def _unsubscribe(self, sess: _Session, cmd_id: int | None, params: Any) -> None:
        if not isinstance(params, dict):
            sess.error(cmd_id, 2)
            return
        sids = params.get("sids")
        if not sids or not isinstance(sids, list):
            sess.error(cmd_id, 4)
            return
        for sid in sids:
            sub = sess.subs.pop(sid, None) if isinstance(sid, int) else None
            if sub is None:
                sess.error(cmd_id, 7)
                continue
            sess.send_scoped(sub, "unsubscribed", cmd_id)
        sess.rebuild_routes()

    def _update(self, sess: _Session, cmd_id: int | None, params: Any) -> None:
        if not isinstance(params, dict):
            sess.error(cmd_id, 2)
            return
        sid: Any = params.get("sid")
        sids = params.get("sids")
        if sid is None:
            if not isinstance(sids, list) or len(sids) != 1:
                sess.error(cmd_id, 12)
                return
            sid = sids[0]
        elif sids is not None and sids != [sid]:
            sess.error(cmd_id, 12)
            return
        sub = sess.subs.get(sid) if isinstance(sid, int) else None
        if sub is None:
            sess.error(cmd_id, 7)
            return
        action = params.get("action")
        if not action:
            sess.error(cmd_id, 15, sub)
            return
        if action not in ("add_markets", "delete_markets", "get_snapshot"):
            sess.error(cmd_id, 13, sub)
            return
        if action == "get_snapshot" and sub.channel != ORDERBOOK:
            sess.error(cmd_id, 13, sub)
            return
        if sub.markets is None:  # lifecycle, or ticker/trade for all markets
            sess.error(cmd_id, 13, sub)
            return
        tickers, bad = self._markets_param(params)
        if bad is not None:
            sess.error(cmd_id, 11, sub, detail=bad)
            return
        if not tickers:
            sess.error(cmd_id, 14, sub)
            return
        unknown = self._unknown(tickers)
        if unknown:
            sess.error(cmd_id, 11, sub, market_tickers=unknown)
            return
        model = self.model
        if action == "get_snapshot":
            outside = [t for t in tickers if t not in sub.markets]
            if outside:
                sess.error(cmd_id, 11, sub, market_tickers=outside)
                return
            for t in tickers:
                sess.snapshot(sub, model.markets[t], cmd_id)
            return
        added: list[str] = []
        if action == "add_markets":
            for t in tickers:
                if t not in sub.markets:
                    sub.markets[t] = None
                    added.append(t)
        else:
            for t in tickers:
                sub.markets.pop(t, None)
        sess.rebuild_routes()
        sess.send_scoped(
            sub, "ok", cmd_id, None if sub.skip_ack else {"market_tickers": list(sub.markets)}
        )
        if sub.channel == ORDERBOOK:
            for t in added:
                sess.snapshot(sub, model.markets[t], None)
        elif sub.channel == "ticker" and params.get("send_initial_snapshot"):
            for t in added:
                sess.push(TICKER, sub, _encode(model.ticker_msg(model.markets[t])))


def _auth_body(message: str) -> bytes:
    return _encode({"error": {"code": "authentication_error", "message": message, "details": ""}})


def _response(status: int, body: bytes) -> Response:
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


# ``CLOSED`` records never reach a socket; keep the import explicit for readers.
assert CLOSED not in _CHANNEL_OF
