"""The official clients, on their default options, connect and receive a turn's stream."""

from __future__ import annotations

import pytest

from socketio_server.sink import SocketStream
from tests.socketio_server.support import NodeClient, PythonClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _is_stream(payload: dict) -> bool:
    return payload["type"] == "STREAM"


async def test_the_npm_client_connects_with_a_token_upgrades_and_receives_a_stream(
    server, user, token
):
    client = await NodeClient.start(server.url, {"auth": {"token": token}})
    try:
        connected = await client.next("connect")
        upgraded = await client.next("upgrade")
        async with await SocketStream.open(socket_id=connected["id"], user_id=user.pk) as stream:
            await stream.emit({"type": "STREAM", "prompt": "Hello", "delta": "Hello"})
        payloads = await client.stream(until=_is_stream)
    finally:
        await client.close()

    assert upgraded["transport"] == "websocket"
    assert not stream.failed
    assert payloads == [
        {"type": "RELOAD"},
        {"type": "STREAM", "prompt": "Hello", "delta": "Hello"},
    ]


async def test_python_socketio_connects_with_a_token_and_receives_a_stream(server, user, token):
    python = PythonClient()
    await python.client.connect(server.url, auth={"token": token})
    try:
        socket_id = python.client.get_sid()
        async with await SocketStream.open(socket_id=socket_id, user_id=user.pk) as stream:
            await stream.emit({"type": "STREAM", "prompt": "Hi", "delta": "Hi"})
        payloads = await python.stream(until=_is_stream)
        transport = python.client.transport()
    finally:
        await python.client.disconnect()

    assert transport == "websocket"
    assert not stream.failed
    assert payloads == [{"type": "RELOAD"}, {"type": "STREAM", "prompt": "Hi", "delta": "Hi"}]
