"""Engine.IO long-polling, spoken raw: the handshake, payloads, heartbeat, errors and CORS."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from socketio_server.consumers import MAX_ANONYMOUS_PER_CLIENT
from socketio_server.sink import SocketStream
from tests.socketio_server.support import (
    WAIT,
    Polling,
    event_packet,
    parse_event,
    receive,
    websocket_url,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _error(response) -> tuple[int, dict]:
    return response.status_code, response.json()


async def test_a_handshake_answers_an_open_packet_offering_the_websocket_upgrade(server, polling):
    opening = await polling.open(server)

    assert opening == {
        "sid": opening["sid"],
        "upgrades": ["websocket"],
        "pingInterval": 25000,
        "pingTimeout": 20000,
        "maxPayload": 1000000,
    }
    assert len(opening["sid"]) == 20


async def test_a_client_connects_registers_and_reads_queued_packets_in_one_payload(
    server, polling, user, token
):
    await polling.open(server)

    posted = await polling.post(server, "40")
    connected = await polling.packets(server)
    await polling.post(server, event_packet("register", {"token": token}, ack_id=7))
    registered = await polling.packets(server)

    socket_id = json.loads(connected[0][2:])["sid"]
    assert posted.status_code == 200
    assert posted.text == "ok"
    assert connected == [f'40{{"sid":"{socket_id}"}}']
    assert registered == [
        f'42["registered",{{"socketId":"{socket_id}"}}]',
        f'437[{{"socketId":"{socket_id}"}}]',
    ]


async def test_a_stream_reaches_a_polling_socket(server, polling, user, token):
    await polling.open(server)
    await polling.post(server, "40" + json.dumps({"token": token}))
    socket_id = json.loads((await polling.packets(server))[0][2:])["sid"]

    async with await SocketStream.open(socket_id=socket_id, user_id=user.pk) as stream:
        await stream.emit({"type": "STREAM", "prompt": "a", "delta": "a"})
    streamed = await polling.collect(server, count=2)

    assert [parse_event(packet) for packet in streamed] == [
        ["RECEIVE_STREAM", {"type": "RELOAD"}],
        ["RECEIVE_STREAM", {"type": "STREAM", "prompt": "a", "delta": "a"}],
    ]


async def test_the_server_pings_a_polling_client_and_drops_it_once_it_stops_answering(
    fast_server, polling
):
    await polling.open(fast_server)

    first_ping = await polling.packets(fast_server)
    await polling.post(fast_server, "3")
    second_ping = await polling.packets(fast_server)
    # No pong this time: the next poll outlives the ping timeout and is told the session closed.
    closed = await polling.packets(fast_server)
    after = await polling.get(fast_server)

    assert first_ping == ["2"]
    assert second_ping == ["2"]
    assert closed == ["1"]
    assert _error(after) == (400, {"code": 1, "message": "Session ID unknown"})


async def test_a_pending_poll_is_answered_with_close_when_the_client_closes(server, polling):
    await polling.open(server)
    pending = asyncio.create_task(polling.packets(server))
    await asyncio.sleep(0.3)  # let the GET reach the server and start waiting

    closing = await polling.post(server, "1")
    answer = await asyncio.wait_for(pending, WAIT)

    assert closing.status_code == 200
    assert answer == ["1"]
    assert (await polling.get(server)).status_code == 400


async def test_an_unknown_sid_is_refused_with_the_engine_io_error(server, polling):
    polling.sid = "no-such-session"

    get = await polling.get(server)
    post = await polling.post(server, "40")

    assert _error(get) == (400, {"code": 1, "message": "Session ID unknown"})
    assert _error(post) == (400, {"code": 1, "message": "Session ID unknown"})


async def test_other_protocol_versions_and_transports_are_refused(server, http):
    v3 = await http.get(server.endpoint, params={"EIO": "3", "transport": "polling"})
    unknown = await http.get(server.endpoint, params={"EIO": "4", "transport": "carrier-pigeon"})
    plain_websocket = await http.get(server.endpoint, params={"EIO": "4", "transport": "websocket"})
    post_handshake = await http.post(server.endpoint, params={"EIO": "4", "transport": "polling"})

    assert _error(v3) == (400, {"code": 5, "message": "Unsupported protocol version"})
    assert _error(unknown) == (400, {"code": 0, "message": "Transport unknown"})
    assert _error(plain_websocket) == (400, {"code": 3, "message": "Bad request"})
    assert _error(post_handshake) == (400, {"code": 2, "message": "Bad handshake method"})


async def test_a_foreign_origin_is_refused_and_an_allowed_one_gets_cors_headers(server, http):
    params = {"EIO": "4", "transport": "polling"}

    foreign = await http.get(
        server.endpoint, params=params, headers={"Origin": "https://evil.test"}
    )
    allowed = await http.get(
        server.endpoint, params=params, headers={"Origin": "http://localhost:3000"}
    )
    preflight = await http.options(
        server.endpoint, params=params, headers={"Origin": "http://localhost:3000"}
    )
    no_origin = await http.get(server.endpoint, params=params)

    assert _error(foreign) == (403, {"code": 4, "message": "Forbidden"})
    assert "access-control-allow-origin" not in foreign.headers
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert no_origin.status_code == 200
    assert "access-control-allow-origin" not in no_origin.headers


async def test_the_rest_of_the_site_is_still_served_by_django(server, http):
    response = await http.get(f"{server.url}/api/auth/me")

    assert response.status_code == 401
    assert response.json()["success"] is False


async def test_one_client_keeps_only_its_share_of_anonymous_sessions_reading(server, http, token):
    """A waiting GET or an open WebSocket holds a connection to Redis, and a session needs no
    sign-in: one address may keep MAX_ANONYMOUS_PER_CLIENT such sessions in a process, then
    gets 429 (a WebSocket: a refused handshake) until one ends. A signed-in session is not
    counted by its address."""
    share = [Polling(http) for _ in range(MAX_ANONYMOUS_PER_CLIENT)]
    latecomer, signed_in = Polling(http), Polling(http)
    for client in [*share, latecomer, signed_in]:
        await client.open(server)
    await signed_in.post(server, "40" + json.dumps({"token": token}))
    assert (await signed_in.packets(server))[0].startswith("40")
    waiting = [asyncio.create_task(client.packets(server)) for client in share]
    await asyncio.sleep(0.5)  # let the GETs reach the server and start waiting
    try:
        refused = await latecomer.get(server)
        with pytest.raises(InvalidStatus) as handshake:
            async with connect(websocket_url(server, transport="websocket")):
                pass
        member = asyncio.create_task(signed_in.packets(server))
        await asyncio.sleep(0.3)
        await signed_in.post(server, "1")
        member_answered = await asyncio.wait_for(member, WAIT)
        await share[0].post(server, "1")  # one anonymous session ends: its place is free
        ended = await asyncio.wait_for(waiting[0], WAIT)
        async with connect(websocket_url(server, transport="websocket")) as websocket:
            opened = await receive(websocket)
    finally:
        for client in share[1:]:
            await client.post(server, "1")
        await asyncio.gather(*waiting, return_exceptions=True)

    assert _error(refused) == (429, {"code": 3, "message": "Too many requests"})
    assert handshake.value.response.status_code == 403
    assert member_answered == ["1"]
    assert ended == ["1"] and opened.startswith("0{")


async def test_a_socket_that_lets_go_of_its_account_takes_a_place_again(server, token):
    """A signed-in socket is not counted by its address; once it disconnects its account
    (`41`) and stays open, reading the channel anonymously, it needs a place like any other."""
    async with contextlib.AsyncExitStack() as stack:
        member = await stack.enter_async_context(
            connect(websocket_url(server, transport="websocket"))
        )
        assert (await receive(member)).startswith("0{")
        await member.send("40" + json.dumps({"token": token}))
        assert (await receive(member)).startswith("40")
        for _ in range(MAX_ANONYMOUS_PER_CLIENT):
            anonymous = await stack.enter_async_context(
                connect(websocket_url(server, transport="websocket"))
            )
            assert (await receive(anonymous)).startswith("0{")

        await member.send("41")
        with pytest.raises(ConnectionClosed):
            while True:
                await receive(member)

    assert member.close_code == 4429
