"""Engine.IO v4 and Socket.IO v5 on the wire: typed packets, parsed and encoded.

Engine.IO moves packets over a transport: one WebSocket frame per packet, or several packets per
HTTP long-polling body joined by the record separator \\x1e. A packet is one digit, its type,
followed by its data. Socket.IO packets ride inside Engine.IO MESSAGE packets:

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]

Whatever does not parse raises ProtocolError, which every transport answers with a clean close.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from django.conf import settings

RECORD_SEPARATOR = "\x1e"
# The official servers' default: a client may not send more than this in one body or frame.
MAX_PAYLOAD = 1_000_000
# Ack ids are JavaScript numbers on the client side; anything longer is not one of theirs.
_MAX_ACK_DIGITS = 15


class ProtocolError(Exception):
    """The peer sent something that is not Engine.IO v4 / Socket.IO v5."""


class EnginePacketType(IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class SocketPacketType(IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


class Transport(StrEnum):
    POLLING = "polling"
    WEBSOCKET = "websocket"


class ClientEvent(StrEnum):
    """The events a client may emit; anything else is ignored."""

    REGISTER = "register"
    CANCEL_REQUEST = "cancel_request"
    CANCEL_STREAMING = "cancel_streaming"


@dataclass(frozen=True, slots=True)
class Timing:
    """The heartbeat a server announces in its open packet, in milliseconds."""

    ping_interval: int
    ping_timeout: int
    max_payload: int = MAX_PAYLOAD

    @classmethod
    def from_settings(cls) -> Timing:
        return cls(
            ping_interval=settings.WORKGATE_SOCKETIO_PING_INTERVAL_MS,
            ping_timeout=settings.WORKGATE_SOCKETIO_PING_TIMEOUT_MS,
        )


def dump_json(data: Any) -> str:
    # default=str: a tool's response may hold dates or UUIDs, which SSE sends as strings too.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("payload is not JSON") from exc


# --- Engine.IO ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnginePacket:
    type: EnginePacketType
    data: str = ""

    def encode(self) -> str:
        return f"{int(self.type)}{self.data}"


def parse_engine_packet(text: str) -> EnginePacket:
    if not text:
        raise ProtocolError("empty packet")
    head = text[0]
    if head == "b":
        # A base64 binary message on the polling transport. Socket.IO only sends those as
        # attachments, which this server refuses before they arrive; on its own it is noise.
        raise ProtocolError("binary messages are not supported")
    if head not in "0123456":
        raise ProtocolError(f"unknown packet type {head!r}")
    return EnginePacket(EnginePacketType(int(head)), text[1:])


def parse_payload(body: bytes, *, limit: int) -> list[EnginePacket]:
    """A polling POST body: one to `limit` packets separated by \\x1e."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("payload is not UTF-8") from exc
    parts = text.split(RECORD_SEPARATOR, limit)
    if len(parts) > limit:
        raise ProtocolError(f"more than {limit} packets in one payload")
    return [parse_engine_packet(part) for part in parts]


def encode_payload(packets: list[str]) -> bytes:
    return RECORD_SEPARATOR.join(packets).encode("utf-8")


def open_packet(sid: str, *, upgrades: list[str], timing: Timing) -> str:
    return EnginePacket(
        EnginePacketType.OPEN,
        dump_json(
            {
                "sid": sid,
                "upgrades": upgrades,
                "pingInterval": timing.ping_interval,
                "pingTimeout": timing.ping_timeout,
                "maxPayload": timing.max_payload,
            }
        ),
    ).encode()


PING = EnginePacket(EnginePacketType.PING).encode()
CLOSE = EnginePacket(EnginePacketType.CLOSE).encode()
NOOP = EnginePacket(EnginePacketType.NOOP).encode()
PROBE = "probe"


# --- Socket.IO ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SocketPacket:
    type: SocketPacketType
    namespace: str = "/"
    data: Any = None
    ack_id: int | None = None
    attachments: int = 0

    def encode(self) -> str:
        """The Engine.IO MESSAGE packet that carries this Socket.IO packet."""
        parts = [str(int(EnginePacketType.MESSAGE)), str(int(self.type))]
        if self.type in (SocketPacketType.BINARY_EVENT, SocketPacketType.BINARY_ACK):
            parts.append(f"{self.attachments}-")
        if self.namespace != "/":
            parts.append(f"{self.namespace},")
        if self.ack_id is not None:
            parts.append(str(self.ack_id))
        if self.data is not None:
            parts.append(dump_json(self.data))
        return "".join(parts)

    @property
    def event_name(self) -> str:
        return self.data[0]

    @property
    def event_args(self) -> list[Any]:
        return self.data[1:]


def _payload_is_valid(kind: SocketPacketType, data: Any) -> bool:
    """The same shape rules as the reference decoder (socket.io-parser `isPayloadValid`)."""
    if kind is SocketPacketType.CONNECT:
        return data is None or isinstance(data, dict)
    if kind is SocketPacketType.DISCONNECT:
        return data is None
    if kind is SocketPacketType.CONNECT_ERROR:
        return isinstance(data, dict | str)
    if kind in (SocketPacketType.EVENT, SocketPacketType.BINARY_EVENT):
        return isinstance(data, list) and bool(data) and isinstance(data[0], str)
    return isinstance(data, list)  # ACK, BINARY_ACK


def parse_socket_packet(text: str) -> SocketPacket:
    """The data of an Engine.IO MESSAGE packet."""
    if not text or text[0] not in "0123456":
        raise ProtocolError("not a Socket.IO packet")
    kind = SocketPacketType(int(text[0]))
    position = 1
    attachments = 0
    if kind in (SocketPacketType.BINARY_EVENT, SocketPacketType.BINARY_ACK):
        dash = text.find("-", position)
        count = text[position:dash] if dash > 0 else ""
        # ASCII digits only, and few: str.isdigit() also accepts "²", and int() refuses
        # strings past 4300 digits; either would escape as a ValueError (a 500).
        if not (count.isascii() and count.isdigit()) or len(count) > _MAX_ACK_DIGITS:
            raise ProtocolError("malformed attachment count")
        attachments = int(count)
        position = dash + 1
    namespace = "/"
    if text.startswith("/", position):
        comma = text.find(",", position)
        end = comma if comma >= 0 else len(text)
        namespace = text[position:end]
        position = end + 1
    ack_id = None
    digits_end = position
    while digits_end < len(text) and text[digits_end] in "0123456789":
        digits_end += 1
    if digits_end > position:
        if digits_end - position > _MAX_ACK_DIGITS:
            raise ProtocolError("ack id out of range")
        ack_id = int(text[position:digits_end])
        position = digits_end
    rest = text[position:]
    data = _load_json(rest) if rest else None
    if not _payload_is_valid(kind, data):
        raise ProtocolError(f"invalid payload for {kind.name}")
    return SocketPacket(kind, namespace, data, ack_id, attachments)


# A namespace the server may name back to the client: slash-separated ASCII words, dots and
# dashes. A CONNECT_ERROR must name the namespace it answers, or the official client never hears
# it (`/socket.io` is the usual mistake); anything else is never written into an answer, where
# a body shaped by the client (`/1;alert(1)//`, markup) could be loaded as a script or a page.
_PLAIN_NAMESPACE = re.compile(r"(?:/[A-Za-z0-9_.-]+)+")
_MAX_NAMESPACE = 128


def is_plain_namespace(namespace: str) -> bool:
    return len(namespace) <= _MAX_NAMESPACE and _PLAIN_NAMESPACE.fullmatch(namespace) is not None


def connect_ok(socket_id: str) -> str:
    return SocketPacket(SocketPacketType.CONNECT, data={"sid": socket_id}).encode()


# The server ends the socket: the client hears "io server disconnect" and does not reconnect.
SERVER_DISCONNECT = SocketPacket(SocketPacketType.DISCONNECT).encode()


def connect_error(message: str, *, namespace: str = "/") -> str:
    return SocketPacket(
        SocketPacketType.CONNECT_ERROR, namespace=namespace, data={"message": message}
    ).encode()


def event(name: str, *args: Any) -> str:
    return SocketPacket(SocketPacketType.EVENT, data=[name, *args]).encode()


def ack(ack_id: int, *args: Any) -> str:
    return SocketPacket(SocketPacketType.ACK, data=list(args), ack_id=ack_id).encode()
