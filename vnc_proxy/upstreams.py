"""The desktop side of a relay connection: a plain RFB server over TCP, or a KasmVNC-style
server over a WebSocket with HTTP Basic auth.

Both offer the same small surface to the relay: `read()` (b"" once the desktop closed),
`write(data)` (returns once the data is buffered below the high-water mark), `close()`. Flow
control toward the desktop is exact: the moment the upstream's socket buffer passes its
high-water mark, `on_pause()` is called (the relay stops reading from the browser), and
`on_resume()` once it has drained.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus

READ_SIZE = 64 * 1024  # one browser message per read; large enough to keep per-message costs low
WRITE_HIGH_WATER = 256 * 1024
WS_MAX_MESSAGE = 16 * 1024 * 1024  # a KasmVNC message larger than this closes the connection
WS_MAX_QUEUE = 4  # messages read ahead from a KasmVNC upstream while the browser is slow
CONNECT_TIMEOUT = 10.0

FlowCallback = Callable[[], None]


class UpstreamError(Exception):
    """The desktop could not be reached or failed; the message is safe to show the viewer."""


def _nothing() -> None:
    return None


class _FlowHooks:
    on_pause: FlowCallback = staticmethod(_nothing)
    on_resume: FlowCallback = staticmethod(_nothing)


class _TcpProtocol(asyncio.StreamReaderProtocol):
    hooks: _FlowHooks = _FlowHooks()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.hooks.on_pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.hooks.on_resume()


class TcpUpstream(_FlowHooks):
    kind = "tcp"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, hostport: str, *, timeout: float = CONNECT_TIMEOUT) -> TcpUpstream:
        host, _, port = hostport.rpartition(":")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
        protocol = _TcpProtocol(reader, loop=loop)
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: protocol, host.strip("[]"), int(port)), timeout
            )
        except TimeoutError:
            raise UpstreamError("the desktop did not answer in time") from None
        except (OSError, ValueError) as exc:
            raise UpstreamError(f"the desktop is unreachable ({type(exc).__name__})") from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Pointer and key events are a few bytes each: send them now, not after 40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        upstream = cls(reader, asyncio.StreamWriter(transport, protocol, reader, loop))
        protocol.hooks = upstream
        return upstream

    async def read(self) -> bytes:
        try:
            return await self._reader.read(READ_SIZE)
        except OSError as exc:
            raise UpstreamError(f"the desktop connection failed ({type(exc).__name__})") from None

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        try:
            await self._writer.drain()  # returns at once unless the buffer is over high water
        except OSError as exc:
            raise UpstreamError(f"the desktop connection failed ({type(exc).__name__})") from None

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 2)


class _HookedClientConnection(ClientConnection):
    hooks: _FlowHooks = _FlowHooks()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.hooks.on_pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.hooks.on_resume()


class WebSocketUpstream(_FlowHooks):
    kind = "websocket"

    def __init__(self, connection: _HookedClientConnection):
        self._ws = connection

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        username: str = "",
        secret: str = "",
        tls_verify: bool = True,
        timeout: float = CONNECT_TIMEOUT,
    ) -> WebSocketUpstream:
        headers = {}
        if username or secret:
            credentials = base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {credentials}"
        context = None
        if url.startswith("wss://"):
            context = ssl.create_default_context()
            if not tls_verify:  # a lab server with a self-signed certificate, by admin choice
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        try:
            connection = await connect(
                url,
                additional_headers=headers,
                subprotocols=["binary"],
                ssl=context,
                open_timeout=timeout,
                max_size=WS_MAX_MESSAGE,
                max_queue=WS_MAX_QUEUE,
                write_limit=WRITE_HIGH_WATER,
                compression=None,  # framebuffer data is already encoded; deflate costs CPU
                user_agent_header="Workgate relay",
                proxy=None,
                create_connection=_HookedClientConnection,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise UpstreamError(f"the desktop refused the connection (HTTP {status})") from None
        except TimeoutError:
            raise UpstreamError("the desktop did not answer in time") from None
        except (OSError, ValueError, ConnectionClosed) as exc:
            raise UpstreamError(f"the desktop is unreachable ({type(exc).__name__})") from None
        except Exception as exc:  # websockets' handshake errors (InvalidHandshake and kin)
            raise UpstreamError(f"the desktop's handshake failed ({type(exc).__name__})") from None
        upstream = cls(connection)
        connection.hooks = upstream
        sock = connection.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return upstream

    async def read(self) -> bytes:
        try:
            message = await self._ws.recv()
        except ConnectionClosedOK:
            return b""
        except ConnectionClosed:
            raise UpstreamError("the desktop connection failed") from None
        return message if isinstance(message, bytes) else message.encode()

    async def write(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed:
            raise UpstreamError("the desktop closed the connection") from None

    async def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._ws.close(), 2)


async def upstream_open(
    *, kind: str, target: str, username: str, secret: str, tls_verify: bool
) -> TcpUpstream | WebSocketUpstream:
    if kind == "tcp":
        return await TcpUpstream.open(target)
    if kind == "websocket":
        return await WebSocketUpstream.open(
            target, username=username, secret=secret, tls_verify=tls_verify
        )
    raise UpstreamError("the workspace has no desktop to connect to")
