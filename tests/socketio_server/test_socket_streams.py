"""A turn's stream to a socket: who may receive it, and the client's two cancel events.

The turn here is the test process itself, a third process beside the server holding the socket:
every payload crosses Redis, as it does when a request and its socket are served apart.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from socketio_server.sink import SocketGone, SocketStream, socket_sink
from streaming import events as ev
from tests.socketio_server.support import WAIT, NodeClient, PythonClient, receive, websocket_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _chunk(text: str) -> dict:
    return {"type": "STREAM", "prompt": text, "delta": text}


def _is_stream(payload: dict) -> bool:
    return payload["type"] == "STREAM"


async def _until(predicate) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.fixture
async def alice(server, token):
    client = await NodeClient.start(server.url, {"auth": {"token": token}})
    client.id = (await client.next("connect"))["id"]
    yield client
    await client.close()


@pytest.mark.parametrize("socket_id", ["unknown-socket-id", "", None, 42, "a/b", "x" * 65])
async def test_a_stream_to_an_unknown_socket_fails_and_sends_nothing(alice, user, socket_id):
    failed = await SocketStream.open(socket_id=socket_id, user_id=user.pk)
    await failed.emit(_chunk("lost"))
    await failed.close()
    async with await SocketStream.open(socket_id=alice.id, user_id=user.pk) as stream:
        await stream.emit(_chunk("seen"))
    payloads = await alice.stream(until=_is_stream)

    assert failed.failed
    assert not stream.failed
    assert payloads == [{"type": "RELOAD"}, _chunk("seen")]


async def test_a_stream_to_another_users_socket_fails_and_sends_nothing(alice, user, other_user):
    foreign = await SocketStream.open(socket_id=alice.id, user_id=other_user.pk)
    await foreign.emit(_chunk("not for alice"))
    await foreign.close()
    async with await SocketStream.open(socket_id=alice.id, user_id=user.pk) as stream:
        await stream.emit(_chunk("for alice"))
    payloads = await alice.stream(until=_is_stream)

    assert foreign.failed
    assert payloads == [{"type": "RELOAD"}, _chunk("for alice")]


async def test_two_tabs_of_one_user_each_get_their_own_stream(server, user, token, alice):
    python = PythonClient()
    await python.client.connect(server.url, auth={"token": token})
    try:
        async with await SocketStream.open(socket_id=alice.id, user_id=user.pk) as first:
            await first.emit(_chunk("tab one"))
        other_id = python.client.get_sid()
        async with await SocketStream.open(socket_id=other_id, user_id=user.pk) as second:
            await second.emit(_chunk("tab two"))
        to_alice = await alice.stream(until=_is_stream)
        to_python = await python.stream(until=_is_stream)
    finally:
        await python.client.disconnect()

    assert other_id != alice.id
    assert to_alice == [{"type": "RELOAD"}, _chunk("tab one")]
    assert to_python == [{"type": "RELOAD"}, _chunk("tab two")]


async def test_cancel_streaming_silences_the_current_turn_only(alice, user):
    async with await SocketStream.open(socket_id=alice.id, user_id=user.pk) as first:
        await first.emit(_chunk("before"))
        await alice.stream(until=_is_stream)
        await alice.emit("cancel_streaming", ack=True)
        acknowledged = await alice.next("ack")
        await _until(lambda: first.stopped)
        await first.emit(_chunk("silenced"))
    async with await SocketStream.open(socket_id=alice.id, user_id=user.pk) as second:
        await second.emit(_chunk("next turn"))
    after = await alice.stream(until=_is_stream)

    assert acknowledged["response"] == {"success": True}
    assert not first.failed
    assert not first.cancelled.is_set()
    assert after == [{"type": "RELOAD"}, _chunk("next turn")]


async def test_cancel_request_reaches_the_turn_streaming_to_the_socket(alice, user):
    cancellations = []
    async with await SocketStream.open(
        socket_id=alice.id, user_id=user.pk, on_cancel=lambda: cancellations.append(True)
    ) as stream:
        await alice.next("RECEIVE_STREAM")
        await alice.emit("cancel_request")
        await asyncio.wait_for(stream.cancelled.wait(), WAIT)

    assert cancellations == [True]
    assert not stream.failed


async def test_a_socket_that_disconnects_mid_turn_fails_the_stream(alice, user):
    stream = await SocketStream.open(socket_id=alice.id, user_id=user.pk)
    await alice.command(disconnect=True)
    await _until(lambda: stream.failed)
    await stream.close()

    assert stream.failed


async def test_a_socket_dropped_for_missing_pongs_cannot_be_streamed_to(fast_server, user, token):
    async with connect(websocket_url(fast_server, transport="websocket")) as websocket:
        await receive(websocket)
        await websocket.send("40" + json.dumps({"token": token}))
        socket_id = json.loads((await receive(websocket))[2:])["sid"]
        alive = await SocketStream.open(socket_id=socket_id, user_id=user.pk)
        await alive.close()
        with pytest.raises(ConnectionClosed):
            while True:  # pings arrive; none is answered
                await receive(websocket)
    expired = await SocketStream.open(socket_id=socket_id, user_id=user.pk)
    await expired.close()

    assert not alive.failed
    assert expired.failed


async def test_a_turns_events_arrive_as_receive_stream_payloads(alice, user):
    display = ev.DisplayInfo(icon="search", label="Searching the catalog")
    turn = [
        ev.Connected(),
        ev.TextDelta(delta="Hel", prompt="Hel"),
        ev.TextDelta(delta="lo", prompt="Hello"),
        ev.ThinkingDelta(round=0, delta="hmm"),
        ev.ThinkingDone(round=0, text="hmm.", signature="sig"),
        ev.ToolCall(call_id="c1", name="search", arguments={"q": "linux"}, display=display),
        ev.ToolProgress(call_id="c1", name="search", display=display),
        ev.ToolProgress(call_id="c1", name="search", display=display, progress=0.5),
        ev.KeepAlive(),
        ev.ToolResult(
            call_id="c1", name="search", response=[{"id": 1}], success=True, duration_ms=7
        ),
    ]
    async with socket_sink(user=user, socket_id=alice.id) as sink:
        for event in turn:
            await sink.send(event)
    payloads = await alice.stream(until=lambda payload: payload["type"] == "TOOL_RESULT")

    shown = {"icon": "search", "label": "Searching the catalog"}
    assert payloads == [
        {"type": "RELOAD"},
        {"type": "STREAM", "prompt": "Hel", "delta": "Hel"},
        {"type": "STREAM", "prompt": "Hello", "delta": "lo"},
        {"type": "THINKING", "id": "round-0", "round": 0, "delta": "hmm"},
        {
            "type": "THINKING",
            "id": "round-0",
            "round": 0,
            "text": "hmm.",
            "done": True,
            "signature": "sig",
        },
        {
            "type": "TOOL_CALL",
            "call_id": "c1",
            "name": "search",
            "arguments": {"q": "linux"},
            "displayInfo": shown,
        },
        {"type": "TOOL_PROGRESS", "call_id": "c1", "displayInfo": shown},
        {"type": "TOOL_PROGRESS", "call_id": "c1", "displayInfo": shown, "progress": 0.5},
        {
            "type": "TOOL_RESULT",
            "call_id": "c1",
            "name": "search",
            "response": [{"id": 1}],
            "success": True,
            "responseDurationMs": 7,
        },
    ]


async def test_the_sink_is_none_for_a_socket_the_user_cannot_stream_to(alice, other_user):
    async with socket_sink(user=other_user, socket_id=alice.id) as foreign:
        pass
    async with socket_sink(user=other_user, socket_id="no-such-socket") as unknown:
        pass

    assert foreign is None
    assert unknown is None


async def test_sending_to_a_socket_that_went_away_raises(alice, user):
    async with socket_sink(user=user, socket_id=alice.id) as sink:
        await alice.command(disconnect=True)
        await _until(lambda: sink.failed)
        with pytest.raises(SocketGone):
            await sink.send(ev.TextDelta(delta="x", prompt="x"))
