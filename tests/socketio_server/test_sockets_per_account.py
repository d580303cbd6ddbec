"""An account holds at most WORKGATE_SOCKETIO_MAX_SOCKETS_PER_USER signed-in sockets, counted
across every server process; a socket that ends, or whose client falls silent, stops counting."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.conf import settings
from redis import asyncio as redis

from socketio_server.store import RedisStore
from tests.socketio_server.conftest import CAPPED_PING_INTERVAL_MS, CAPPED_PING_TIMEOUT_MS
from tests.socketio_server.support import WAIT, NodeClient, Polling

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOO_MANY = "Too many sockets are open for this account"


def _websocket(**options) -> dict:
    return {"transports": ["websocket"], **options}


async def _signed_in(server, token: str, opened: list[NodeClient]) -> str:
    """A socket on `token`'s account from the official client (kept in `opened`): its id."""
    client = await NodeClient.start(server.url, _websocket(auth={"token": token}))
    opened.append(client)
    return (await client.next("connect"))["id"]


async def _account_sockets(user) -> set[str]:
    """The sockets the store counts for `user`, whichever process holds them."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        members = await client.zrange(RedisStore.ACCOUNTS + str(user.pk), 0, -1)
    finally:
        await client.aclose()
    return {member.decode() for member in members}


async def _until_counted(user, expected: set[str]) -> set[str]:
    """The account's sockets once they are `expected` (a disconnect is handled as it arrives)."""
    async with asyncio.timeout(WAIT):
        while (counted := await _account_sockets(user)) != expected:
            await asyncio.sleep(0.05)
    return counted


async def test_an_account_past_its_cap_is_refused_on_either_process_while_another_connects(
    capped_servers, user, token, other_token
):
    a, b = capped_servers
    opened: list[NodeClient] = []
    try:
        first = await _signed_in(a, token, opened)
        held = {first, await _signed_in(b, token, opened), await _signed_in(a, token, opened)}
        fourth = await NodeClient.start(b.url, _websocket(auth={"token": token}))
        opened.append(fourth)
        refused = await fourth.next("connect", "connect_error")
        other = await _signed_in(a, other_token, opened)
        counted_at_cap = await _account_sockets(user)

        await opened[0].command(disconnect=True)
        counted_after_close = await _until_counted(user, held - {first})
        fifth = await _signed_in(b, token, opened)
        counted_at_end = await _account_sockets(user)
    finally:
        for client in opened:
            await client.close()

    assert refused == {"event": "connect_error", "message": TOO_MANY}
    assert other
    assert counted_at_cap == held
    assert counted_after_close == held - {first}
    assert counted_at_end == held - {first} | {fifth}


async def test_registering_a_socket_past_the_cap_is_refused(capped_servers, user, token):
    a, b = capped_servers
    opened: list[NodeClient] = []
    try:
        held = {await _signed_in(server, token, opened) for server in (a, b, b)}
        anonymous = await NodeClient.start(a.url, _websocket())
        opened.append(anonymous)
        await anonymous.next("connect")
        await anonymous.emit("register", {"token": token})
        refused = await anonymous.next("registered", "connect_error")
        counted = await _account_sockets(user)
    finally:
        for client in opened:
            await client.close()

    assert refused == {"event": "connect_error", "message": TOO_MANY}
    assert counted == held


async def test_a_socket_whose_client_went_silent_stops_counting_once_its_deadline_passes(
    capped_servers, http, user, token
):
    """Nobody ends these sessions (as when the process holding a socket dies): each keeps its
    place until its deadline, then no longer."""
    a, b = capped_servers
    connect = "40" + json.dumps({"token": token})

    async def connected(server) -> list[str]:
        client = Polling(http)
        await client.open(server)
        await client.post(server, connect)
        return await client.packets(server)

    silent = [await connected(server) for server in (a, b, a)]
    refused = await connected(b)
    await asyncio.sleep((CAPPED_PING_INTERVAL_MS + CAPPED_PING_TIMEOUT_MS) / 1000 + 0.5)
    accepted = await connected(a)

    assert all(answer[0].startswith('40{"sid":') for answer in silent)
    assert refused == ['44{"message":"' + TOO_MANY + '"}']
    assert accepted[0].startswith('40{"sid":')
    assert await _account_sockets(user) == {json.loads(accepted[0][2:])["sid"]}
