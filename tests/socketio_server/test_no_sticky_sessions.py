"""Two server processes share one Redis, and a client's requests land on either of them."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect

from socketio_server.sink import SocketStream
from tests.socketio_server.support import (
    WAIT,
    NodeClient,
    PythonClient,
    event_packet,
    parse_event,
    receive,
    websocket_url,
)
from tests.support.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "content-length", "host"}


async def test_polling_requests_alternating_between_processes_make_one_session(
    servers, polling, user, token
):
    a, b = servers
    await polling.open(a)

    await polling.post(b, "40" + json.dumps({"token": token}))
    connected = await polling.packets(a)
    socket_id = json.loads(connected[0][2:])["sid"]
    await polling.post(a, event_packet("register", {"token": token}))
    registered = await polling.packets(b)
    async with await SocketStream.open(socket_id=socket_id, user_id=user.pk) as stream:
        await stream.emit({"type": "STREAM", "prompt": "ab", "delta": "ab"})
    streamed = await polling.collect(a, b, count=2)
    pong = await polling.post(b, "3")

    assert parse_event(registered[0]) == ["registered", {"socketId": socket_id}]
    assert [parse_event(packet) for packet in streamed] == [
        ["RECEIVE_STREAM", {"type": "RELOAD"}],
        ["RECEIVE_STREAM", {"type": "STREAM", "prompt": "ab", "delta": "ab"}],
    ]
    assert pong.status_code == 200


async def test_a_poll_waiting_on_one_process_hears_a_close_posted_to_the_other(servers, polling):
    a, b = servers
    await polling.open(a)
    pending = asyncio.create_task(polling.packets(a))
    await asyncio.sleep(0.3)  # let the GET reach A and start waiting

    await polling.post(b, "1")

    assert await asyncio.wait_for(pending, WAIT) == ["1"]


async def test_a_session_polled_on_one_process_upgrades_on_the_other(servers, polling, user, token):
    a, b = servers
    await polling.open(a)
    await polling.post(a, "40" + json.dumps({"token": token}))
    socket_id = json.loads((await polling.packets(a))[0][2:])["sid"]
    pending = asyncio.create_task(polling.packets(a))

    async with connect(websocket_url(b, transport="websocket", sid=polling.sid)) as websocket:
        await websocket.send("2probe")
        probe = await receive(websocket)
        released = await asyncio.wait_for(pending, WAIT)
        await websocket.send("5")
        async with await SocketStream.open(socket_id=socket_id, user_id=user.pk) as stream:
            await stream.emit({"type": "STREAM", "prompt": "b", "delta": "b"})
        received = [parse_event(await receive(websocket)) for _ in range(2)]

    assert (probe, released) == ("3probe", ["6"])
    assert received == [
        ["RECEIVE_STREAM", {"type": "RELOAD"}],
        ["RECEIVE_STREAM", {"type": "STREAM", "prompt": "b", "delta": "b"}],
    ]


class RoundRobin:
    """A load balancer without sticky sessions: each request, and each WebSocket, to the next
    server in turn."""

    def __init__(self, servers):
        self.targets = itertools.cycle(servers)
        self.hits: Counter = Counter()
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = next(self.targets)
        self.hits[(target.port, request.method, request.query.get("transport"))] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, target, headers)
        async with self.session.request(
            request.method,
            target.url + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=upstream.status, body=body, headers=kept)

    async def _websocket(self, request, target, headers) -> web.WebSocketResponse:
        downstream = web.WebSocketResponse()
        await downstream.prepare(request)
        url = f"ws://127.0.0.1:{target.port}{request.path_qs}"
        async with self.session.ws_connect(url, headers=headers) as upstream:

            async def pump(source, sink):
                async for message in source:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await sink.send_str(message.data)
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        await sink.send_bytes(message.data)
                await sink.close()

            await asyncio.gather(pump(downstream, upstream), pump(upstream, downstream))
        return downstream


@pytest.fixture
async def balancer(servers):
    proxy = RoundRobin(servers)
    proxy.session = aiohttp.ClientSession()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    proxy.url = f"http://127.0.0.1:{port}"
    yield proxy
    await proxy.session.close()
    await runner.cleanup()


def _is_stream(payload: dict) -> bool:
    return payload["type"] == "STREAM"


async def test_the_npm_client_works_behind_a_round_robin_balancer(balancer, servers, user, token):
    client = await NodeClient.start(balancer.url, {"auth": {"token": token}})
    try:
        connected = await client.next("connect")
        upgraded = await client.next("upgrade")
        async with await SocketStream.open(socket_id=connected["id"], user_id=user.pk) as stream:
            await stream.emit({"type": "STREAM", "prompt": "rr", "delta": "rr"})
        payloads = await client.stream(until=_is_stream)
    finally:
        await client.close()

    polled_on = {port for port, _method, transport in balancer.hits if transport == "polling"}
    assert polled_on == {server.port for server in servers}
    assert upgraded["transport"] == "websocket"
    assert payloads == [{"type": "RELOAD"}, {"type": "STREAM", "prompt": "rr", "delta": "rr"}]


async def test_python_socketio_polling_only_works_behind_a_round_robin_balancer(
    balancer, servers, user, token
):
    python = PythonClient()
    await python.client.connect(balancer.url, auth={"token": token}, transports=["polling"])
    try:
        socket_id = python.client.get_sid()
        async with await SocketStream.open(socket_id=socket_id, user_id=user.pk) as stream:
            await stream.emit({"type": "STREAM", "prompt": "p", "delta": "p"})
        payloads = await python.stream(until=_is_stream)
    finally:
        await python.client.disconnect()

    polled_on = {port for port, _method, transport in balancer.hits if transport == "polling"}
    assert polled_on == {server.port for server in servers}
    assert payloads == [{"type": "RELOAD"}, {"type": "STREAM", "prompt": "p", "delta": "p"}]
