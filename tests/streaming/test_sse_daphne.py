"""The SSE route served by a real Daphne process to a real HTTP client, disconnects included.

Django's ASGI handler listens for `http.disconnect` while a streaming response is sent and, when
the client goes, cancels the task iterating the stream; the turn must stop, close its provider
request, and record what it had with status cancelled.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from streaming.models import History
from tests.streaming.conftest import auth_headers, parse_sse
from tests.support import processes
from tests.support.database import orm, orm_until
from tests.support.providers import Reply, openai_chunk

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

STREAM_PATH = "/api/ai/personal-stream/qanda-stream"


@pytest.fixture(scope="module")
def daphne(django_db_setup, _openai_server, tmp_path_factory):
    """One Daphne process on the test database, with the fake OpenAI server as its provider."""
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    provider = {"OPENAI_BASE_URL": _openai_server.base_url + "/v1", "OPENAI_API_KEY": "sk-test"}
    with processes.daphne(log, **provider) as port:
        yield f"http://127.0.0.1:{port}"


async def test_daphne_streams_each_event_as_it_happens(daphne, user):
    async with (
        httpx.AsyncClient(base_url=daphne, timeout=20) as client,
        client.stream(
            "POST", STREAM_PATH, json={"inputs": ["what is running?"]}, headers=auth_headers(user)
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-length" not in response.headers
        chunks = [chunk async for chunk in response.aiter_raw()]

    events, _ = parse_sse(b"".join(chunks))
    assert events[0]["type"] == "connected" and events[-1] == {"type": "done"}
    assert events[-2]["type"] == "complete"
    assert len(chunks) > 3  # delivered as it streamed, not as one buffered body


async def test_a_client_that_disconnects_cancels_the_turn_and_the_provider_request(
    daphne, user, make_assistant, openai_server
):
    assistant = await orm(make_assistant, "openai", model="gpt-test")
    openai_server.script(
        Reply(
            [
                openai_chunk({"role": "assistant", "content": ""}),
                openai_chunk({"content": "Partial "}),
                openai_chunk({"content": "answer"}),
            ],
            hang=True,  # the model "keeps thinking" until its client goes away
        )
    )
    body = {"inputs": ["Tell me everything"], "requestArgs": {"assistantId": str(assistant.pk)}}

    async with (
        httpx.AsyncClient(base_url=daphne, timeout=20) as client,
        client.stream("POST", STREAM_PATH, json=body, headers=auth_headers(user)) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: ") and json.loads(line[6:]).get("prompt") == (
                "Partial answer"
            ):
                break  # leaving the block closes the connection mid-stream

    history = await orm_until(lambda: History.objects.filter(user=user).first())
    assert history.status == History.Status.CANCELLED
    assert history.completion == "Partial answer"
    assert history.outputs == ["Partial answer"]
    assert history.provider == "openai"
    # The provider's streaming request was closed too, not left running.
    assert await asyncio.to_thread(openai_server.client_left.wait, 10)
