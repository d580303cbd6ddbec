"""The desktop side of a relay connection: a plain RFB server over TCP, or a KasmVNC-style
server over a WebSocket with HTTP Basic auth.

Both offer the same small surface to the relay: `read()` (b"" once the desktop closed),
`write(data)` (returns once the data is buffered below the high-water mark), `close()`. Flow
control toward the desktop is exact: the moment the upstream's socket buffer passes its
high-water mark, `on_pause()` is called (the relay stops reading from the browser), and
`on_resume()` once it has drained.

Either kind is relayed to only once it has greeted as a VNC server (RFB's protocol version,
`core.rfb.is_rfb_greeting`), so the relay is never a tunnel to whatever else answers at an address.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import functools
import socket
import ssl
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus

from core.rfb import RFB_GREETING_LENGTH, is_rfb_greeting
from workspaces.validators import sends_credentials_in_clear

READ_AHEAD = 256 * 1024  # bytes read from a TCP desktop ahead of a slow browser
WRITE_HIGH_WATER = 256 * 1024
WS_MAX_MESSAGE = 16 * 1024 * 1024  # a KasmVNC message larger than this closes the connection
WS_MAX_QUEUE = 4  # messages read ahead from a KasmVNC upstream while the browser is slow
CONNECT_TIMEOUT = 10.0  # seconds to connect, and as many again for the desktop's greeting
UNREACHABLE = "The desktop could not be reached"
CONNECTION_FAILED = "the desktop connection failed"

FlowCallback = Callable[[], None]


class UpstreamError(Exception):
    """The desktop could not be reached, or failed once connected.

    `reason` is all the viewer and the audit log are told, the same for every way a desktop can
    fail to answer: what answered instead (an HTTP status, a handshake, something that is no VNC
    server) or whether the port was closed or silent would tell whoever sets a workspace's target
    what listens at any address the gateway reaches. The cause, the exception's message, is for
    the server log."""

    def __init__(self, cause: str, *, reason: str = UNREACHABLE):
        super().__init__(cause)
        self.reason = reason


async def _require_rfb_greeting(
    greeting: Awaitable[bytes], *, abort: Callable[[], None], timeout: float
) -> None:
    """Wait for a desktop's first bytes; unless they are RFB's greeting (or if cancelled
    meanwhile), abort its connection. Whatever answers at the address without greeting as a
    VNC server (a database, a mail server, a web service, where a name the administrator gave
    now resolves) is no desktop, and the relay never becomes a tunnel to it."""
    try:
        received = await asyncio.wait_for(greeting, timeout)
    except TimeoutError:
        received = b""
    except BaseException:  # cancelled meanwhile
        abort()
        raise
    if not is_rfb_greeting(received):
        abort()
        raise UpstreamError("the desktop did not greet as a VNC server")


def _nothing() -> None:
    return None


class _FlowHooks:
    on_pause: FlowCallback = staticmethod(_nothing)
    on_resume: FlowCallback = staticmethod(_nothing)


class TcpUpstream(asyncio.Protocol, _FlowHooks):
    """A plain RFB server over TCP.

    Either read with `read()` (a task pumps it), or `attach()` a callback that receives each
    chunk as the socket delivers it, with no task, queue or copy in between; the caller then
    applies flow control itself with `pause_reading()` / `resume_reading()`.
    """

    kind = "tcp"

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._eof = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future | None = None
        self._drained: asyncio.Future | None = None
        self._on_data: Callable[[bytes], None] | None = None
        self._on_close: Callable[[UpstreamError | None], None] | None = None

    @classmethod
    async def open(cls, hostport: str, *, timeout: float = CONNECT_TIMEOUT) -> TcpUpstream:
        """Connect, and wait for the desktop's RFB greeting (which the relay then passes on)."""
        host, _, port = hostport.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await asyncio.wait_for(
                loop.create_connection(cls, host.strip("[]"), int(port)), timeout
            )
        except TimeoutError:
            raise UpstreamError("the desktop did not answer in time") from None
        except (OSError, ValueError) as exc:
            raise UpstreamError(f"the desktop is unreachable ({exc!r})") from None
        await _require_rfb_greeting(
            upstream._greeting(), abort=upstream.transport.abort, timeout=timeout
        )
        return upstream

    async def _greeting(self) -> bytes:
        """The first RFB_GREETING_LENGTH bytes the server sent (fewer if it closed), left in
        place for the relay to read."""
        while self._buffered < RFB_GREETING_LENGTH and not self._eof:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return b"".join(self._chunks)[:RFB_GREETING_LENGTH]

    # asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Pointer and key events are a few bytes each: send them now, not after 40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self._on_data is not None:
            self._on_data(data)
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_AHEAD:
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> None:
        self._eof = True
        self._wake()
        # Returning None closes the transport: RFB has no half-closed state worth keeping.

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None:
            self._error = UpstreamError(
                f"the desktop connection failed ({exc!r})", reason=CONNECTION_FAILED
            )
        self._wake()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self._error)

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()
        self.on_pause()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)
        self.on_resume()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # The relay's side

    async def read(self) -> bytes:
        while not self._chunks:
            if self._eof:
                if self._error:
                    raise self._error
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._buffered <= READ_AHEAD and not self._eof:
            self.transport.resume_reading()
        return data

    def attach(
        self, on_data: Callable[[bytes], None], on_close: Callable[[UpstreamError | None], None]
    ) -> None:
        """From now on deliver every chunk to `on_data` (what was read already first), and the
        end of the connection to `on_close(error or None)`; no task reads any more."""
        while self._chunks:
            on_data(self._chunks.popleft())
        self._buffered = 0
        self._on_data = on_data
        if self._eof and self.transport.is_closing():
            on_close(self._error)  # it ended before anyone was listening
            return
        self._on_close = on_close
        self.transport.resume_reading()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def write_now(self, data: bytes) -> None:
        """Buffer `data` for the desktop; on_pause() says when to stop sending more."""
        self.transport.write(data)

    async def write(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise self._error or UpstreamError(
                "the desktop closed the connection", reason=CONNECTION_FAILED
            )
        self.transport.write(data)
        if self._drained is not None:
            await self._drained

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class _HookedClientConnection(ClientConnection):
    hooks: _FlowHooks = _FlowHooks()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.hooks.on_pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.hooks.on_resume()


class _connect_here_only(connect):
    """websockets' connect without following redirects. The desktop's address is the admin's
    choice; a redirect would take the session's Basic credentials and the user's screen to
    wherever whoever answers at that address says. A 3xx is refused like any other status."""

    def process_redirect(self, exc: Exception) -> Exception:
        return exc


@functools.cache
def _tls(*, verify: bool) -> ssl.SSLContext:
    """The TLS context for wss:// desktops, made once per process for each setting: making one
    reads every CA certificate of the system's store (about 30 ms of CPU), which every relay
    connection to a KasmVNC host would pay. Unverified only for a lab server with a
    self-signed certificate, by an administrator's choice (vnc_tls_verify)."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class WebSocketUpstream(_FlowHooks):
    kind = "websocket"

    def __init__(self, connection: _HookedClientConnection):
        self._ws = connection
        self._greeting_messages: collections.deque[bytes] = collections.deque()

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
        """Connect, and wait for the desktop's RFB greeting in its first binary messages, as
        TcpUpstream.open does. Basic credentials go over TLS only: with a ws:// target they are
        refused before anything is sent (a row saved before the rule that refuses saving it)."""
        if sends_credentials_in_clear(url, username=username, secret=secret):
            raise UpstreamError("refused to send Basic credentials over ws://, unencrypted")
        headers = {}
        if username or secret:
            credentials = base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {credentials}"
        context = _tls(verify=tls_verify) if url.startswith("wss://") else None
        try:
            connection = await _connect_here_only(
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
            raise UpstreamError(
                f"the desktop refused the connection (HTTP {exc.response.status_code})"
            ) from None
        except TimeoutError:
            raise UpstreamError("the desktop did not answer in time") from None
        except (OSError, ValueError, ConnectionClosed) as exc:
            raise UpstreamError(f"the desktop is unreachable ({exc!r})") from None
        except Exception as exc:  # websockets' handshake errors (InvalidHandshake and kin)
            raise UpstreamError(f"the desktop's handshake failed ({exc!r})") from None
        upstream = cls(connection)
        await _require_rfb_greeting(
            upstream._greeting(), abort=connection.transport.abort, timeout=timeout
        )
        connection.hooks = upstream
        sock = connection.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return upstream

    async def _greeting(self) -> bytes:
        """The first RFB_GREETING_LENGTH bytes of the desktop's binary messages (fewer if it
        closed or sent text), left in place for the relay to read."""
        received = 0
        with contextlib.suppress(ConnectionClosed):
            while received < RFB_GREETING_LENGTH:
                message = await self._ws.recv()
                if not isinstance(message, bytes):
                    break  # RFB travels in binary messages
                self._greeting_messages.append(message)
                received += len(message)
        return b"".join(self._greeting_messages)[:RFB_GREETING_LENGTH]

    async def read(self) -> bytes:
        if self._greeting_messages:
            return self._greeting_messages.popleft()
        try:
            message = await self._ws.recv()
        except ConnectionClosedOK:
            return b""
        except ConnectionClosed as exc:
            raise UpstreamError(
                f"the desktop connection failed ({exc})", reason=CONNECTION_FAILED
            ) from None
        return message if isinstance(message, bytes) else message.encode()

    async def write(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise UpstreamError(
                f"the desktop closed the connection ({exc})", reason=CONNECTION_FAILED
            ) from None

    async def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._ws.close(), 2)


async def upstream_open(
    *, kind: str, target: str, username: str, secret: str, tls_verify: bool
) -> TcpUpstream | WebSocketUpstream:
    # CONNECT_TIMEOUT is read here, at each call, so that a test can shorten it.
    if kind == "tcp":
        return await TcpUpstream.open(target, timeout=CONNECT_TIMEOUT)
    if kind == "websocket":
        return await WebSocketUpstream.open(
            target, username=username, secret=secret, tls_verify=tls_verify, timeout=CONNECT_TIMEOUT
        )
    raise UpstreamError("the workspace has no desktop to connect to")
