"""Where a JSON Q&A turn's events are streamed while it runs: the caller's Socket.IO socket.

`POST /api/ai/personal/qanda` with `requestArgs.socketId` asks for the turn to stream to that
socket as RECEIVE_STREAM events while the HTTP response waits for the whole answer. The Socket.IO
transport provides the sink (streaming.socketio.sink); for a socket that is unknown, expired or
another user's there is none, and the answer says `streamingFailed: true`, as the guide says a
client must expect.

The seam for the transport: make `socket_sink` yield an EventSink for the user's own live socket
(or None). The view then runs `qanda_run(turn, sink=sink, cancel=sink.cancelled)`: every event
goes to `sink.send` (translate it there; `streaming.sse.event_payload` has the field names), and
setting `sink.cancelled` (the client's `cancel_request`) cancels the turn.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from streaming.engine import EventSink
from streaming.socketio import sink as socketio


@contextlib.asynccontextmanager
async def socket_sink(*, user, socket_id: str) -> AsyncIterator[EventSink | None]:
    """A sink delivering to `socket_id` while the block runs, if it is a live socket of `user`."""
    async with socketio.socket_sink(user=user, socket_id=socket_id) as sink:
        yield sink
