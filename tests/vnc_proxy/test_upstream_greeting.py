"""The relay's TCP side reaches only what greets as a VNC server: an address that now answers
with something else (a name the administrator gave, resolving elsewhere since the launch) is
no desktop, and the relay never becomes a tunnel to it."""

from __future__ import annotations

import asyncio

import pytest

from vnc_proxy.upstreams import TcpUpstream, UpstreamError


@pytest.fixture
async def desktop_like():
    """Start a loopback server that sends `banner` to each connection (None: says nothing, as
    a database waits for its client); yields a function returning its host:port."""
    servers = []

    async def start(banner: bytes | None) -> str:
        async def greet(_reader, writer):
            if banner is not None:
                writer.write(banner)
            await asyncio.sleep(30)
            writer.close()

        server = await asyncio.start_server(greet, "127.0.0.1", 0)
        servers.append(server)
        return f"127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    "banner",
    [None, b"SSH-2.0-OpenSSH_9.2\r\n", b"-ERR unknown command\r\n", b"RFB"],
    ids=["silent", "ssh", "redis-like", "cut-short"],
)
async def test_what_does_not_greet_as_a_vnc_server_is_refused(desktop_like, banner):
    hostport = await desktop_like(banner)

    with pytest.raises(UpstreamError) as refused:
        await TcpUpstream.open(hostport, timeout=0.3)

    assert str(refused.value) == "the desktop did not greet as a VNC server"  # for the log
    assert refused.value.reason == "The desktop could not be reached"  # for the viewer, the audit


@pytest.mark.parametrize(
    "greeting", [b"RFB 003.008\n", b"RFB 003.889\n", b"RFB 005.000\n"], ids=str
)
async def test_a_vnc_servers_greeting_is_passed_on_whole(desktop_like, greeting):
    """Most servers say 3.8; Apple's Screen Sharing 3.889, RealVNC 4.x or 5.x (RFC 6143)."""
    hostport = await desktop_like(greeting)

    upstream = await TcpUpstream.open(hostport, timeout=5)

    assert await upstream.read() == greeting
    await upstream.close()
