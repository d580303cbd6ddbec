"""Where a JSON Q&A turn's events are streamed while it runs: the caller's Socket.IO socket.

`POST /api/ai/personal/qanda` with `requestArgs.socketId` asks for the turn to stream to that
socket as RECEIVE_STREAM events while the HTTP response waits for the whole answer. The assistant
does not know how a socket is reached: the Socket.IO app (`socketio_server`, a floor above this
one) installs its sink here from its AppConfig.ready(). For a socket that is unknown, expired or
another user's there is none, and the answer says `streamingFailed: true`, as the guide says a
client must expect; so it does when no transport is installed.

The seam for the transport: `socket_transport_install(opener)`, where `opener(user=, socket_id=)`
is an async context manager yielding an EventSink for the user's own live socket (or None). The
view then runs `qanda_run(turn, sink=sink, cancel=sink.cancelled)`: every event goes to
`sink.send` (translate it there; `streaming.sse.event_payload` has the field names), and setting
`sink.cancelled` (the client's `cancel_request`) cancels the turn.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from streaming.engine import EventSink

SinkOpener = Callable[..., AbstractAsyncContextManager[EventSink | None]]

_opener: SinkOpener | None = None


def socket_transport_install(opener: SinkOpener) -> None:
    """Deliver turns to sockets through `opener` (the Socket.IO app's `socket_sink`)."""
    global _opener
    _opener = opener


@contextlib.asynccontextmanager
async def socket_sink(*, user, socket_id: str) -> AsyncIterator[EventSink | None]:
    """A sink delivering to `socket_id` while the block runs, if it is a live socket of `user`."""
    if _opener is None:
        yield None
        return
    async with _opener(user=user, socket_id=socket_id) as sink:
        yield sink
