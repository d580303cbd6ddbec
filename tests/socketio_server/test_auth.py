"""Who is on a socket: a token at CONNECT or a `register` event, checked like the REST API's."""

from __future__ import annotations

import asyncio
import json

import pytest
import socketio
from websockets.asyncio.client import connect

from accounts.services import user_sign_out_everywhere
from accounts.tokens import issue_tokens
from core.network import Origin
from socketio_server import connection
from socketio_server.protocol import Timing, Transport, parse_engine_packet
from socketio_server.sink import SocketStream
from socketio_server.store import get_store
from tests.socketio_server.support import NodeClient, PythonClient, receive, websocket_url
from tests.support.database import orm

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


async def _refusal_at_connect(server, token: str) -> dict:
    """What the official client hears when it connects with `token`: its connect_error."""
    client = await NodeClient.start(server.url, {"auth": {"token": token}})
    try:
        return await client.next("connect_error")
    finally:
        await client.close()


def _turn_off(user) -> None:
    user.is_active = False
    user.save(update_fields=["is_active"])


def _sign_out_everywhere(user) -> None:
    user_sign_out_everywhere(user=user, actor=user, origin=Origin(ip="127.0.0.1"))


@pytest.mark.parametrize(
    "revoke", [_turn_off, _sign_out_everywhere], ids=["account turned off", "signed out"]
)
async def test_a_token_the_api_would_refuse_is_refused(server, user, token, revoke):
    await orm(revoke, user)

    refused = await _refusal_at_connect(server, token)

    assert refused["message"] == "Invalid or expired token"


async def test_a_refresh_token_is_not_an_access_token(server, user):
    refresh = issue_tokens(user, mfa=False)["refresh"]

    refused = await _refusal_at_connect(server, refresh)

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


# --- Signed out while connected ----------------------------------------------------------------


async def _connected_with(server, token: str, how: str) -> NodeClient:
    """The official client on the WebSocket transport with a socket on `token`'s account: at
    CONNECT, or by `register`."""
    if how == "at connect":
        options = {"auth": {"token": token}, "transports": ["websocket"]}
        client = await NodeClient.start(server.url, options)
        await client.next("connect")
        return client
    client = await NodeClient.start(server.url, {"transports": ["websocket"]})
    await client.next("connect")
    await client.emit("register", {"token": token})
    await client.next("registered")
    return client


def _socket_id(client: NodeClient) -> str:
    return next(report["id"] for report in client.seen if report["event"] == "connect")


@pytest.mark.parametrize("how", ["at connect", "by register"])
async def test_signing_out_everywhere_disconnects_the_accounts_sockets(
    server, user, token, other_user, other_token, how
):
    """A lost laptop's open socket is disconnected by the server at once (the client does not
    reconnect by itself); another account's socket is not touched."""
    mine = await _connected_with(server, token, how)
    theirs = await _connected_with(server, other_token, how)
    try:
        await orm(_sign_out_everywhere, user)
        disconnected = await mine.next("disconnect")
        my_stream = await SocketStream.open(socket_id=_socket_id(mine), user_id=user.pk)
        await my_stream.close()
        async with await SocketStream.open(
            socket_id=_socket_id(theirs), user_id=other_user.pk
        ) as their_stream:
            pass
        reload = await theirs.next("RECEIVE_STREAM")
    finally:
        await mine.close()
        await theirs.close()

    assert disconnected["reason"] == "io server disconnect"
    assert my_stream.failed  # the server let go of the socket: nothing reaches it any more
    assert not their_stream.failed
    assert reload["payload"] == {"type": "RELOAD"}
    assert "disconnect" not in _socket_events(theirs)


async def test_a_polling_socket_hears_the_disconnect_at_its_poll(server, polling, user, token):
    await polling.open(server)
    await polling.post(server, "40" + json.dumps({"token": token}))
    socket_id = json.loads((await polling.packets(server))[0][2:])["sid"]
    poll = asyncio.create_task(polling.packets(server))

    await orm(_sign_out_everywhere, user)
    answered = await poll
    stream = await SocketStream.open(socket_id=socket_id, user_id=user.pk)
    await stream.close()

    assert answered == ["41"]
    assert stream.failed


async def test_a_socket_reconnected_as_someone_else_is_left_alone(
    server, user, token, other_user, other_token
):
    """One Engine.IO session, its socket ended and connected again on another account: signing
    the first account out does not touch the second's socket."""
    async with connect(websocket_url(server, transport="websocket")) as websocket:
        await receive(websocket)
        await websocket.send("40" + json.dumps({"token": token}))
        await receive(websocket)
        await websocket.send("41")
        await websocket.send("40" + json.dumps({"token": other_token}))
        theirs = json.loads((await receive(websocket))[2:])["sid"]

        await orm(_sign_out_everywhere, user)
        async with await SocketStream.open(socket_id=theirs, user_id=other_user.pk):
            pass
        heard = await receive(websocket)

    assert heard == '42["RECEIVE_STREAM",{"type":"RELOAD"}]'


async def test_a_sign_out_between_the_token_check_and_the_join_still_ends_the_socket(
    user, token, monkeypatch
):
    """The socket joins its account's group after the token is checked; a sign-out that commits
    in between is announced before the socket could hear it, so the token is checked again."""
    check = connection.user_for_token

    async def check_then_sign_out(candidate):
        found = await check(candidate)
        if not signed_out:
            signed_out.append(True)
            await orm(_sign_out_everywhere, user)
        return found

    signed_out: list[bool] = []
    monkeypatch.setattr(connection, "user_for_token", check_then_sign_out)
    timing = Timing.from_settings()
    session = connection.new_session(transport=Transport.WEBSOCKET, timing=timing)
    await get_store().create(session)
    delivered: list[str] = []

    async def deliver(encoded: list[str]) -> None:
        delivered.extend(encoded)

    await connection.Connection(session, deliver=deliver, timing=timing).receive(
        parse_engine_packet("40" + json.dumps({"token": token}))
    )

    assert delivered == ['44{"message":"Invalid or expired token"}']
    assert (await get_store().get(session.sid)).socket_id == ""
    await get_store().delete(session.sid)
