"""Who is on a socket: a token at CONNECT or a `register` event, checked like the REST API's."""

from __future__ import annotations

import json

import pytest
import socketio
from websockets.asyncio.client import connect

from accounts.services import user_sign_out_everywhere
from accounts.tokens import issue_tokens
from audit.services import Origin
from streaming.socketio.sink import SocketStream
from tests.socketio.support import NodeClient, PythonClient, receive, websocket_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _socket_events(client: NodeClient) -> list[str]:
    """What the Socket.IO socket saw (the engine's transport upgrade aside)."""
    return [report["event"] for report in client.seen if report["event"] != "upgrade"]


async def test_a_bad_token_at_connect_gets_connect_error_and_nothing_else(server):
    client = await NodeClient.start(server.url, {"auth": {"token": "not-a-jwt"}})
    try:
        refused = await client.next("connect_error")
    finally:
        await client.close()

    assert refused["message"] == "Invalid or expired token"
    assert _socket_events(client) == ["connect_error"]


async def test_an_empty_token_at_connect_gets_connect_error(server):
    python = PythonClient()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await python.client.connect(server.url, auth={"token": ""})

    assert python.errors.get_nowait() == {"message": "Authentication token missing"}


@pytest.fixture
def inactive_token(user, token) -> str:
    user.is_active = False
    user.save(update_fields=["is_active"])
    return token


async def test_an_inactive_users_token_is_refused(server, inactive_token):
    client = await NodeClient.start(server.url, {"auth": {"token": inactive_token}})
    try:
        refused = await client.next("connect_error")
    finally:
        await client.close()

    assert refused["message"] == "Invalid or expired token"


@pytest.fixture
def signed_out_token(user, token) -> str:
    user_sign_out_everywhere(user=user, actor=user, origin=Origin(ip="127.0.0.1"))
    return token


async def test_a_token_from_before_a_sign_out_everywhere_is_refused(server, signed_out_token):
    client = await NodeClient.start(server.url, {"auth": {"token": signed_out_token}})
    try:
        refused = await client.next("connect_error")
    finally:
        await client.close()

    assert refused["message"] == "Invalid or expired token"


async def test_a_refresh_token_is_not_an_access_token(server, user):
    refresh = issue_tokens(user, mfa=False)["refresh"]
    client = await NodeClient.start(server.url, {"auth": {"token": refresh}})
    try:
        refused = await client.next("connect_error")
    finally:
        await client.close()

    assert refused["message"] == "Invalid or expired token"


async def test_a_socket_registers_after_connecting_and_learns_its_socket_id(server, user, token):
    client = await NodeClient.start(server.url)
    try:
        connected = await client.next("connect")
        await client.emit("register", {"token": token})
        registered = await client.next("registered")
        async with await SocketStream.open(socket_id=connected["id"], user_id=user.pk) as stream:
            pass
        reload = await client.next("RECEIVE_STREAM")
    finally:
        await client.close()

    assert registered["payload"] == {"socketId": connected["id"]}
    assert not stream.failed
    assert reload["payload"] == {"type": "RELOAD"}


async def test_python_socketio_registers_with_an_acknowledged_call(server, token):
    python = PythonClient()
    await python.client.connect(server.url)
    try:
        answer = await python.client.call("register", {"token": token})
        registered = await python.registered.get()
        socket_id = python.client.get_sid()
    finally:
        await python.client.disconnect()

    assert answer == registered == {"socketId": socket_id}


async def test_an_unregistered_socket_cannot_be_streamed_to(server, user):
    client = await NodeClient.start(server.url)
    try:
        connected = await client.next("connect")
        stream = await SocketStream.open(socket_id=connected["id"], user_id=user.pk)
        await stream.close()
    finally:
        await client.close()

    assert stream.failed


async def test_a_bad_token_in_register_gets_connect_error_and_ends_the_socket(server, user):
    client = await NodeClient.start(server.url)
    try:
        connected = await client.next("connect")
        await client.emit("register", {"token": "forged"})
        refused = await client.next("connect_error")
        stream = await SocketStream.open(socket_id=connected["id"], user_id=user.pk)
        await stream.close()
    finally:
        await client.close()

    assert refused["message"] == "Invalid or expired token"
    assert _socket_events(client) == ["connect", "connect_error"]
    assert stream.failed


async def test_a_socket_cannot_be_registered_to_a_second_user(server, token, other_token):
    client = await NodeClient.start(server.url, {"auth": {"token": token}})
    try:
        await client.next("connect")
        await client.emit("register", {"token": other_token})
        refused = await client.next("connect_error")
    finally:
        await client.close()

    assert refused["message"] == "This socket is registered to another user"


async def test_a_namespace_other_than_the_root_is_refused(server, token):
    async with connect(websocket_url(server, transport="websocket")) as websocket:
        await receive(websocket)
        await websocket.send("40/admin," + json.dumps({"token": token}))
        refused = await receive(websocket)

    assert refused == '44/admin,{"message":"Invalid namespace"}'
