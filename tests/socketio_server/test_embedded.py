"""The embedded default's Socket.IO: one process, no Redis (in-memory channel layer and store)."""

from __future__ import annotations

import pytest

from tests.socketio_server.conftest import daphne
from tests.socketio_server.support import WAIT, NodeClient
from tests.support.signin import token_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def single_process(django_db_setup, tmp_path_factory):
    with daphne(tmp_path_factory.mktemp("daphne") / "embedded.log", REDIS_URL="") as started:
        yield started


async def test_a_turn_streams_to_a_socket_without_redis(single_process, http, user, token):
    client = await NodeClient.start(single_process.url, {"auth": {"token": token}})
    try:
        socket_id = (await client.next("connect"))["id"]
        await client.next("upgrade")
        response = await http.post(
            single_process.url + "/api/ai/personal/qanda",
            json={"inputs": ["what workspaces are there?"], "requestArgs": {"socketId": socket_id}},
            headers={"x-access-token": token_for(user)},
            timeout=WAIT * 2,
        )
        final = response.json()["outputs"][0]
        payloads = await client.stream(until=lambda payload: payload.get("prompt") == final)
    finally:
        await client.close()

    assert response.json()["streamingFailed"] is False
    assert payloads[0] == {"type": "RELOAD"}
