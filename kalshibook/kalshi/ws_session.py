"""One live Kalshi WebSocket connection: :class:`WsSession` (made by
:class:`kalshibook.kalshi.ws.KalshiWebSocket`).

Control plane: commands (``subscribe``, ``unsubscribe``, ``update_subscription``,
``list_subscriptions``) send a JSON command with a fresh id and await the replies carrying that id
(``subscribed`` / ``ok`` / ``unsubscribed`` / ``error``); those replies are consumed by the command
and never reach the data plane, except a terminal error (10/25) on a sid: it fails the command and
reaches the data plane too, like an unsolicited one (the subscription is over either way). An ack
without ``msg`` (older servers) gets its channel from the command. Commands may be issued from any
task.

Data plane: iterating a :class:`WsSession` yields, in wire order, every other decoded frame
(:mod:`kalshibook.kalshi.ws_frames`), plus two synthetic events:

* :class:`~kalshibook.kalshi.sequencing.GapDetected` (sid, expected, got), emitted just before the
  frame that revealed the gap. Sequence numbers are checked per sid for every frame carrying one
  (control replies and sid-scoped errors consume numbers too). Duplicate/old frames are dropped
  and counted (``WsStats.stale``).
* :class:`Disconnected` (reason), always the last item of a session.

Unsolicited control frames (late acks, terminal errors 10/25 on a sid) go to the data plane. A
sid's sequence starts afresh on a ``subscribed`` ack naming it and after a terminal error on it
(Kalshi may hand out a sid number again).

Frames are decoded as they are read, inside the connection's protocol callback
(:mod:`kalshibook.kalshi.wsconn`: websockets with a bulk path for data frames); all frames of one
socket read share one ``received_at``.

Backpressure: decoded items wait in a bounded buffer (``queue_size``, default 10,000). When it is
full the session stops reading the socket (the transport is paused until the consumer has drained
half of it; one socket read may overshoot the bound), TCP fills up, and the exchange sees a slow
consumer (Kalshi answers with error 25 or drops the connection, which surfaces as a
:class:`Disconnected`; a pause longer than websockets' keepalive also ends the connection, since
pongs are not read meanwhile). ``WsStats.queue_high_water`` and ``read_pauses`` show how close it
came; the silence watchdog does not count a paused stretch. Do not await a command from the only
task that drains the data plane while the buffer may be full: the command's reply is behind the
undrained frames (commands time out after ``command_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, TypeAlias, TypeVar

import msgspec
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from kalshibook.errors import FeedDisconnected, FeedError, ProtocolError, WsCommandError
from kalshibook.kalshi.commands import (
    list_subscriptions_cmd,
    subscribe_cmd,
    unsubscribe_cmd,
    update_subscription_cmd,
)
from kalshibook.kalshi.sequencing import GapDetected, SeqTracker
from kalshibook.kalshi.ws_decode import DecodeStats, decode_frame
from kalshibook.kalshi.ws_frames import (
    ErrorFrame,
    Frame,
    Ok,
    OrderbookSnapshot,
    Subscribed,
    SubscriptionInfo,
    Unsubscribed,
)
from kalshibook.kalshi.wsconn import FeedConnection, close_reason

__all__ = ("DataItem", "Disconnected", "UpdateAction", "WsSession", "WsStats")

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_ONE_US = timedelta(microseconds=1)
UpdateAction: TypeAlias = Literal["add_markets", "delete_markets", "get_snapshot"]


class Disconnected(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The last item of a session: the connection is gone (every book on it is suspect)."""

    kind: ClassVar[str] = "disconnected"
    epoch: int
    reason: str
    at: datetime
    by_client: bool = False


DataItem: TypeAlias = Frame | GapDetected | Disconnected


class WsStats:
    """Counters for metrics (cumulative over reconnects)."""

    __slots__ = (
        "commands",
        "connect_failures",
        "connects",
        "decode",
        "decode_errors",
        "disconnects",
        "frames",
        "gaps",
        "queue_high_water",
        "read_pauses",
        "silence_timeouts",
        "stale",
    )

    def __init__(self, decode: DecodeStats | None = None) -> None:
        self.decode = decode or DecodeStats()
        self.connects = 0
        self.connect_failures = 0
        self.disconnects = 0
        self.silence_timeouts = 0
        self.frames = 0
        self.decode_errors = 0
        self.gaps = 0
        self.stale = 0
        self.commands = 0
        self.queue_high_water = 0
        self.read_pauses = 0
        """Times the socket stopped being read because the buffer was full (backpressure)."""


class _EndOfStream(Exception):
    pass


class _Channel(Generic[_T]):
    """Bounded single-consumer FIFO whose producer can close it with a final item."""

    __slots__ = (
        "_closed",
        "_items",
        "_low_water",
        "_maxsize",
        "_not_empty",
        "_on_space",
        "high_water",
        "push",
    )

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("queue_size must be >= 1")
        self._items: deque[_T] = deque()
        self._maxsize = maxsize
        self._low_water = maxsize // 2
        self._closed = False
        self._not_empty = asyncio.Event()
        self._on_space: Callable[[], None] | None = None
        self.high_water = 0
        # push(item): append without waiting or waking the consumer (call :meth:`notify` after
        # a batch). The producer is a protocol callback that cannot wait: it stops the transport
        # instead when :attr:`full` (see ``WsSession``), so the buffer exceeds ``maxsize`` by at
        # most what one socket read carried. The deque's own bound method: one call per frame.
        self.push: Callable[[_T], None] = self._items.append

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self._maxsize

    def notify(self) -> None:
        n = len(self._items)
        if n > self.high_water:
            self.high_water = n
        if n:
            self._not_empty.set()

    def wait_for_space(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the consumer has drained the buffer to half of ``maxsize``."""
        self._on_space = callback

    def _taken(self) -> None:
        cb = self._on_space
        if cb is not None and len(self._items) <= self._low_water:
            self._on_space = None
            cb()

    def close(self, final: _T | None = None) -> None:
        """No more puts; ``final`` is appended past the bound so it is never lost."""
        if self._closed:
            return
        if final is not None:
            self._items.append(final)
        self._closed = True
        self._not_empty.set()

    async def get(self) -> _T:
        while not self._items:
            if self._closed:
                raise _EndOfStream
            self._not_empty.clear()
            await self._not_empty.wait()
        item = self._items.popleft()
        if self._on_space is not None:
            self._taken()
        return item

    def take_nowait(self, n: int) -> list[_T]:
        """Up to ``n`` buffered items, without waiting (empty when none is buffered)."""
        items = self._items
        k = min(n, len(items))
        if not k:
            return []
        out = [items.popleft() for _ in range(k)]
        if self._on_space is not None:
            self._taken()
        return out


_CONTROL: tuple[type, ...] = (Subscribed, Ok, Unsubscribed, ErrorFrame)
_SLOW_PATH_FRAMES: frozenset[type] = frozenset((Subscribed, Unsubscribed, ErrorFrame))
"""Frames that always go through :meth:`WsSession._route`: they change a sid's state (an ack
starts a sid afresh, a terminal error ends it) even when they carry the next seq."""


class _Pending:
    __slots__ = ("cmd", "expect", "frames", "future", "sid", "snapshot_ack", "unacked_channels")

    def __init__(
        self,
        cmd: str,
        expect: int,
        snapshot_ack: bool,
        channels: Sequence[str] = (),
        sid: int | None = None,
    ) -> None:
        self.cmd = cmd
        self.sid = sid
        """The subscription a command acts on (``update_subscription``), if one."""
        self.expect = expect
        self.snapshot_ack = snapshot_ack
        self.unacked_channels: list[str] = list(channels)
        """A ``subscribe``'s channels not acknowledged yet, in command order."""
        self.frames: list[Frame] = []
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def ack_channel(self, channel: str | None) -> str | None:
        """The channel a ``subscribed`` ack is for: the one it names, else (older acks lacked
        ``msg``) the first channel of the command not acknowledged yet (acks come in the
        command's order)."""
        unacked = self.unacked_channels
        if channel is not None:
            if channel in unacked:
                unacked.remove(channel)
            return channel
        return unacked.pop(0) if unacked else None

    def add(self, frame: Frame) -> None:
        self.frames.append(frame)
        if not self.future.done() and (
            isinstance(frame, ErrorFrame) or len(self.frames) >= self.expect
        ):
            self.future.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
            self.future.exception()  # mark retrieved: nobody may be awaiting any more


class WsSession:
    """One live connection: command methods (control plane) and async iteration (data plane).

    Frames arrive through the connection's sink (:meth:`_on_messages`); a task waits for the
    connection to end (:meth:`_read_loop`) and a watchdog task checks for silence; :meth:`close`
    cancels and awaits both.
    """

    def __init__(
        self,
        conn: FeedConnection,
        *,
        epoch: int,
        stats: WsStats,
        clock: Callable[[], float],
        queue_size: int,
        command_timeout: float,
        silence_timeout: float,
    ) -> None:
        self.epoch = epoch
        self.subscriptions: dict[int, str] = {}
        """Live sids -> channel, as acknowledged on this connection."""
        self.frames_received = 0
        self.disconnect_reason: str | None = None
        self._conn = conn
        self._stats = stats
        self._clock = clock
        self._command_timeout = command_timeout
        self._silence_timeout = silence_timeout
        self._channel: _Channel[DataItem] = _Channel(queue_size)
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._seq = SeqTracker()
        self._by_client = False
        self._silence_tripped = False
        self._finished = False
        self._failure: Exception | None = None
        self._last_received_at: datetime | None = None
        self._reading_paused = False
        self._reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    def _start(self) -> None:
        self._conn.attach(self._on_messages)
        self._reader = asyncio.create_task(self._read_loop(), name=f"kalshi-ws-read-{self.epoch}")
        if self._silence_timeout > 0:
            self._watchdog = asyncio.create_task(
                self._watch(), name=f"kalshi-ws-watchdog-{self.epoch}"
            )

    # ---- state -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._finished

    @property
    def queue_depth(self) -> int:
        return len(self._channel)

    def last_seq(self, sid: int) -> int | None:
        return self._seq.last(sid)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # ---- reader ------------------------------------------------------------------------

    def _on_messages(self, payloads: list[bytes]) -> None:
        """The connection's sink: decode and route one socket read's messages, in wire order.

        Runs inside the protocol callback, so it cannot wait: when the buffer is full it pauses
        the transport (TCP backpressure reaches the exchange) until the consumer has drained
        half of it. ``received_at`` is the read's time plus one microsecond per frame before it
        in the read, and never repeats on this connection: it orders every frame the connection
        delivered (a trade before the book change it caused, across channels) for a replay.
        """
        if self._finished or self._by_client or self._failure is not None:
            return
        n = len(payloads)
        self.frames_received += n
        stats = self._stats
        stats.frames += n
        decode_stats = stats.decode
        channel = self._channel
        push = channel.push
        route = self._route
        advance = self._seq.advance
        received_at = self._now()
        last = self._last_received_at
        if last is not None and received_at <= last:
            received_at = last + _ONE_US
        try:
            for raw in payloads:
                try:
                    frame = decode_frame(raw, decode_stats, received_at=received_at)
                except ProtocolError as exc:
                    stats.decode_errors += 1
                    log.warning("kalshi ws: dropped undecodable frame: %s", exc)
                    continue
                finally:
                    self._last_received_at = received_at
                    received_at += _ONE_US
                # Fast path, same outcome as _route: a data frame answering no command, without
                # seq or with exactly the next seq of its sid.
                if frame.id is None and frame.__class__ not in _SLOW_PATH_FRAMES:
                    seq = frame.seq
                    if seq is None or advance(frame.sid, seq):
                        push(frame)
                        continue
                for item in route(frame):
                    push(item)
        except Exception as exc:  # noqa: BLE001 - a bug of ours: end the session; the reader re-raises
            self._failure = exc
            self._conn.transport.abort()
        channel.notify()
        if channel.high_water > stats.queue_high_water:
            stats.queue_high_water = channel.high_water
        if channel.full and not self._reading_paused:
            self._reading_paused = True
            stats.read_pauses += 1
            self._conn.transport.pause_reading()
            channel.wait_for_space(self._resume_reading)

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if not self._finished:
                self._conn.transport.resume_reading()

    async def _read_loop(self) -> None:
        """Wait for the connection to end (the data arrives through :meth:`_on_messages`)."""
        reason = "connection closed"
        try:
            await self._conn.wait_closed()
            exc = self._conn.protocol.close_exc
            text = close_reason(exc.rcvd or exc.sent)
            if isinstance(exc, ConnectionClosedOK):
                reason = f"closed ({text})"
            else:
                reason = f"connection lost ({text})"
            if self._failure is not None:
                reason = f"internal error: {self._failure!r}"
                raise self._failure
        finally:
            if self._silence_tripped:
                reason = f"silent for {self._silence_timeout:g} s"
            elif self._by_client:
                reason = "closed by client"
            self._finish(reason)

    def _route(self, frame: Frame) -> tuple[DataItem, ...]:
        """Sequence checks and control-plane bookkeeping; the data-plane items to queue, in
        order (synchronous: the sink pushes them and pauses reading when the buffer is full)."""
        sid = frame.sid
        seq = frame.seq
        cls = frame.__class__
        pending = self._pending.get(frame.id) if frame.id is not None else None
        if cls is ErrorFrame:
            assert isinstance(frame, ErrorFrame)
            frame, pending = self._match_error(frame, pending)
            sid = frame.sid
        if cls is Subscribed and sid is not None:
            # A new subscription: its seq starts afresh, even on a sid number used before.
            self._seq.reset(sid)
        gap: GapDetected | None = None
        if sid is not None and seq is not None:
            r = self._seq.observe(sid, seq)
            if r.status == "gap":
                self._stats.gaps += 1
                assert r.expected is not None
                gap = GapDetected(
                    sid=sid, expected=r.expected, got=seq, received_at=frame.received_at
                )
            elif r.status == "stale":
                self._stats.stale += 1
                log.warning(
                    "kalshi ws: dropped stale frame sid=%s seq=%s (expected %s)",
                    sid,
                    seq,
                    r.expected,
                )
                return ()
        terminal = False
        if cls is Subscribed and sid is not None:
            assert isinstance(frame, Subscribed)
            if pending is not None and pending.cmd == "subscribe":
                channel = pending.ack_channel(frame.channel)
                if channel != frame.channel:
                    frame = msgspec.structs.replace(frame, channel=channel)
            self.subscriptions[sid] = frame.channel or ""
        elif cls is Unsubscribed and sid is not None:
            self.subscriptions.pop(sid, None)
            self._seq.reset(sid)
        elif cls is ErrorFrame and sid is not None:
            assert isinstance(frame, ErrorFrame)
            if frame.terminal:
                # The subscription is over (resubscribe: new sid, seq restarts); the sid stays
                # in ``subscriptions`` so that the data plane can tell its channel.
                terminal = True
                self._seq.reset(sid)
        if pending is not None:
            if cls in _CONTROL:
                pending.add(frame)
                if not terminal:
                    return () if gap is None else (gap,)
                # A terminal error answering a command fails the command and, like an
                # unsolicited one, ends the subscription for the data plane too.
            elif cls is OrderbookSnapshot and pending.snapshot_ack:
                pending.add(frame)  # acks get_snapshot, and is data too
        return (frame,) if gap is None else (gap, frame)

    def _match_error(
        self, frame: ErrorFrame, pending: _Pending | None
    ) -> tuple[ErrorFrame, _Pending | None]:
        """An error frame and the command it answers. KALSHI_API.md §2.1 makes both its ``id``
        and its ``sid`` optional: one naming the sid but not the command (the [P0] DEMO capture
        answers ``update_subscription`` so) answers the oldest command pending on that sid,
        which then fails at once instead of after its timeout; a terminal one naming the command
        but not the sid ends the command's subscription (the data plane must learn it too)."""
        sid = frame.sid
        if pending is None and frame.id is None and sid is not None:
            pending = next(
                (p for p in self._pending.values() if p.sid == sid and not p.future.done()), None
            )
        elif sid is None and pending is not None and pending.sid is not None and frame.terminal:
            frame = msgspec.structs.replace(frame, sid=pending.sid)
        return frame, pending

    def _finish(self, reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        self.disconnect_reason = reason
        self._stats.disconnects += 1
        exc = FeedDisconnected(f"Kalshi WebSocket {reason}")
        for pending in self._pending.values():
            pending.fail(exc)
        self._channel.close(
            Disconnected(epoch=self.epoch, reason=reason, at=self._now(), by_client=self._by_client)
        )
        log.info("kalshi ws: session %d ended: %s", self.epoch, reason)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._silence_timeout
        started = loop.time()
        while True:
            now = loop.time()
            if self._reading_paused:
                started = now  # backpressure: we stopped reading, the exchange is not silent
            last = max(self._conn.last_activity, started)
            idle = now - last
            if idle >= timeout:
                self._silence_tripped = True
                self._stats.silence_timeouts += 1
                log.warning("kalshi ws: nothing received for %.1f s, closing", idle)
                await self._conn.close(code=1011, reason="silence")
                return
            await asyncio.sleep(max(timeout - idle, 0.05))

    # ---- data plane --------------------------------------------------------------------

    def __aiter__(self) -> WsSession:
        return self

    def take_nowait(self, n: int = 256) -> list[DataItem]:
        """Up to ``n`` data-plane items already buffered, in order, without waiting: lets a hot
        consumer loop skip one ``await`` per item. Use ``async for``/``__anext__`` when it
        returns nothing (that also ends the iteration after the :class:`Disconnected`)."""
        return self._channel.take_nowait(n)

    async def __anext__(self) -> DataItem:
        try:
            return await self._channel.get()
        except _EndOfStream:
            raise StopAsyncIteration from None

    # ---- control plane -----------------------------------------------------------------

    async def _command(
        self,
        cmd: str,
        build: Callable[[int], bytes],
        expect: int,
        *,
        accept_partial: bool = False,
        snapshot_ack: bool = False,
        channels: Sequence[str] = (),
        sid: int | None = None,
    ) -> list[Frame]:
        if self._finished:
            raise FeedDisconnected(f"Kalshi WebSocket {self.disconnect_reason or 'closed'}")
        cmd_id = self._next_id
        self._next_id += 1
        pending = _Pending(cmd, expect, snapshot_ack, channels, sid)
        self._pending[cmd_id] = pending
        wait = self._command_timeout
        self._stats.commands += 1
        try:
            try:
                await self._conn.send(build(cmd_id), text=True)
            except ConnectionClosed as exc:
                raise FeedDisconnected(f"Kalshi WebSocket closed while sending {cmd}") from exc
            try:
                async with asyncio.timeout(wait):
                    await pending.future
            except TimeoutError:
                if not (accept_partial and pending.frames):
                    raise FeedError(
                        f"Kalshi WS {cmd} (id {cmd_id}): no reply within {wait:g} s"
                    ) from None
        finally:
            self._pending.pop(cmd_id, None)
        for f in pending.frames:
            if isinstance(f, ErrorFrame):
                raise WsCommandError(f.code, f.msg, cmd, cmd_id, f.market_tickers)
        return pending.frames

    async def subscribe(
        self,
        channels: Sequence[str],
        market_tickers: Sequence[str] | None = None,
        **opts: Any,
    ) -> dict[str, int]:
        """Subscribe; returns ``{channel: sid}`` once every channel is acknowledged.

        Raises :class:`WsCommandError` on an error reply (acks that arrive after it reach the data
        plane as :class:`Subscribed`).
        """
        chans = list(dict.fromkeys(channels))
        frames = await self._command(
            "subscribe",
            lambda i: subscribe_cmd(i, chans, market_tickers, **opts),
            expect=len(chans),
            channels=chans,
        )
        out: dict[str, int] = {}
        for f in frames:
            if isinstance(f, Subscribed) and f.sid is not None:
                out[f.channel or ""] = f.sid  # acks without a channel got it from the command
        return out

    async def unsubscribe(self, sids: Sequence[int]) -> None:
        """Unsubscribe; waits for one ``unsubscribed`` per sid (at least one, on timeout)."""
        sid_list = list(sids)
        if not sid_list:
            return
        await self._command(
            "unsubscribe",
            lambda i: unsubscribe_cmd(i, sid_list),
            expect=len(sid_list),
            accept_partial=True,
        )
        for sid in sid_list:
            self.subscriptions.pop(sid, None)
            self._seq.reset(sid)

    async def update_subscription(
        self,
        sid: int,
        action: UpdateAction,
        market_tickers: Sequence[str] | None = None,
        **opts: Any,
    ) -> Ok | None:
        """``add_markets`` / ``delete_markets`` return the ``ok`` (full market list after the
        update). ``get_snapshot`` returns when acknowledged by ``ok`` (returned) or by the first
        requested snapshot (``None``); the snapshots themselves arrive on the data plane."""
        frames = await self._command(
            "update_subscription",
            lambda i: update_subscription_cmd(i, sid, action, market_tickers, **opts),
            expect=1,
            snapshot_ack=action == "get_snapshot",
            sid=sid,
        )
        for f in frames:
            if isinstance(f, Ok):
                return f
        return None

    async def list_subscriptions(self) -> tuple[SubscriptionInfo, ...]:
        frames = await self._command("list_subscriptions", list_subscriptions_cmd, expect=1)
        for f in frames:
            if isinstance(f, Ok):
                return f.subscriptions or ()
        return ()

    # ---- shutdown ----------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection and stop the session's tasks (idempotent)."""
        if not self._finished:
            self._by_client = True
        # Data still arriving is dropped from here on; reading again lets the closing
        # handshake reach the peer's close frame behind any data held back by backpressure.
        self._resume_reading()
        with contextlib.suppress(Exception):
            await self._conn.close()
        tasks = [t for t in (self._watchdog, self._reader) if t is not None]
        for t in tasks:
            if not t.done():
                t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, Exception):
                log.error("kalshi ws: session task failed", exc_info=r)
        self._finish("closed by client")
