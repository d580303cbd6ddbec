"""The browser side of a relay connection.

ASGI alone cannot give the relay what it needs from Daphne: Daphne queues every incoming message
without bound and buffers every outgoing one without bound (there is no way to wait for a slow
browser), drops close reasons, and refuses the 1011 close code. Under Daphne the relay therefore
also holds the connection's own protocol object (autobahn's, on Twisted's transport) and uses it
for exactly four things:

- outgoing data: `sendMessage` directly, the same call Daphne's own send path ends in;
- write flow control: a push producer registered on the transport, which Twisted pauses when
  more than its buffer size is waiting for the browser and resumes once it has drained;
- read flow control: `pauseProducing()` / `resumeProducing()` on the transport, which stop and
  restart reading from the browser's socket while the desktop is not keeping up;
- closing with a code (1011 included) and a reason.

Under any other ASGI server (and in tests with WebsocketCommunicator) `AsgiBrowser` speaks
plain ASGI: correct, without the flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

MAX_MESSAGE = 16 * 1024 * 1024  # a browser message larger than this closes the connection (1009)
REASON_LIMIT = 123  # bytes: a close frame's payload is at most 125, two of them the code

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


@implementer(IPushProducer)
class DaphneBrowser(AsgiBrowser):
    """A browser connection served by Daphne, with flow control in both directions."""

    def __init__(self, receive: Receive, send: Send, protocol):
        super().__init__(receive, send)
        self._protocol = protocol
        self._drained: asyncio.Future | None = None
        self._reading_paused = False

    async def accept(self, subprotocol: str | None) -> None:
        await super().accept(subprotocol)
        protocol = self._protocol
        protocol.maxMessagePayloadSize = MAX_MESSAGE
        transport = protocol.transport
        # Daphne leaves the HTTP channel registered as the transport's producer after the
        # upgrade; it ignores the pauses meant for the WebSocket. Take its place.
        with contextlib.suppress(AttributeError):
            transport.unregisterProducer()
        transport.registerProducer(self, True)

    async def send(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol.state != protocol.STATE_OPEN:
            self.closed = True
            return
        protocol.sendMessage(data, True)
        if self._drained is not None:
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
        if not self._reading_paused and self._protocol.transport is not None:
            self._reading_paused = True
            self._protocol.transport.pauseProducing()

    def resume_reading(self) -> None:
        if self._reading_paused and self._protocol.transport is not None:
            self._reading_paused = False
            self._protocol.transport.resumeProducing()

    # IPushProducer: Twisted calls these about the transport's write buffer.

    def pauseProducing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resumeProducing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def stopProducing(self) -> None:
        self.closed = True
        self.resumeProducing()


def browser_for(receive: Receive, send: Send) -> AsgiBrowser:
    protocol = _daphne_protocol(send)
    if protocol is None:
        return AsgiBrowser(receive, send)
    return DaphneBrowser(receive, send, protocol)
