"""A live connection's place in channel-layer groups: joined while it opens, listened to for the
message that must end it (a session's stop, an account's sign-out everywhere), left when it ends.

One way to do it for everything that holds a connection in a user's name: the desktop relay
(vnc_proxy/consumers.py) and the web-app proxy's WebSockets and long responses (app_proxy/).
The caller names the groups and the message types that end it; this module knows no app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

LEAVE_TIMEOUT = 5.0  # seconds for leaving the groups when the connection ends


class Membership:
    """The connection's own channel, in `groups` from `join()` until `leave()`."""

    def __init__(self, layer, channel: str, groups: tuple[str, ...]):
        self.layer = layer
        self.channel = channel
        self.groups = groups
        # Joined in the background: the caller awaits `joining` once what it dials meanwhile
        # answered (a stop after that must reach it). Its failure is the caller's only then.
        self.joining = asyncio.ensure_future(
            asyncio.gather(*(layer.group_add(group, channel) for group in groups))
        )
        self.joining.add_done_callback(lambda done: done.cancelled() or done.exception())

    @classmethod
    async def join(cls, groups: Iterable[str]) -> Membership | None:
        """Start joining `groups` on a new channel; None when no channel layer is configured."""
        layer = get_channel_layer()
        if layer is None:
            return None
        return cls(layer, await layer.new_channel(), tuple(groups))

    async def ending(self, kinds: Iterable[str], *, who: str = "a connection") -> str | None:
        """Wait for the first message whose type is one of `kinds` and return that type; None
        if the channel layer is lost (logged: the caller's periodic check is then the
        fallback). Other messages are passed over."""
        kinds = frozenset(kinds)
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception:
                logger.warning(
                    "%s lost its channel layer; stops reach it at its next check",
                    who,
                    exc_info=True,
                )
                return None
            kind = message.get("type")
            if kind in kinds:
                return kind

    async def leave(self) -> None:
        """Leave the groups (never raises; bounded by LEAVE_TIMEOUT). A join still under way
        ends first, or it could add the channel back after."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                self.joining.cancel()
                await asyncio.wait([self.joining])
                await asyncio.gather(
                    *(self.layer.group_discard(name, self.channel) for name in self.groups)
                )
