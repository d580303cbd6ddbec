"""A live connection's place in channel-layer groups: joined while it opens, listened to for the
message that must end it (a session's stop, an account's sign-out everywhere), left when it ends.

One way to do it for every connection held in a user's name: the desktop relay
(vnc_proxy/consumers.py) and the web-app proxy's WebSockets (app_proxy/; its long HTTP answers
end by being admitted again, its admission cache listens on a channel of its own).
The caller names the groups and the message types that end it; this module knows no app.

A process is in each group once, however many of its connections are: the first connection of a
group here joins it on a channel of the group's own (a `_Subscription`), one task receives on
that channel and hands each message to every connection of the group here, and the last one to
leave takes the channel out of the group. Joining and leaving a group costs round trips to Redis
and a receiving task each; viewers opening one desktop together, or a web app's many requests,
would otherwise each pay them for the same two groups, a large share of what opening one costs.
What a connection is promised is unchanged: once its `joining`
is done, every message sent to its groups reaches it, until it leaves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Iterable

from channels.layers import get_channel_layer

try:
    from channels_redis.core import RedisChannelLayer
except ImportError:  # no Redis: the in-memory layer, through its public methods
    RedisChannelLayer = None

logger = logging.getLogger(__name__)

LEAVE_TIMEOUT = 5.0  # seconds for leaving the groups when the connection ends
# A connection that joins a group this process joined longer ago than this joins it again (the
# same commands): each connection's place in the group is then as fresh as its own opening, as
# the layer's group expiry assumes, however long the group has had a connection here.
REJOIN_AFTER = 60.0

_LOST = object()  # handed to the connections of a group whose channel layer failed

# (event loop, layer, group) -> this process's subscription to that group, while it has members.
_subscriptions: dict[tuple, _Subscription] = {}


class _Subscription:
    """This process's place in one group: a channel of its own, joined to the group, and one
    task that receives on it and hands every message to each connection of the group here."""

    def __init__(self, key: tuple, layer, group: str, channel: str):
        self.key = key
        self.layer = layer
        self.group = group
        self.channel = channel
        self.members: set[Membership] = set()
        self.joined_at = time.monotonic()
        self.joining = asyncio.ensure_future(self._join())
        self.listener: asyncio.Task | None = None

    async def _join(self) -> None:
        try:
            await _groups_add(self.layer, [(self.group, self.channel)])
        except BaseException:
            self._forget()  # the next connection tries again with a subscription of its own
            raise
        self._start_listening()

    def _start_listening(self) -> None:
        if self.listener is None and self.members:
            self.listener = asyncio.ensure_future(self._listen())

    def add(self, member: Membership) -> None:
        """A connection of the group here: it is handed the messages received from now on. If
        this process joined the group long ago, it joins again (the connection's `joining` then
        waits for that)."""
        self.members.add(member)
        if not self.joining.done():
            return  # the join under way starts the listener
        now = time.monotonic()
        if now - self.joined_at >= REJOIN_AFTER:
            self.joined_at = now
            self.joining = asyncio.ensure_future(self._join())
        elif not self.joining.cancelled() and self.joining.exception() is None:
            self._start_listening()  # joined while no connection was in it yet

    async def _listen(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception as error:
                self._forget()
                for member in list(self.members):
                    member._deliver(_LOST, error)
                return
            for member in list(self.members):
                member._deliver(message, None)

    def _forget(self) -> None:
        if _subscriptions.get(self.key) is self:
            del _subscriptions[self.key]

    def remove(self, member: Membership) -> bool:
        """Take `member` out; whether it was the last (this subscription is then over: no
        connection that joins from now on is given it)."""
        self.members.discard(member)
        if self.members:
            return False
        self._forget()
        return True

    async def end(self) -> None:
        """Stop receiving and leave the group. A join still under way ends first, or it could
        add the channel back after."""
        if self.listener is not None:
            self.listener.cancel()
        self.joining.cancel()
        await asyncio.wait([self.joining])
        await _groups_discard(self.layer, [(self.group, self.channel)])


class Membership:
    """A connection's place in `groups`, from `join()` until `leave()`."""

    def __init__(self, subscriptions: list[_Subscription]):
        self._subscriptions = subscriptions
        self._inbox: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        for subscription in subscriptions:
            subscription.add(self)
        # Joined in the background: the caller awaits `joining` once what it dials meanwhile
        # answered (a stop after that must reach it). Its failure is the caller's only then.
        self.joining = asyncio.ensure_future(_all_joined(subscriptions))
        self.joining.add_done_callback(lambda done: done.cancelled() or done.exception())

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(subscription.group for subscription in self._subscriptions)

    @classmethod
    async def join(cls, groups: Iterable[str]) -> Membership | None:
        """Start joining `groups`; None when no channel layer is configured."""
        layer = get_channel_layer()
        if layer is None:
            return None
        loop = asyncio.get_running_loop()
        keys = {group: (loop, layer, group) for group in groups}
        # Channels for the groups without a subscription here, named first: from the lookup
        # on, nothing is awaited, so no subscription found can end before this one is in it.
        channels: dict[str, str] = {}
        while missing := [
            group
            for group, key in keys.items()
            if key not in _subscriptions and group not in channels
        ]:
            for group in missing:
                channels[group] = await layer.new_channel()
        subscriptions = []
        for group, key in keys.items():
            if key not in _subscriptions:
                _subscriptions[key] = _Subscription(key, layer, group, channels[group])
            subscriptions.append(_subscriptions[key])
        return cls(subscriptions)

    def _deliver(self, message, error: BaseException | None) -> None:
        self._inbox.append((message, error))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def ending(self, kinds: Iterable[str], *, who: str = "a connection") -> str | None:
        """Wait for the first message whose type is one of `kinds` and return that type; None
        if the channel layer is lost (logged: the caller's periodic check is then the
        fallback). Other messages are passed over."""
        kinds = frozenset(kinds)
        while True:
            while not self._inbox:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            message, error = self._inbox.popleft()
            if message is _LOST:
                logger.warning(
                    "%s lost its channel layer; stops reach it at its next check",
                    who,
                    exc_info=error,
                )
                return None
            kind = message.get("type")
            if kind in kinds:
                return kind

    async def leave(self) -> None:
        """Leave the groups (never raises; bounded by LEAVE_TIMEOUT). A join still under way
        ends first, or it could add the channel back after."""
        self.joining.cancel()
        emptied = [
            subscription for subscription in self._subscriptions if subscription.remove(self)
        ]
        if not emptied:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await asyncio.gather(*(subscription.end() for subscription in emptied))


async def _all_joined(subscriptions: list[_Subscription]) -> None:
    # Shielded: one connection giving up does not stop a join other connections wait for.
    for subscription in subscriptions:
        await asyncio.shield(subscription.joining)


# --- Joining and leaving, in one round trip per shard ------------------------------------------
#
# channels_redis joins a group with two commands (ZADD, then EXPIRE) and leaves it with one, each
# a round trip and a pass through redis-py. On channels_redis the same commands go in one
# pipeline per Redis shard (what group_add and group_discard send, in their order;
# tests/test_upstream_contracts.py holds the layer to that); any other layer gets its public
# group_add and group_discard.


def _pipelines(layer, pairs: list[tuple[str, str]]) -> dict | None:
    """{shard's client: [(the group's key, channel)]}, or None where the layer is not
    channels_redis as we know it."""
    if RedisChannelLayer is None or not isinstance(layer, RedisChannelLayer):
        return None
    if not all(hasattr(layer, name) for name in ("_group_key", "consistent_hash", "connection")):
        return None
    shards: dict = {}
    for group, channel in pairs:
        assert layer.require_valid_group_name(group), "Group name not valid"
        assert layer.require_valid_channel_name(channel), "Channel name not valid"
        client = layer.connection(layer.consistent_hash(group))
        shards.setdefault(client, []).append((layer._group_key(group), channel))
    return shards


async def _groups_add(layer, pairs: list[tuple[str, str]]) -> None:
    shards = _pipelines(layer, pairs)
    if shards is None:
        await asyncio.gather(*(layer.group_add(group, channel) for group, channel in pairs))
        return
    joined_at = time.time()
    pipelines = []
    for client, keys in shards.items():
        pipeline = client.pipeline(transaction=False)
        for key, channel in keys:
            pipeline.zadd(key, {channel: joined_at})
            pipeline.expire(key, layer.group_expiry)
        pipelines.append(pipeline.execute())
    await asyncio.gather(*pipelines)


async def _groups_discard(layer, pairs: list[tuple[str, str]]) -> None:
    shards = _pipelines(layer, pairs)
    if shards is None:
        await asyncio.gather(*(layer.group_discard(group, channel) for group, channel in pairs))
        return
    pipelines = []
    for client, keys in shards.items():
        pipeline = client.pipeline(transaction=False)
        for key, channel in keys:
            pipeline.zrem(key, channel)
        pipelines.append(pipeline.execute())
    await asyncio.gather(*pipelines)
