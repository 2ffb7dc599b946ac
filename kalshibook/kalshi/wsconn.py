"""The WebSocket connection under :mod:`kalshibook.kalshi.ws`: websockets, with a bulk data path.

websockets does everything here (TCP, the signed opening handshake, pings and pongs, the closing
handshake, errors), with one change measured on the hot path: its frame parser is a generator
that costs a few microseconds per frame (``Frame.parse`` with several ``yield from`` reads, a
``Frame`` object, an event, the message assembler, one ``recv()`` await per message). Kalshi's
feed is tens of thousands of small, unmasked, unfragmented text frames a second, so:

* :class:`_BulkFrames` replaces the frame loop of websockets' sans-I/O protocol: every complete
  unfragmented data frame at the head of the receive buffer is cut out in one pass and emitted as
  one :class:`DataBatch` event. Anything else (a control frame, a fragment, an incomplete frame,
  an oversized frame, an extension in use) goes through websockets' own ``Frame.parse`` and
  ``recv_frame`` one frame at a time, exactly as before, so pings are answered, closes are
  handshaken and protocol errors fail the connection with the right close code.
* :class:`FeedConnection` hands data messages (batches, and websockets-parsed data frames,
  reassembled if fragmented) to a synchronous ``sink`` in wire order instead of websockets'
  ``recv()`` queue; the session decodes them on the spot. Flow control moves with them: the
  session pauses and resumes the transport (see :class:`~kalshibook.kalshi.ws_session.WsSession`).

The coupling to websockets internals (the protocol's ``parse`` generator, ``reader.buffer``,
``current_size``, ``events``) is pinned by the version range in ``pyproject.toml`` and covered by
the client tests against the simulator (including pings, fragments and protocol errors).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.protocol import Event, Protocol

__all__ = ("DataBatch", "FeedConnection", "Sink")

Sink = Callable[[list[bytes]], None]
"""Receives data messages (payload bytes) in wire order, synchronously."""

_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
EARLY_LIMIT = 1024
"""Messages held before a sink is attached; beyond it the socket is not read until then."""


class DataBatch:
    """Event: complete data messages cut from the receive buffer in one pass."""

    __slots__ = ("payloads",)

    def __init__(self, payloads: list[bytes]) -> None:
        self.payloads = payloads


class _BulkFrames(Protocol):
    """``Protocol.parse`` with a bulk path for complete, unfragmented, unmasked data frames."""

    def parse(self) -> Generator[None]:
        reader = self.reader
        try:
            while True:
                if (yield from reader.at_eof()):
                    raise EOFError("unexpected end of stream")
                if self.current_size is None and not self.extensions:
                    batch = self._cut_data_frames()
                    if batch:
                        # an event type of our own, handled by FeedConnection.process_event
                        self.events.append(DataBatch(batch))  # type: ignore[arg-type]
                        continue
                max_size = self.max_message_size
                if self.current_size is not None and max_size is not None:
                    max_size -= self.current_size
                if self.max_fragment_size is not None:
                    max_size = (
                        self.max_fragment_size
                        if max_size is None
                        else min(max_size, self.max_fragment_size)
                    )
                frame = yield from Frame.parse(
                    reader.read_exact, mask=False, max_size=max_size, extensions=self.extensions
                )
                self.recv_frame(frame)
        except ProtocolError as exc:
            self.fail(CloseCode.PROTOCOL_ERROR, str(exc))
            self.parser_exc = exc
        except EOFError as exc:
            self.fail(CloseCode.ABNORMAL_CLOSURE, str(exc))
            self.parser_exc = exc
        except UnicodeDecodeError as exc:
            self.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            self.parser_exc = exc
        except PayloadTooBig as exc:
            exc.set_current_size(self.current_size)
            self.fail(CloseCode.MESSAGE_TOO_BIG, str(exc))
            self.parser_exc = exc
        except Exception as exc:
            self.logger.error("parser failed", exc_info=True)
            self.fail(CloseCode.INTERNAL_ERROR)
            self.parser_exc = exc
        yield
        raise AssertionError("parse() shouldn't step after error")

    def _cut_data_frames(self) -> list[bytes]:
        """Remove the complete data frames at the head of the buffer; their payloads."""
        buf = self.reader.buffer
        n = len(buf)
        limit = self.max_message_size
        if self.max_fragment_size is not None and (limit is None or self.max_fragment_size < limit):
            limit = self.max_fragment_size
        pos = 0
        spans: list[tuple[int, int]] = []
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            # FIN set, RSV clear, opcode text (1) or binary (2), unmasked (server -> client)
            if (b0 != 0x81 and b0 != 0x82) or b1 & 0x80:
                break
            length = b1
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if limit is not None and length > limit:
                break  # websockets' parser raises PayloadTooBig with the right close code
            end = pos + head + length
            if end > n:
                break
            spans.append((pos + head, end))
            pos = end
        if not pos:
            return []
        chunk = bytes(buf[:pos])
        del buf[:pos]
        return [chunk[a:b] for a, b in spans]


class _BulkClientProtocol(ClientProtocol, _BulkFrames):
    """websockets' client protocol (opening handshake) over :class:`_BulkFrames`.

    The MRO is ``ClientProtocol -> _BulkFrames -> Protocol``: after the handshake,
    ``ClientProtocol.parse`` delegates to ``super().parse()``, i.e. :meth:`_BulkFrames.parse`.
    """


class FeedConnection(ClientConnection):
    """websockets' asyncio client connection delivering data messages to :attr:`sink`.

    Until a sink is attached, messages wait in :attr:`early` (nothing is sent by the exchange
    before we subscribe, so this holds at most what a peer sends unasked; reading stops at
    :data:`EARLY_LIMIT` of them). ``last_activity``
    (event-loop time) is when anything at all last arrived, for the silence watchdog.
    """

    def __init__(self, protocol: ClientProtocol, **kwargs: Any) -> None:
        if protocol.__class__ is ClientProtocol:
            # Nothing has been received yet: restart the parser under the bulk subclass.
            protocol.__class__ = _BulkClientProtocol
            protocol.parser = protocol.parse()
            next(protocol.parser)
        super().__init__(protocol, **kwargs)
        self.last_activity = 0.0
        self.sink: Sink | None = None
        self.early: list[bytes] = []
        self._early_paused = False
        self._fragments: list[bytes] | None = None

    def attach(self, sink: Sink) -> None:
        """Deliver to ``sink`` from now on, starting with anything that arrived before."""
        self.sink = sink
        early, self.early = self.early, []
        if self._early_paused:
            # Before the sink sees anything: if it is full at once it pauses reading itself.
            self._early_paused = False
            self.transport.resume_reading()
        if early:
            sink(early)

    def _deliver(self, payloads: list[bytes]) -> None:
        sink = self.sink
        if sink is not None:
            sink(payloads)
            return
        self.early.extend(payloads)
        if len(self.early) >= EARLY_LIMIT and not self._early_paused:
            self._early_paused = True  # bounded: stop reading until a sink is attached
            self.transport.pause_reading()

    def process_event(self, event: Event) -> None:
        self.last_activity = self.loop.time()
        item: object = event  # websockets' events, or our DataBatch
        if item.__class__ is DataBatch:
            assert isinstance(item, DataBatch)
            self._deliver(item.payloads)
            return
        if isinstance(event, Frame) and event.opcode in _DATA_OPCODES:
            # websockets checked the fragment order (recv_frame); reassemble here.
            if event.opcode is not Opcode.CONT:
                self._fragments = []
            assert self._fragments is not None
            self._fragments.append(bytes(event.data))
            if event.fin:
                parts, self._fragments = self._fragments, None
                self._deliver([parts[0] if len(parts) == 1 else b"".join(parts)])
            return
        super().process_event(event)


def close_reason(close: Close | None) -> str:
    """``code 1000 reason`` text of a close frame (``no close frame`` without one)."""
    if close is None:
        return "no close frame"
    return f"code {close.code}{' ' + close.reason if close.reason else ''}"
