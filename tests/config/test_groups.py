"""core.groups: a live connection's place in channel-layer groups, on the suite's Redis."""

from __future__ import annotations

import asyncio
import uuid

from channels.layers import get_channel_layer

from core import groups
from core.groups import Membership

STOP = "test.stop"


def _names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:12]
    return f"session.{tag}", f"account.{tag}"


async def _members_in_redis(group: str) -> list[bytes]:
    layer = get_channel_layer()
    return await layer.connection(layer.consistent_hash(group)).zrange(
        layer._group_key(group), 0, -1
    )


async def _stopped(membership: Membership) -> str | None:
    return await asyncio.wait_for(membership.ending((STOP,)), 5)


async def test_connections_of_one_group_in_a_process_are_one_member_and_each_gets_its_messages():
    """Viewers of one desktop in one process: the process is in the desktop's and the account's
    groups once; a stop reaches every one of them; the group keeps the process while any is
    left, and loses it when the last leaves."""
    session, account = _names()
    first = await Membership.join((session, account))
    second = await Membership.join((session, account))
    await first.joining
    await second.joining
    assert len(await _members_in_redis(session)) == 1
    assert len(await _members_in_redis(account)) == 1

    await get_channel_layer().group_send(session, {"type": STOP})
    assert (await _stopped(first), await _stopped(second)) == (STOP, STOP)

    await first.leave()
    assert len(await _members_in_redis(session)) == 1
    await get_channel_layer().group_send(account, {"type": STOP})
    assert await _stopped(second) == STOP

    await second.leave()
    assert await _members_in_redis(session) == []
    assert await _members_in_redis(account) == []


async def test_a_connection_after_the_last_one_left_joins_the_group_again():
    session, account = _names()
    first = await Membership.join((session, account))
    await first.joining
    await first.leave()

    again = await Membership.join((session, account))
    await again.joining
    assert len(await _members_in_redis(session)) == 1
    await get_channel_layer().group_send(session, {"type": STOP})
    assert await _stopped(again) == STOP
    await again.leave()


async def test_a_connection_to_a_group_this_process_joined_long_ago_joins_it_again(monkeypatch):
    """Each connection's place in a group is as fresh as its opening, as the layer's group
    expiry assumes: one that joins a group this process has been in for REJOIN_AFTER renews it."""
    session, account = _names()
    first = await Membership.join((session, account))
    await first.joining
    layer = get_channel_layer()
    client = layer.connection(layer.consistent_hash(session))
    [(_, joined_at)] = await client.zrange(layer._group_key(session), 0, -1, withscores=True)

    monkeypatch.setattr(groups, "REJOIN_AFTER", 0.0)
    await asyncio.sleep(0.01)
    second = await Membership.join((session, account))
    await second.joining
    [(_, renewed_at)] = await client.zrange(layer._group_key(session), 0, -1, withscores=True)
    assert renewed_at > joined_at

    await get_channel_layer().group_send(session, {"type": STOP})
    assert (await _stopped(first), await _stopped(second)) == (STOP, STOP)
    await first.leave()
    await second.leave()


async def test_a_connection_that_leaves_before_its_group_is_joined_leaves_no_trace(monkeypatch):
    """A join still under way when the last connection leaves is ended first, so it cannot
    put the process's channel back into the group after the leave."""
    release = asyncio.Event()
    real_add = groups._groups_add

    async def slow_add(layer, pairs):
        await release.wait()
        await real_add(layer, pairs)

    monkeypatch.setattr(groups, "_groups_add", slow_add)
    session, account = _names()
    membership = await Membership.join((session, account))
    await asyncio.sleep(0)
    await membership.leave()
    release.set()
    await asyncio.sleep(0.05)
    assert await _members_in_redis(session) == []
    assert not any(key[2] in (session, account) for key in groups._subscriptions)
