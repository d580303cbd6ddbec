"""The WebSocket transport, spoken raw: direct sessions, the upgrade from polling, heartbeats."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from socketio_server.sink import SocketStream
from tests.socketio_server.support import WAIT, parse_event, receive, websocket_url
from tests.support.signin import token_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def test_a_direct_websocket_session_opens_without_upgrades_and_connects(server, token):
    async with connect(websocket_url(server, transport="websocket")) as websocket:
        opening = json.loads((await receive(websocket))[1:])
        await websocket.send("40" + json.dumps({"token": token}))
        connected = await receive(websocket)

    assert opening["upgrades"] == []
    assert opening["pingInterval"] == 25000
    assert connected.startswith('40{"sid":"')


async def test_a_polling_session_upgrades_and_keeps_what_was_queued_meanwhile(
    server, polling, user, token
):
    await polling.open(server)
    await polling.post(server, "40" + json.dumps({"token": token}))
    socket_id = json.loads((await polling.packets(server))[0][2:])["sid"]
    pending = asyncio.create_task(polling.packets(server))

    async with connect(websocket_url(server, transport="websocket", sid=polling.sid)) as websocket:
        await websocket.send("2probe")
        probe = await receive(websocket)
        released = await asyncio.wait_for(pending, WAIT)
        # The client has paused polling; this turn's packets wait on the poll channel...
        stream = await SocketStream.open(socket_id=socket_id, user_id=user.pk)
        await websocket.send("5")
        # ...and come down the WebSocket once it carries the session, followed by new ones.
        await stream.emit({"type": "STREAM", "prompt": "x", "delta": "x"})
        await stream.close()
        received = [parse_event(await receive(websocket)) for _ in range(2)]
        poll_after_upgrade = await polling.get(server)

    assert probe == "3probe"
    assert released == ["6"]
    assert received == [
        ["RECEIVE_STREAM", {"type": "RELOAD"}],
        ["RECEIVE_STREAM", {"type": "STREAM", "prompt": "x", "delta": "x"}],
    ]
    assert poll_after_upgrade.status_code == 400


async def test_an_upgrade_for_an_unknown_session_is_refused(server):
    with pytest.raises(InvalidStatus) as refused:
        async with connect(websocket_url(server, transport="websocket", sid="nope")):
            pass

    assert refused.value.response.status_code == 403


async def test_a_failed_probe_leaves_the_polling_session_working(server, polling, token):
    await polling.open(server)

    async with connect(websocket_url(server, transport="websocket", sid=polling.sid)) as websocket:
        await websocket.send("5")  # an upgrade without a probe
        with pytest.raises(ConnectionClosed):
            await receive(websocket)
    await polling.post(server, "40" + json.dumps({"token": token}))
    connected = await polling.packets(server)

    assert connected[0].startswith('40{"sid":"')


async def test_the_server_pings_a_websocket_client_and_drops_it_when_it_stops_answering(
    fast_server,
):
    async with connect(websocket_url(fast_server, transport="websocket")) as websocket:
        sid = json.loads((await receive(websocket))[1:])["sid"]
        first_ping = await receive(websocket)
        await websocket.send("3")
        second_ping = await receive(websocket)
        # No pong: the server closes the connection after the ping timeout.
        with pytest.raises(ConnectionClosed) as closed:
            await receive(websocket)

    assert (first_ping, second_ping) == ("2", "2")
    assert closed.value.rcvd.code == 4408
    assert sid


async def test_a_websocket_session_is_gone_for_polling_too_once_closed(server, polling):
    async with connect(websocket_url(server, transport="websocket")) as websocket:
        polling.sid = json.loads((await receive(websocket))[1:])["sid"]
        while_open = await polling.get(server)
        await websocket.send("1")
        with pytest.raises(ConnectionClosed):
            await receive(websocket)
    after_close = await polling.get(server)

    assert while_open.json()["code"] == 3  # the session exists, but not on this transport
    assert after_close.json()["code"] == 1


MANY_SOCKETS = 120  # redis-py's default pool stops at 100


@pytest.fixture
def tokens(user, make_user) -> list[str]:
    """Tokens of enough accounts, `user`'s first, to hold MANY_SOCKETS within each one's cap."""
    accounts = -(-MANY_SOCKETS // settings.WORKGATE_SOCKETIO_MAX_SOCKETS_PER_USER)
    return [token_for(user), *(token_for(make_user()) for _ in range(accounts - 1))]


async def test_one_process_holds_more_sockets_than_a_default_redis_pool(server, user, tokens):
    # Each socket's reader holds a Redis connection.
    sockets = []
    try:
        for index in range(MANY_SOCKETS):
            websocket = await connect(websocket_url(server, transport="websocket"))
            sockets.append(websocket)
            await receive(websocket)
            await websocket.send("40" + json.dumps({"token": tokens[index % len(tokens)]}))
        socket_ids = [json.loads((await receive(websocket))[2:])["sid"] for websocket in sockets]
        async with await SocketStream.open(socket_id=socket_ids[0], user_id=user.pk) as stream:
            await stream.emit({"type": "STREAM", "prompt": "z", "delta": "z"})
        received = [parse_event(await receive(sockets[0])) for _ in range(2)]
    finally:
        await asyncio.gather(*(websocket.close() for websocket in sockets))

    assert not stream.failed
    assert received[1] == ["RECEIVE_STREAM", {"type": "STREAM", "prompt": "z", "delta": "z"}]
