"""httpcore's network layer on asyncio's own streams, for the clients that talk to providers.

httpcore reaches asyncio through anyio, whose socket stream stops reading from its socket after
every chunk and starts again at the next read: two epoll_ctl calls, with their bookkeeping, for
each chunk a provider streams, which is usually one word. asyncio's StreamReader keeps reading
until its buffer holds LIMIT bytes. Timeouts are asyncio's, and errors become httpcore's, which
httpx turns into its own as with any other backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

# How much a stream reads ahead of httpcore before it stops reading from its socket.
LIMIT = 256 * 1024
# A connection idle this long is not reused for a turn's next round. Below every common
# server's own idle timeout (uvicorn, Node and llama.cpp 5 s, gunicorn 2 s), so that a request
# is never sent on a connection just as the server closes it: httpcore does not send it again.
KEEPALIVE_EXPIRY = 1.5


@contextlib.contextmanager
def _mapped(timed_out: type[Exception], failed: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:  # before OSError, of which it is one
        raise timed_out(str(exc) or "timed out") from exc
    except OSError as exc:  # refused, reset, unreachable, a TLS failure (ssl.SSLError)
        raise failed(str(exc) or type(exc).__name__) from exc


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()

    async def aclose(self) -> None:
        # At once, whatever is still queued: a cancelled turn closes its connection on its way
        # out, and a provider that stopped reading must not keep the socket open (close()
        # would wait for the queue to drain, or TLS's goodbye for 30 seconds).
        self._writer.transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncioStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            # Asked of an idle kept-alive connection: anything the server sent since its last
            # answer (its close, or a 408 before it) means the connection cannot be reused.
            # The stream reads ahead, so that is in the reader's buffer, not on the socket.
            reader = self._reader
            # CPython's StreamReader keeps what it read ahead in `_buffer`; without it, the
            # connection counts as readable, so httpcore opens a new one rather than reuse it.
            buffered = getattr(reader, "_buffer", b"?")
            return (
                reader.at_eof()
                or bool(buffered)
                or reader.exception() is not None
                or self._writer.transport.is_closing()
            )
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[tuple] | None = None,
    ) -> AsyncioStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    limit=LIMIT,
                    # As anyio does: a host whose first address does not answer (a broken IPv6
                    # route) costs a quarter of a second, not the connect timeout.
                    happy_eyeballs_delay=0.25,
                    local_addr=(local_address, 0) if local_address else None,
                )
        stream = AsyncioStream(reader, writer)
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            try:
                for option in socket_options or ():
                    writer.get_extra_info("socket").setsockopt(*option)
            except OSError:
                await stream.aclose()
                raise
        return stream

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, its connection pool on AsyncioBackend (httpx offers no argument for a
    network backend; the pool is the one its constructor would make, given one)."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            keepalive_expiry=KEEPALIVE_EXPIRY,
            network_backend=AsyncioBackend(),
        )
