"""A turn's events on their way to one Socket.IO socket, from whichever process runs the turn.

    async with socket_sink(user=request.user, socket_id=socket_id) as sink:
        outcome = await qanda_run(turn, sink=sink, cancel=sink.cancelled if sink else None)

`socket_sink` yields None for a socket id that is unknown, expired, not yet registered or another
user's: nothing is sent anywhere, the turn runs regardless, and its answer says
`streamingFailed: true`. Otherwise it yields a SocketStream, which has sent RELOAD and then sends
each event as a RECEIVE_STREAM payload to the socket's group, and listens on the socket's turn
group for the client's `cancel_request` (sets `cancelled`, which cancels the turn) and
`cancel_streaming` (stops sending for this turn only; the next turn's stream starts afresh). If
the socket disconnects mid-turn, `send` raises, and the answer says `streamingFailed: true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Any

from channels.layers import get_channel_layer

from socketio_server import protocol
from socketio_server.groups import Message, packets, socket_group, turn_group
from socketio_server.store import get_store
from streaming import events as ev
from streaming.sse import event_payload

RECEIVE_STREAM = "RECEIVE_STREAM"
# Payloads per channel-layer message, and queued payloads past which emit() waits for the sender.
MAX_BATCH = 64
MAX_PENDING = 1024
logger = logging.getLogger(__name__)
_SOCKET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class StreamType(StrEnum):
    RELOAD = "RELOAD"
    STREAM = "STREAM"
    THINKING = "THINKING"
    TOOL_CALL = "TOOL_CALL"
    TOOL_PROGRESS = "TOOL_PROGRESS"
    TOOL_RESULT = "TOOL_RESULT"


class SocketGone(Exception):
    """The socket disconnected while the turn was streaming to it."""


# The SSE events a socket receives too, under upper-case types and with the same fields; the
# turn's start, end and errors travel in the HTTP answer instead.
_FORWARDED = {"stream", "thinking", "tool_call", "tool_result"}


def stream_payload(event: ev.Event) -> dict | None:
    """An engine event as a RECEIVE_STREAM payload, or None for events a socket never sees."""
    if isinstance(event, ev.ToolProgress):
        payload = {
            "type": StreamType.TOOL_PROGRESS.value,
            "call_id": event.call_id,
            "displayInfo": {"icon": event.display.icon, "label": event.display.label},
        }
        if event.progress is not None:
            payload["progress"] = event.progress
        return payload
    payload = event_payload(event)
    if payload is None or payload["type"] not in _FORWARDED:
        return None
    return {**payload, "type": payload["type"].upper()}


class SocketStream:
    def __init__(self, socket_id: str, *, on_cancel: Callable[[], Any] | None = None):
        self.socket_id = socket_id
        self.on_cancel = on_cancel
        self.failed = True  # until open() has found the socket
        self.stopped = False  # cancel_streaming: the turn goes on, its chunks stay here
        self.cancelled = asyncio.Event()  # cancel_request
        self._layer = get_channel_layer()
        self._control: str | None = None
        self._listener: asyncio.Task | None = None
        self._pending: list[str] = []  # encoded packets the flusher has not sent yet
        self._flusher: asyncio.Task | None = None

    @classmethod
    async def open(
        cls,
        *,
        socket_id: object,
        user_id: object,
        on_cancel: Callable[[], Any] | None = None,
    ) -> SocketStream:
        """A stream to the user's own live, registered socket, or a failed one."""
        valid = isinstance(socket_id, str) and _SOCKET_ID.match(socket_id)
        stream = cls(socket_id if valid else "", on_cancel=on_cancel)
        record = await get_store().socket(socket_id) if valid else None
        if record is None or not record.user_id or record.user_id != str(user_id):
            return stream
        stream.failed = False
        # Listen before RELOAD: a client that reacts to RELOAD with a cancel must be heard.
        stream._control = await stream._layer.new_channel("sio-turn")
        await stream._layer.group_add(turn_group(stream.socket_id), stream._control)
        stream._listener = asyncio.create_task(stream._listen())
        await stream.emit({"type": StreamType.RELOAD.value})
        return stream

    async def send(self, event: ev.Event) -> None:
        """The engine's sink interface: raising tells it the stream failed."""
        if self.failed:
            raise SocketGone(self.socket_id)
        payload = stream_payload(event)
        if payload is not None:
            await self.emit(payload)

    async def emit(self, payload: dict) -> None:
        """Queue one RECEIVE_STREAM payload for the socket, unless the stream failed or stopped.

        A single flusher sends the queue in order. While one send is on its way to Redis, the
        payloads that arrive meanwhile wait and leave together in the next channel-layer message,
        so a fast producer (a model streaming tokens) pays Redis round trips per batch instead of
        per token, and never waits for them unless the queue is full.
        """
        if self.failed or self.stopped:
            return
        self._pending.append(protocol.event(RECEIVE_STREAM, payload))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        elif len(self._pending) >= MAX_PENDING:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        group = socket_group(self.socket_id)
        while self._pending and not (self.failed or self.stopped):
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            try:
                await self._layer.group_send(group, packets(*batch))
            except Exception:
                logger.exception("cannot stream to Socket.IO socket %s", self.socket_id)
                self.failed = True
        self._pending.clear()  # what a stop or a failure left unsent stays unsent

    async def _listen(self) -> None:
        while True:
            message = await self._layer.receive(self._control)
            kind = Message(message["type"])
            if kind is Message.CANCEL_REQUEST:
                self.cancelled.set()
                if self.on_cancel is not None:
                    self.on_cancel()
            elif kind is Message.CANCEL_STREAMING:
                self.stopped = True
            elif kind is Message.SOCKET_GONE:
                # The socket disconnected mid-turn: the client did not get the stream.
                self.failed = True

    async def close(self) -> None:
        if self._flusher is not None:
            await self._flusher  # the turn's last payloads leave before its answer
            self._flusher = None
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._control is not None:
            await self._layer.group_discard(turn_group(self.socket_id), self._control)
            self._control = None

    async def __aenter__(self) -> SocketStream:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()


@contextlib.asynccontextmanager
async def socket_sink(*, user, socket_id: str) -> AsyncIterator[SocketStream | None]:
    """A stream to `socket_id` while the block runs, if it is a live socket of `user`."""
    stream = await SocketStream.open(socket_id=socket_id, user_id=user.pk)
    try:
        yield None if stream.failed else stream
    finally:
        await stream.close()
