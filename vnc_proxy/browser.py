"""The browser side of a relay connection.

ASGI alone cannot give the relay what it needs from Daphne: Daphne queues every incoming message
without bound and buffers every outgoing one without bound (there is no way to wait for a slow
browser), drops close reasons, and refuses the 1011 close code. Under Daphne the relay therefore
also holds the connection's own protocol object (autobahn's, on Twisted's transport) and uses it
for these things only:

- write flow control: a push producer registered on the transport, which Twisted pauses when
  more than its buffer size is waiting for the browser and resumes once it has drained;
- read flow control: `pauseProducing()` / `resumeProducing()` on the transport, which stop and
  restart reading from the browser's socket while the desktop is not keeping up; while reading
  is paused Twisted cannot see the browser leave, so every PEER_CHECK_SECONDS the socket is
  polled (without reading) and pinged (see `_check_peer`), and a browser that left is
  disconnected;
- closing with a code (1011 included) and a reason;
- the hot path (see docs/benchmarks.md, "VNC relay"): outgoing binary frames written to the
  socket directly when Twisted has nothing queued, and incoming plain binary frames read
  without autobahn's general parser while it is between frames (`divert`). Everything else
  (control frames, fragments, limits, closing) stays with autobahn and Daphne.

Under any other ASGI server (and in tests with WebsocketCommunicator) `AsgiBrowser` speaks
plain ASGI: correct, without the flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import select
import struct
from collections.abc import Awaitable, Callable

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from websockets.frames import apply_mask
from zope.interface import implementer

WRITE_BUFFER = 512 * 1024  # bytes waiting for the browser before the desktop is paused
REASON_LIMIT = 123  # bytes: a close frame's payload is at most 125, two of them the code
PEER_CHECK_SECONDS = 1.0  # while reading from the browser is paused
_RDHUP = getattr(select, "POLLRDHUP", 0)  # Linux; elsewhere the ping's reset still shows
_HUNG_UP = _RDHUP | select.POLLHUP | select.POLLERR

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class AsgiBrowser:
    """A browser connection through plain ASGI messages."""

    def __init__(self, receive: Receive, send: Send):
        self.receive = receive
        self._send = send
        self.closed = False

    async def accept(self, subprotocol: str | None) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})

    async def send(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    async def send_text(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


def _daphne_protocol(send: Send):
    """The autobahn protocol behind `send` when Daphne serves this connection, else None.

    Daphne's send is `functools.partial(server.handle_reply, protocol)`; Channels' session
    middleware wraps it in a bound method of an object holding it as `real_send`.
    """
    for _ in range(8):
        if isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            required = ("sendMessage", "sendCloseFrame", "transport", "STATE_OPEN")
            if all(hasattr(protocol, name) for name in required):
                return protocol
            return None
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            return None
    return None


class _Diverted:
    """Stands in for Daphne's per-connection input queue: binary messages go straight to the
    relay's callback as autobahn parses them; everything else (text, disconnect) still reaches
    the application through the real queue."""

    def __init__(self, queue: asyncio.Queue, on_bytes: Callable[[bytes], None]):
        self._queue = queue
        self._on_bytes = on_bytes

    def put_nowait(self, message: dict) -> None:
        data = message.get("bytes")
        if data is not None:
            self._on_bytes(data)
        else:
            self._queue.put_nowait(message)

    def __getattr__(self, name):
        return getattr(self._queue, name)


class _FrameReader:
    """Reads the browser's complete, unfragmented binary frames itself, whenever autobahn is
    between frames, and hands their unmasked payloads straight to the relay.

    These frames are nearly all a viewer ever sends, and autobahn's general parser costs about
    as much per small message as the rest of the relay together. Anything else (control frames,
    fragments, a frame split across reads, an oversized one, a protocol violation) is left to
    autobahn from that byte on, so pings, closes and errors behave exactly as before.
    """

    def __init__(self, protocol, on_bytes: Callable[[bytes], None]):
        self._protocol = protocol
        self._on_bytes = on_bytes
        self._autobahn = protocol.dataReceived
        # Daphne's --websocket_max_frame_size / --websocket_max_message_size (1 MiB each by
        # default): a larger frame goes to autobahn, which refuses it with 1009 as always.
        limits = [protocol.maxFramePayloadSize, protocol.maxMessagePayloadSize]
        self._limit = min((limit for limit in limits if limit > 0), default=1 << 62)

    def __call__(self, data: bytes) -> None:
        protocol = self._protocol
        if (
            protocol.state != protocol.STATE_OPEN
            or protocol.data
            or protocol.current_frame is not None
            or protocol.inside_message
        ):
            self._autobahn(data)
            return
        view = memoryview(data)
        end = len(data)
        position = 0
        while end - position >= 6:
            # FIN, no RSV bits, opcode 2 (binary); masked, as every client frame must be.
            if data[position] != 0x82 or not data[position + 1] & 0x80:
                break
            length = data[position + 1] & 0x7F
            head = position + 2
            if length == 126:
                length = int.from_bytes(data[head : head + 2], "big")
                head += 2
            elif length == 127:
                length = int.from_bytes(data[head : head + 8], "big")
                head += 8
            start = head + 4
            if length > self._limit or end - start < length:
                break
            self._on_bytes(apply_mask(view[start : start + length], view[head:start]))
            position = start + length
        if position < end:
            self._autobahn(data[position:] if position else data)

    @staticmethod
    def supported(protocol) -> bool:
        return all(hasattr(protocol, name) for name in ("data", "current_frame", "inside_message"))


BINARY = 0x82  # FIN and opcode 2
TEXT = 0x81  # FIN and opcode 1: the web-app proxy's JSON messages (Jupyter's terminals)


def _frame_header(length: int, first: int = BINARY) -> bytes:
    """RFC 6455 header of an unmasked, final, binary (or text) frame (server to client)."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def _unbuffered_known(transport) -> bool:
    """Whether Twisted's write-buffer bookkeeping is where `write_now` looks for it; if not,
    every message goes through `transport.write`, as Twisted documents."""
    return all(hasattr(transport, name) for name in ("_tempDataLen", "offset", "dataBuffer"))


@implementer(IPushProducer)
class DaphneBrowser(AsgiBrowser):
    """A browser connection served by Daphne, with flow control in both directions."""

    def __init__(self, receive: Receive, send: Send, protocol):
        super().__init__(receive, send)
        self._protocol = protocol
        self._drained: asyncio.Future | None = None
        self._reading_paused = False
        self._peer_check: asyncio.TimerHandle | None = None
        self._socket = None
        self.on_drained: Callable[[], None] | None = None

    async def accept(self, subprotocol: str | None) -> None:
        await super().accept(subprotocol)
        protocol = self._protocol
        transport = protocol.transport
        # Pointer moves and small screen updates must not wait for Nagle's algorithm.
        with contextlib.suppress(AttributeError, OSError):
            transport.setTcpNoDelay(True)
        # Twisted pauses its producer above `bufferSize` bytes waiting for the browser (and
        # reads that much at a time): 64 KiB by default, a pause per frame at full speed.
        transport.bufferSize = WRITE_BUFFER
        # Daphne leaves the HTTP channel registered as the transport's producer after the
        # upgrade; it ignores the pauses meant for the WebSocket. Take its place.
        with contextlib.suppress(AttributeError):
            transport.unregisterProducer()
        transport.registerProducer(self, True)
        if isinstance(transport, tcp.Connection) and _unbuffered_known(transport):
            self._socket = transport.socket  # plain TCP, not TLS: see write_now

    def divert(self, on_bytes: Callable[[bytes], None]) -> None:
        """Hand every binary message to `on_bytes` as it arrives, bypassing the ASGI queue."""
        protocol = self._protocol
        queue = getattr(protocol, "application_queue", None)
        if queue is None:  # not Daphne's queue as we know it: messages keep coming by receive()
            return
        # What arrived before now goes first, in order; a disconnect among it stays queued.
        others = []
        while not queue.empty():
            message = queue.get_nowait()
            if message.get("bytes") is not None:
                on_bytes(message["bytes"])
            else:
                others.append(message)
        for message in others:
            queue.put_nowait(message)
        protocol.application_queue = _Diverted(queue, on_bytes)
        if _FrameReader.supported(protocol):
            protocol.dataReceived = _FrameReader(protocol, on_bytes)

    def write_now(self, data: bytes, first: int = BINARY) -> bool:
        """Send one binary message (or, with `first=TEXT`, one UTF-8 text message) now; False
        while the browser is behind (stop producing)."""
        protocol = self._protocol
        if protocol.state != protocol.STATE_OPEN:
            self.closed = True
            return False
        header = _frame_header(len(data), first)
        transport = protocol.transport
        sock = self._socket
        if (
            sock is not None
            and not transport._tempDataLen
            and transport.offset >= len(transport.dataBuffer)
            and not transport.disconnecting
        ):
            # Nothing is queued in Twisted: write header and payload to the socket now, in one
            # gathered syscall, instead of queueing them for the next turn of the loop (which
            # costs a writer registration, a loop turn and a copy, per message).
            try:
                sent = sock.sendmsg((header, data))
            except OSError:
                sent = 0  # EAGAIN, or an error Twisted's own write will find and report
            if sent == len(header) + len(data):
                return self._drained is None
            if sent >= len(header):
                transport.write(data[sent - len(header) :])
                return self._drained is None
            header = header[sent:]
        # Header and payload separately: the transport joins its pending buffers in one copy
        # anyway, so the payload is not copied into a frame first.
        transport.write(header)
        transport.write(data)
        return self._drained is None

    async def send(self, data: bytes) -> None:
        if not self.write_now(data) and self._drained is not None:
            await self._drained

    async def send_text(self, text: str) -> None:
        if not self.write_now(text.encode(), TEXT) and self._drained is not None:
            await self._drained

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.resume_reading()  # the browser's close reply must be read
        protocol = self._protocol
        if protocol.state == protocol.STATE_OPEN:
            protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:REASON_LIMIT])
        elif protocol.state == getattr(protocol, "STATE_CONNECTING", None):
            await super().close(code, reason)

    def pause_reading(self) -> None:
        if not self.closed and not self._reading_paused and self._protocol.transport is not None:
            self._reading_paused = True
            self._protocol.transport.pauseProducing()
            self._watch_peer()

    def resume_reading(self) -> None:
        if self._peer_check is not None:
            self._peer_check.cancel()
            self._peer_check = None
        if self._reading_paused and self._protocol.transport is not None:
            self._reading_paused = False
            self._protocol.transport.resumeProducing()

    def _watch_peer(self) -> None:
        loop = asyncio.get_running_loop()
        self._peer_check = loop.call_later(PEER_CHECK_SECONDS, self._check_peer)

    def _check_peer(self) -> None:
        """Paused, Twisted reads nothing and so cannot see the browser leave. A browser that
        closed its socket with data still unsent has its FIN queued behind that data, which
        waits for us to read; but its kernel answers anything we send with a reset. So: look
        at the socket without reading, and ping. A browser that left is disconnected (Daphne
        then delivers websocket.disconnect and the relay winds down); its unread bytes are of
        no use now. A browser that is still there answers the ping later, as usual."""
        self._peer_check = None
        if self.closed or not self._reading_paused or self._protocol.transport is None:
            return
        hung_up = False
        if self._socket is not None:  # plain TCP; behind TLS, the ping's write error tells
            poller = select.poll()
            try:
                poller.register(self._socket, _RDHUP)
                hung_up = any(events & _HUNG_UP for _, events in poller.poll(0))
            except (OSError, ValueError):  # already closed
                hung_up = True
        if hung_up:
            self._protocol.transport.abortConnection()
            return
        with contextlib.suppress(Exception):  # autobahn refuses once closing; then no ping
            self._protocol.sendPing()
        self._watch_peer()

    # IPushProducer: Twisted calls these about the transport's write buffer.

    def pauseProducing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resumeProducing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)
        if self.on_drained is not None:
            self.on_drained()

    def stopProducing(self) -> None:
        self.closed = True
        if self._peer_check is not None:
            self._peer_check.cancel()
            self._peer_check = None
        self.resumeProducing()


def browser_for(receive: Receive, send: Send) -> AsgiBrowser:
    protocol = _daphne_protocol(send)
    if protocol is None:
        return AsgiBrowser(receive, send)
    return DaphneBrowser(receive, send, protocol)
