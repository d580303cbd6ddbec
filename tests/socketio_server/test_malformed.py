"""Whatever a client sends, the answer is a clean close: never a 500, never a hang."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from socketio_server.consumers import MAX_PACKETS_PER_PAYLOAD
from tests.socketio_server.support import WAIT, NodeClient, close_code_after, receive, websocket_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

GARBAGE = [
    "",  # an empty packet
    "x",  # no packet type
    "9",  # an unknown Engine.IO type
    "4",  # a MESSAGE without a Socket.IO packet
    "49",  # an unknown Socket.IO type
    '42["register"',  # JSON cut short
    "42{}",  # an event that is not an array
    "42[1]",  # an event without a name
    "41{}",  # a DISCONNECT with a payload
    "44{}",  # clients do not send CONNECT_ERROR
    "0",  # clients do not send OPEN
    "5",  # an upgrade outside an upgrade
    "42NaN",  # not JSON
    "4212345678901234567[]",  # an ack id no client would use
]


@pytest.mark.parametrize("packet", GARBAGE)
async def test_a_malformed_polling_packet_closes_the_session_with_a_400(server, polling, packet):
    await polling.open(server)
    await polling.post(server, "40")
    await polling.packets(server)

    refused = await polling.post(server, "3", packet)
    after = await polling.get(server)

    assert (refused.status_code, refused.json()) == (400, {"code": 3, "message": "Bad request"})
    assert after.json() == {"code": 1, "message": "Session ID unknown"}


async def test_a_body_that_is_not_utf8_is_refused(server, polling):
    await polling.open(server)

    refused = await polling.post(server, b"4\xff\xfe")

    assert refused.status_code == 400


async def test_a_body_over_the_max_payload_is_refused_and_closes_the_session(server, polling):
    await polling.open(server)

    refused = await polling.post(server, ("4" + "2" * 1_000_001).encode())
    after = await polling.get(server)

    assert refused.status_code == 413
    assert after.status_code == 400


async def test_a_payload_of_more_packets_than_any_client_sends_is_refused(server, polling):
    """Each packet costs the server work (a pong a Redis call, an event a channel-layer send):
    half a million one-byte pongs in one body are refused, not served."""
    await polling.open(server)
    await polling.post(server, "40")
    await polling.packets(server)

    many = await polling.post(server, *["3"] * MAX_PACKETS_PER_PAYLOAD)
    refused = await polling.post(server, *["3"] * 499_500)
    after = await polling.get(server)

    assert many.status_code == 200
    assert (refused.status_code, refused.json()) == (400, {"code": 3, "message": "Bad request"})
    assert after.json() == {"code": 1, "message": "Session ID unknown"}


async def test_a_pending_poll_hears_close_when_a_bad_post_ends_the_session(server, polling):
    await polling.open(server)
    pending = asyncio.create_task(polling.packets(server))
    await asyncio.sleep(0.3)  # let the GET reach the server and start waiting

    await polling.post(server, "x")

    assert await asyncio.wait_for(pending, WAIT) == ["1"]


@pytest.mark.parametrize("packet", [p for p in GARBAGE if p != "5"])
async def test_a_malformed_websocket_frame_closes_the_connection(server, packet):
    assert await close_code_after(server, packet) == 4400


async def test_a_malformed_query_is_refused_at_the_handshake(server, http):
    no_version = await http.get(server.endpoint, params={"transport": "polling"})
    bad_sid = await http.get(
        server.endpoint, params={"EIO": "4", "transport": "polling", "sid": "../../etc"}
    )

    assert no_version.status_code == 400
    assert bad_sid.status_code == 400


async def test_binary_events_are_refused_with_a_clear_error(server, token):
    client = await NodeClient.start(server.url, {"auth": {"token": token}})
    try:
        await client.next("connect")
        await client.emit("upload", binary=True)
        refused = await client.next("connect_error")
    finally:
        await client.close()

    assert refused["message"] == "Binary payloads are not supported"


async def test_a_binary_websocket_frame_is_refused_with_a_clear_error(server, token):
    async with connect(websocket_url(server, transport="websocket")) as websocket:
        await receive(websocket)
        await websocket.send("40" + json.dumps({"token": token}))
        await receive(websocket)
        await websocket.send(b"\x01\x02")
        refused = await receive(websocket)
        await websocket.send("42" + json.dumps(["cancel_streaming"]))  # ignored: no socket now
        await websocket.send("3")
        await websocket.send("1")
        with pytest.raises(ConnectionClosed) as closed:
            await receive(websocket)

    assert refused == '44{"message":"Binary payloads are not supported"}'
    assert closed.value.rcvd.code == 1000
