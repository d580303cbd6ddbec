"""Channel-layer names and the messages that travel between server processes.

Every Socket.IO socket has a group, `sio.<socketId>`, with one member: the channel that currently
reaches its client. While the client long-polls that is a durable channel, `sio-poll.<sid>`, which
buffers packets between two GET requests and can be read by any process; once it has upgraded it
is the WebSocket consumer's own channel. A turn streaming to the socket listens on a second group,
`sio-turns.<socketId>`, for the client's cancel events. So a request served by one process reaches
a socket held by another, and polling needs no sticky sessions.
"""

from __future__ import annotations

from enum import StrEnum


class Message(StrEnum):
    """Channel-layer message types (the WebSocket consumer handles each as a method)."""

    PACKETS = "eio.packets"  # {"packets": [encoded Engine.IO packets]} for the client
    NOOP = "eio.noop"  # releases a pending long-poll GET during an upgrade
    CLOSE = "eio.close"  # the session is over: a pending GET answers with a CLOSE packet
    CANCEL_REQUEST = "turn.cancel_request"
    CANCEL_STREAMING = "turn.cancel_streaming"
    SOCKET_GONE = "turn.socket_gone"


def socket_group(socket_id: str) -> str:
    return f"sio.{socket_id}"


def turn_group(socket_id: str) -> str:
    return f"sio-turns.{socket_id}"


def poll_channel(sid: str) -> str:
    return f"sio-poll.{sid}"


def packets(*encoded: str) -> dict:
    return {"type": Message.PACKETS.value, "packets": list(encoded)}
