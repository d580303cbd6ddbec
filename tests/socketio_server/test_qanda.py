"""`POST /api/ai/personal/qanda` with `requestArgs.socketId`: the turn streams to the socket.

The socket is held by one server process and the request is served by the other, so every
payload crosses Redis. The builtin provider answers by default; an `openai` assistant answers from
a loopback server whose reply can pause, so a test can act mid-turn.
"""

from __future__ import annotations

import asyncio

import pytest

from core.database import in_db_thread
from streaming.models import Assistant, History
from tests.socketio_server.support import GATE, WAIT, NodeClient, PythonClient, openai_text
from tests.support.signin import token_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QANDA = "/api/ai/personal/qanda"


@pytest.fixture
async def alice(servers, token):
    """The user's socket, on the first server."""
    client = await NodeClient.start(servers[0].url, {"auth": {"token": token}})
    client.id = (await client.next("connect"))["id"]
    yield client
    await client.close()


@pytest.fixture
def gpt(transactional_db) -> Assistant:
    return Assistant.objects.create(name="GPT", provider="openai", model="gpt-test")


@pytest.fixture
def ask(servers, http):
    """Ask on the second server, as `user`."""

    async def post(user, inputs: list[str], **request_args) -> tuple[int, dict]:
        response = await http.post(
            servers[1].url + QANDA,
            json={"inputs": inputs, "requestArgs": request_args},
            headers={"x-access-token": token_for(user)},
            timeout=WAIT * 2,
        )
        return response.status_code, response.json()

    return post


def _history(pk: int) -> History:
    return History.objects.get(pk=pk)


async def test_a_turn_streams_to_the_socket_and_answers_when_it_ends(alice, ask, user):
    status, answer = await ask(user, ["what workspaces are there?"], socketId=alice.id)
    final = answer["outputs"][0]
    payloads = await alice.stream(
        until=lambda payload: payload["type"] == "STREAM" and payload["prompt"] == final
    )
    history = await in_db_thread(_history)(answer["historyId"])

    assert status == 200
    assert answer == {
        "success": True,
        "streamingFailed": False,
        "outputs": [final],
        "usage": history.usage["total_tokens"],
        "usageDetails": history.usage,
        "model": "builtin",
        "query_duration_ms": answer["query_duration_ms"],
        "historyId": history.pk,
    }
    assert payloads[0] == {"type": "RELOAD"}
    kinds = {payload["type"] for payload in payloads[1:]}
    assert kinds <= {"STREAM", "THINKING", "TOOL_CALL", "TOOL_PROGRESS", "TOOL_RESULT"}
    text = [payload for payload in payloads if payload["type"] == "STREAM"]
    assert "".join(payload["delta"] for payload in text) == final
    assert history.status == History.Status.COMPLETE
    assert history.completion == final


async def test_python_socketio_receives_the_providers_chunks(
    servers, ask, user, token, openai, gpt
):
    openai.script(openai_text("Hel", "lo"))
    python = PythonClient()
    await python.client.connect(servers[0].url, auth={"token": token})
    try:
        status, answer = await ask(
            user, ["hi"], socketId=python.client.get_sid(), assistantId=str(gpt.pk)
        )
        payloads = await python.stream(until=lambda payload: payload.get("prompt") == "Hello")
    finally:
        await python.client.disconnect()

    assert (status, answer["streamingFailed"], answer["outputs"]) == (200, False, ["Hello"])
    assert payloads == [
        {"type": "RELOAD"},
        {"type": "STREAM", "prompt": "Hel", "delta": "Hel"},
        {"type": "STREAM", "prompt": "Hello", "delta": "lo"},
    ]


@pytest.mark.parametrize("socket_id", ["no-such-socket", "expired-or-never-was"])
async def test_an_unknown_socket_still_gets_its_answer_with_streaming_failed(
    alice, ask, user, socket_id
):
    status, answer = await ask(user, ["hello"], socketId=socket_id)
    _, second = await ask(user, ["hello again"], socketId=alice.id)
    first_seen = await alice.next("RECEIVE_STREAM")

    assert status == 200
    assert answer["streamingFailed"] is True
    assert answer["outputs"]
    assert second["streamingFailed"] is False
    assert first_seen["payload"] == {"type": "RELOAD"}  # nothing arrived from the first turn


async def test_another_users_socket_is_not_streamed_to(alice, ask, other_user, user):
    status, answer = await ask(other_user, ["hello"], socketId=alice.id)
    _, own = await ask(user, ["hello"], socketId=alice.id)
    first_seen = await alice.next("RECEIVE_STREAM")

    assert (status, answer["streamingFailed"]) == (200, True)
    assert answer["outputs"]
    assert own["streamingFailed"] is False
    assert first_seen["payload"] == {"type": "RELOAD"}  # nothing arrived from bob's turn


async def test_cancel_request_cancels_the_turn_streaming_to_the_socket(
    alice, ask, user, openai, gpt
):
    openai.script(openai_text("Hel", GATE, "lo"))
    asking = asyncio.create_task(ask(user, ["hi"], socketId=alice.id, assistantId=str(gpt.pk)))
    await alice.stream(until=lambda payload: payload["type"] == "STREAM")

    await alice.emit("cancel_request")
    status, answer = await asyncio.wait_for(asking, WAIT)
    history = await in_db_thread(History.objects.get)(user=user)

    assert status == 499
    assert answer["success"] is False
    assert answer["detail"] == "The request was cancelled."
    assert history.status == History.Status.CANCELLED
    assert openai.client_left.wait(WAIT)


async def test_cancel_streaming_stops_the_chunks_of_this_turn_only(alice, ask, user, openai, gpt):
    openai.script(openai_text("Hel", GATE, "lo", " world"), openai_text("Again"))
    asking = asyncio.create_task(ask(user, ["hi"], socketId=alice.id, assistantId=str(gpt.pk)))
    before = await alice.stream(until=lambda payload: payload["type"] == "STREAM")

    await alice.emit("cancel_streaming", ack=True)
    acknowledged = await alice.next("ack")
    openai.gate.set()
    status, answer = await asyncio.wait_for(asking, WAIT)
    history = await in_db_thread(_history)(answer["historyId"])
    _, again = await ask(user, ["more"], socketId=alice.id, assistantId=str(gpt.pk))
    after = await alice.stream(until=lambda payload: payload.get("prompt") == "Again")

    assert before == [{"type": "RELOAD"}, {"type": "STREAM", "prompt": "Hel", "delta": "Hel"}]
    assert acknowledged["response"] == {"success": True}
    assert (status, answer["streamingFailed"], answer["outputs"]) == (200, False, ["Hello world"])
    assert history.status == History.Status.COMPLETE
    assert again["streamingFailed"] is False
    # The rest of the first turn never arrived: the next thing the socket saw was the next turn.
    assert after == [{"type": "RELOAD"}, {"type": "STREAM", "prompt": "Again", "delta": "Again"}]
