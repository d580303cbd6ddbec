"""A polling answer is never a script a page could load: no bytes a client chose come back in it,
and every answer says nosniff (a `<script src>` at a text/plain URL then never runs)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.socketio_server.support import NodeClient, Polling
from tests.support.signin import token_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Written back verbatim, each of these made the next GET's body run as JavaScript.
GADGETS = ["/<script>alert(1)</script>", "/1;alert(1)//"]

# Headers an answer has whether Django or the Socket.IO consumer sent it.
SHARED_HEADERS = [
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cross-origin-opener-policy",
]


def _shows_nothing_of(response: httpx.Response, payload: str) -> bool:
    return "alert" not in response.text and payload not in response.text


@pytest.mark.parametrize("namespace", GADGETS)
async def test_a_connect_to_a_namespace_that_is_not_a_name_never_comes_back(
    server, polling, namespace
):
    await polling.open(server)

    posted = await polling.post(server, f"40{namespace},")
    polled = await polling.get(server)

    assert (posted.status_code, posted.json()) == (400, {"code": 3, "message": "Bad request"})
    assert _shows_nothing_of(posted, namespace) and _shows_nothing_of(polled, namespace)
    assert polled.status_code == 400  # the session was closed
    for response in (posted, polled):
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_ping_from_the_client_ends_the_session_and_its_data_never_comes_back(
    server, polling
):
    """Engine.IO v4 clients never ping; the server used to answer with a pong echoing the data."""
    await polling.open(server)

    posted = await polling.post(server, "2;alert(1)//")
    polled = await polling.get(server)

    assert (posted.status_code, polled.status_code) == (400, 400)
    assert _shows_nothing_of(posted, ";alert(1)//") and _shows_nothing_of(polled, ";alert(1)//")


async def test_the_official_client_on_a_mistyped_namespace_hears_invalid_namespace(server):
    """`io(".../socket.io")` asks for the namespace `/socket.io`: a plain name is still named in
    the refusal, as the reference server does, or the client would never hear it."""
    client = await NodeClient.start(f"{server.url}/socket.io", {"transports": ["websocket"]})
    try:
        refused = await client.next("connect_error")
    finally:
        await client.close()

    assert refused["message"] == "Invalid namespace"


async def test_every_polling_answer_carries_the_security_headers_of_the_api(
    server, http, polling, user
):
    allowed = {"Origin": "http://localhost:3000"}
    api = await http.get(f"{server.url}/api/auth/me", headers={"x-access-token": token_for(user)})

    answers = {
        "handshake": await http.get(server.endpoint, params=Polling.query()),
        "preflight": await http.options(server.endpoint, params=Polling.query(), headers=allowed),
        "foreign origin": await http.get(
            server.endpoint, params=Polling.query(), headers={"Origin": "https://evil.test"}
        ),
        "bad version": await http.get(server.endpoint, params={"EIO": "3"}),
        "unknown sid": await http.get(server.endpoint, params=Polling.query(sid="nope")),
    }
    await polling.open(server)
    answers["post"] = await polling.post(server, "40")
    answers["poll"] = await polling.get(server)

    assert api.status_code == 200
    statuses = [answer.status_code for answer in answers.values()]
    assert statuses == [200, 204, 403, 400, 400, 200, 200]
    assert json.loads(answers["poll"].text[2:])["sid"]  # the CONNECT answer, a body of packets
    for name, answer in answers.items():
        headers = answer.headers
        assert {key: headers.get(key) for key in SHARED_HEADERS} == {
            key: api.headers[key] for key in SHARED_HEADERS
        }, name
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["cross-origin-resource-policy"] == "same-origin", name
        assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert headers["cache-control"] == "no-store", name
