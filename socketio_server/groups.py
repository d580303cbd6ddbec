"""Channel-layer names and the messages that travel between server processes.

Every Engine.IO session has one durable channel, `sio-session.<sid>`: an ordered queue that any
process can read. Whoever serves the client right now reads it: each long-poll GET in turn,
wherever it lands, then the WebSocket consumer once the session has upgraded. A Socket.IO socket's
group, `sio.<socketId>`, holds exactly that channel for the socket's whole life, so nothing moves
when the transport changes, and a packet sent during an upgrade is neither lost nor reordered.
A turn streaming to the socket listens on a second group, `sio-turns.<socketId>`, for the
client's cancel events. A socket with an account on it also puts the session's channel in the
account's group (accounts/connections.py), which hears when the account is signed out everywhere.
So a request served by one process reaches a socket held by another, and polling needs no sticky
sessions.
"""

from __future__ import annotations

from enum import StrEnum

from accounts.connections import ACCOUNT_SIGNED_OUT


class Message(StrEnum):
    """Channel-layer message types (the WebSocket consumer handles each as a method)."""

    PACKETS = "eio.packets"  # {"packets": [encoded Engine.IO packets]} for the client
    NOOP = "eio.noop"  # releases a pending long-poll GET during an upgrade
    CLOSE = "eio.close"  # the session is over: its reader answers with a CLOSE packet
    SIGNED_OUT = ACCOUNT_SIGNED_OUT  # {"user_id"}: the server disconnects that user's socket
    CANCEL_REQUEST = "turn.cancel_request"
    CANCEL_STREAMING = "turn.cancel_streaming"
    SOCKET_GONE = "turn.socket_gone"


def socket_group(socket_id: str) -> str:
    return f"sio.{socket_id}"


def turn_group(socket_id: str) -> str:
    return f"sio-turns.{socket_id}"


def session_channel(sid: str) -> str:
    return f"sio-session.{sid}"


def packets(*encoded: str) -> dict:
    return {"type": Message.PACKETS.value, "packets": list(encoded)}
