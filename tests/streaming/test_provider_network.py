"""The providers' network streams (streaming/providers/network.py) against loopback servers:
what httpcore asks of an idle connection, and closing one whose peer stopped reading."""

from __future__ import annotations

import asyncio

import httpcore
import pytest

from streaming.providers.network import AsyncioBackend


@pytest.fixture
async def server():
    """A loopback TCP server that reads nothing; `writers` are its side of each connection."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(_reader, writer):
        writers.append(writer)

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    yield port, writers
    for writer in writers:
        writer.transport.abort()
    listener.close()
    await listener.wait_closed()


async def until(condition, seconds: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


@pytest.mark.parametrize("then", ["sends unasked", "closes", "sends and closes"])
async def test_an_idle_connection_the_server_spoke_on_or_closed_is_not_reused(server, then):
    """httpcore asks `is_readable` before reusing a kept-alive connection. The stream reads
    ahead, so what the server sent (a 408 at its idle timeout, its close) is in the stream's
    buffer rather than on the socket, and must count all the same."""
    port, writers = server
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
    assert await until(lambda: writers)
    assert stream.get_extra_info("is_readable") is False  # idle, nothing said: reusable

    if then != "closes":
        writers[0].write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
    if then != "sends unasked":
        writers[0].close()

    assert await until(lambda: stream.get_extra_info("is_readable"))
    await stream.aclose()


async def test_closing_a_stream_whose_peer_stopped_reading_lets_go_of_the_socket_at_once(
    server,
):
    """A provider that stops reading mid-request: the write times out, and closing the stream
    must not keep the socket open until a queue that never drains is written."""
    port, _writers = server
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
    sock = stream.get_extra_info("socket")

    with pytest.raises(httpcore.WriteTimeout):
        await stream.write(b"x" * (64 * 1024 * 1024), timeout=0.2)
    await stream.aclose()

    assert await until(lambda: sock.fileno() == -1)
