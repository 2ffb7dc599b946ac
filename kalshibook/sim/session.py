"""One WebSocket session of the simulator: subscriptions, routing and frame building.

Data frames are spliced from the once-encoded ``msg`` body and the subscription's ``sid``/``seq``
(no per-subscriber re-encoding), framed by hand (server frames are unmasked and uncompressed) and
queued; :meth:`Session.flush` writes a connection's queue with one ``transport.write``. Sessions
also apply the per-frame faults (seq skips, malformed frames) and the slow-reader overflow
(error 25).
"""

from __future__ import annotations

import struct
from typing import Any, Final, Protocol

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from kalshibook.sim.entities import Market
from kalshibook.sim.model import Exchange
from kalshibook.sim.records import CLOSED, DELTA, EVENT_LIFECYCLE, LIFECYCLE, TICKER, TRADE

__all__ = (
    "CHANNELS",
    "CHANNEL_OF",
    "DATA_KINDS",
    "ERROR_TEXT",
    "MALFORMED_FRAME",
    "ORDERBOOK",
    "SEQUENCED",
    "Session",
    "SessionHost",
    "Sub",
    "decode",
    "encode",
)

ORDERBOOK: Final = "orderbook_delta"
CHANNELS: Final = (ORDERBOOK, "ticker", "trade", "market_lifecycle_v2")
SEQUENCED: Final = frozenset({ORDERBOOK, "trade", "market_lifecycle_v2"})
CHANNEL_OF: Final[dict[str, str]] = {
    DELTA: ORDERBOOK,
    TRADE: "trade",
    TICKER: "ticker",
    LIFECYCLE: "market_lifecycle_v2",
    EVENT_LIFECYCLE: "market_lifecycle_v2",
}
DATA_KINDS: Final = frozenset({DELTA, TRADE, TICKER})
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
    26: "Subscription market limit exceeded",
    27: "Too many requests",
}
MALFORMED_FRAME: Final = b'{"type":"orderbook_delta","sid":1,"seq":'
"""What ``malformed`` faults send: a truncated JSON text frame (it consumes no seq)."""
_HIGH_WATER: Final = 1 << 20
_HDR_SMALL: Final = tuple(bytes((0x81, n)) for n in range(126))
_HDR_MID: Final = struct.Struct("!BBH")
_HDR_BIG: Final = struct.Struct("!BBQ")


_encoder = msgspec.json.Encoder()
encode: Final = _encoder.encode
_decoder = msgspec.json.Decoder()
decode: Final = _decoder.decode


class SessionHost(Protocol):
    """What a session needs from its server."""

    stats: dict[str, int]
    unanswered: dict[str, list[bool]]
    """Per command name, whether each of its next ones is lost (SimServer.leave_unanswered)."""
    refusals: dict[str, list[int]]
    """Per command name (or ``name:action``), the error codes answering its next ones
    (SimServer.refuse_next)."""
    yes_price_default: bool
    """``use_yes_price``'s default (SimConfig.yes_price_default)."""

    @property
    def model(self) -> Exchange: ...

    @property
    def stalled(self) -> bool:
        """Nothing may be written while stalled (frames are held)."""
        ...


class Sub:
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


class Session:
    """One WebSocket connection: its subscriptions and its outgoing frame buffer.

    ``skip_seq_every`` / ``malformed_every`` are the periodic faults (0 = off);
    ``max_buffer_bytes`` is what may queue up before the subscriptions fail with error 25.
    """

    def __init__(
        self,
        host: SessionHost,
        ws: ServerConnection,
        n: int,
        *,
        skip_seq_every: int = 0,
        malformed_every: int = 0,
        max_buffer_bytes: int = 64 << 20,
    ) -> None:
        self.host = host
        self.ws = ws
        self.n = n
        self.transport = ws.transport
        self.subs: dict[int, Sub] = {}
        self.next_sid = 1
        self.routes: dict[str, tuple[list[Sub], dict[str, list[Sub]]]] = {}
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.skip = 0
        self.seq_frames = 0
        self.data_frames = 0
        self.closed = False
        self.skip_seq_every = skip_seq_every
        self.malformed_every = malformed_every
        self.max_buffer_bytes = max_buffer_bytes

    # --- routing ----------------------------------------------------------------------------------

    def rebuild_routes(self) -> None:
        routes: dict[str, tuple[list[Sub], dict[str, list[Sub]]]] = {}
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
        self.queue(encode(obj))

    def push(self, kind: str, sub: Sub, body: bytes) -> None:
        """Queue one data frame for ``sub`` (seq assigned here, faults applied)."""
        if sub.sequenced:
            self.seq_frames += 1
            every = self.skip_seq_every
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
        every = self.malformed_every
        if every and self.data_frames % every == 0:
            self.queue(MALFORMED_FRAME)

    def next_seq(self, sub: Sub) -> int | None:
        if not sub.sequenced:
            return None
        sub.seq += 1
        return sub.seq

    def send_scoped(self, sub: Sub, type_: str, cmd_id: int | None, msg: Any = None) -> None:
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

    def error(self, cmd_id: int | None, code: int, sub: Sub | None = None, **extra: Any) -> None:
        msg: dict[str, Any] = {"code": code, "msg": ERROR_TEXT.get(code, "Error")}
        msg.update(extra)
        if sub is not None:
            self.send_scoped(sub, "error", cmd_id, msg)
        else:
            frame: dict[str, Any] = {"id": cmd_id} if cmd_id else {}
            frame["type"] = "error"
            frame["msg"] = msg
            self.send(frame)

    def snapshot(self, sub: Sub, m: Market, cmd_id: int | None) -> None:
        body = encode(self.host.model.snapshot_msg(m))
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
        host = self.host
        if self.ws.protocol.state is not State.OPEN or self.transport.is_closing():
            self.pending.clear()
            self.pending_bytes = 0
            return
        if host.stalled or self.transport.get_write_buffer_size() > _HIGH_WATER:
            if self.pending_bytes > self.max_buffer_bytes:
                self.overflow()
            return
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        host.stats["bytes_sent"] += len(data)
        self.transport.write(data)

    def overflow(self) -> None:
        """Too slow a reader: drop what is queued and fail every subscription with error 25."""
        self.pending.clear()
        self.pending_bytes = 0
        for sub in list(self.subs.values()):
            self.error(None, 25, sub)
        self.subs.clear()
        self.rebuild_routes()
        self.host.stats["overflows"] += 1


# ``CLOSED`` records never reach a socket.
assert CLOSED not in CHANNEL_OF
