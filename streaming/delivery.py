"""Where a JSON Q&A turn's events are streamed while it runs: the caller's Socket.IO socket.

`POST /api/ai/personal/qanda` with `requestArgs.socketId` asks for the turn to stream to that
socket as RECEIVE_STREAM events while the HTTP response waits for the whole answer. The Socket.IO
transport provides the sink; until it exists there is none, and the answer says
`streamingFailed: true`, as the guide says a client must expect when its socket is unknown.
"""

from __future__ import annotations

from streaming.engine import EventSink


async def socket_sink(*, user, socket_id: str) -> EventSink | None:
    """A sink delivering to `socket_id` if it is a live socket of `user`, else None."""
    return None
