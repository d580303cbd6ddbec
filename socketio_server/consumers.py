"""The two Engine.IO transports at /socket.io/: HTTP long-polling and WebSocket.

Long-polling (the official clients' first transport): `GET ?EIO=4&transport=polling` opens a
session; `GET ...&sid=` waits for packets on the session's channel, answering with a ping when one
is owed; `POST ...&sid=` carries the client's packets. Any process may serve any of these requests:
everything they share is in the store and the channel layer.

WebSocket: `?EIO=4&transport=websocket` opens a session of its own; with `&sid=` it upgrades a
polling session (`2probe` / `3probe`, the pending GET released with a noop, then `5`). From then on
the consumer reads the session's channel itself, and sends the pings.

Every polling answer carries core.headers' security headers (nosniff above all: a body of
packets must never run as a `<script src>`). A WebSocket handshake's answer has no body, and
Daphne sends no headers an application gives it there; its refusal is Daphne's own fixed 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from enum import Enum, auto
from urllib.parse import parse_qs

from channels.exceptions import ChannelFull
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from core.headers import resource_security_headers
from core.network import client_from_scope
from core.ratelimit import address_key
from core.websocket import origin_allowed
from socketio_server import protocol
from socketio_server.connection import Connection, close_session, new_session, release
from socketio_server.groups import Message, packets, session_channel
from socketio_server.protocol import (
    EnginePacket,
    EnginePacketType,
    ProtocolError,
    Timing,
    Transport,
)
from socketio_server.store import EngineSession, get_store, now_ms

logger = logging.getLogger(__name__)

# WebSocket close codes. A server may only send 1000 or an application code (3000-4999), so the
# others mirror HTTP statuses in the 4xxx range.
CLOSE_NORMAL = 1000
CLOSE_BAD_PACKET = 4400
CLOSE_PING_TIMEOUT = 4408
CLOSE_TOO_LARGE = 4413
CLOSE_TOO_MANY = 4429  # the client's share of anonymous sessions is taken (AnonymousShare)
CLOSE_UNAVAILABLE = 4503

# Packets one polling POST may carry. Official clients send what they queued while the last
# POST was in flight (a few); each packet costs Redis work, so a body of half a million
# one-byte pongs or events is refused (400) rather than served.
MAX_PACKETS_PER_PAYLOAD = 100
# Sessions with no account yet that one client address (an IPv6 client by its /64) may have
# reading the channel layer in one process: a waiting long-poll GET, or an open WebSocket.
# Each holds one of the process's connections to Redis, and a session needs no sign-in, so
# without a share per client one host could hold them all and leave no connection for anyone
# else's socket. A session that has signed in no longer counts (many people may share one
# office address): it needs a valid token, and ends with its account's sign-in.
MAX_ANONYMOUS_PER_CLIENT = 50


class AnonymousShare:
    """One anonymous session's place in its client's share (MAX_ANONYMOUS_PER_CLIENT)."""

    _held: Counter[str] = Counter()  # this process's places taken, by client

    def __init__(self, scope: dict):
        self.client = address_key(client_from_scope(scope).ip)
        self.taken = False

    def take(self) -> bool:
        if self._held[self.client] >= MAX_ANONYMOUS_PER_CLIENT:
            return False
        self._held[self.client] += 1
        self.taken = True
        return True

    def release(self) -> None:
        if self.taken:
            self.taken = False
            self._held[self.client] -= 1
            if not self._held[self.client]:
                del self._held[self.client]


def _query(scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {key: values[-1] for key, values in parsed.items()}


class EngineError(Enum):
    """The reference server's HTTP errors: (status, code, message)."""

    UNKNOWN_TRANSPORT = (400, 0, "Transport unknown")
    UNKNOWN_SID = (400, 1, "Session ID unknown")
    BAD_HANDSHAKE_METHOD = (400, 2, "Bad handshake method")
    BAD_REQUEST = (400, 3, "Bad request")
    FORBIDDEN = (403, 4, "Forbidden")
    UNSUPPORTED_PROTOCOL = (400, 5, "Unsupported protocol version")
    TOO_LARGE = (413, 3, "Payload too large")
    # Not the reference server's: a client over its share of waiting polls (clients retry
    # after an error, with their reconnection backoff).
    TOO_MANY = (429, 3, "Too many requests")


class Refused(Exception):
    def __init__(self, error: EngineError):
        super().__init__(error.value[2])
        self.error = error


class PollingConsumer(AsyncHttpConsumer):
    # The consumer reads the session's channel, never a channel of its own.
    channel_layer_alias = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received = 0

    async def http_request(self, message):
        # Count the body as it arrives, so an oversized POST is refused without being held.
        self.received += len(message.get("body", b""))
        if self.received > protocol.MAX_PAYLOAD:
            message = {**message, "body": b""}
            self.body = []
        await super().http_request(message)

    async def handle(self, body: bytes) -> None:
        headers = dict(self.scope.get("headers") or [])
        origin = headers.get(b"origin", b"").decode("latin-1")
        cors = []
        if origin and origin_allowed(origin):
            cors = [
                (b"Access-Control-Allow-Origin", origin.encode("latin-1")),
                (b"Access-Control-Allow-Credentials", b"true"),
                (b"Vary", b"Origin"),
            ]
            if self.scope["method"] == "OPTIONS":
                requested = headers.get(b"access-control-request-headers", b"content-type")
                cors += [
                    (b"Access-Control-Allow-Methods", b"GET, POST, OPTIONS"),
                    (b"Access-Control-Allow-Headers", requested),
                ]
        # Every answer, refusals included: a body of packets is never a script, a document or
        # something to keep.
        common = [*resource_security_headers(), (b"Cache-Control", b"no-store"), *cors]
        try:
            if origin and not cors:
                raise Refused(EngineError.FORBIDDEN)
            status, content = await self._answer(body)
        except Refused as refusal:
            status, code, text = refusal.error.value
            content = protocol.dump_json({"code": code, "message": text}).encode()
            await self.send_response(
                status, content, headers=[(b"Content-Type", b"application/json"), *common]
            )
            return
        await self.send_response(
            status, content, headers=[(b"Content-Type", b"text/plain; charset=UTF-8"), *common]
        )

    async def _answer(self, body: bytes) -> tuple[int, bytes]:
        method = self.scope["method"]
        if method == "OPTIONS":
            return 204, b""
        query = _query(self.scope)
        if query.get("EIO") != "4":
            raise Refused(EngineError.UNSUPPORTED_PROTOCOL)
        if query.get("transport") != Transport.POLLING:
            transports = {transport.value for transport in Transport}
            unknown = query.get("transport") not in transports
            raise Refused(EngineError.UNKNOWN_TRANSPORT if unknown else EngineError.BAD_REQUEST)
        timing = Timing.from_settings()
        sid = query.get("sid")
        if not sid:
            if method != "GET":
                raise Refused(EngineError.BAD_HANDSHAKE_METHOD)
            return 200, await self._handshake(timing)
        session = await get_store().get(sid)
        if session is None:
            raise Refused(EngineError.UNKNOWN_SID)
        if session.transport is not Transport.POLLING:
            raise Refused(EngineError.BAD_REQUEST)
        if method == "GET":
            if session.user_id:
                return 200, await self._poll(session, timing)
            share = AnonymousShare(self.scope)
            if not share.take():
                raise Refused(EngineError.TOO_MANY)
            try:
                return 200, await self._poll(session, timing)
            finally:
                share.release()
        if method == "POST":
            return 200, await self._post(session, body, timing)
        raise Refused(EngineError.BAD_REQUEST)

    async def _handshake(self, timing: Timing) -> bytes:
        session = new_session(transport=Transport.POLLING, timing=timing)
        await get_store().create(session)
        return protocol.open_packet(
            session.sid, upgrades=[Transport.WEBSOCKET.value], timing=timing
        ).encode()

    async def _poll(self, session: EngineSession, timing: Timing) -> bytes:
        """Wait for packets; answer a ping when one is owed, a close once the client is gone."""
        layer = get_channel_layer()
        store = get_store()
        channel = session_channel(session.sid)
        while True:
            wait = (min(session.ping_due, session.deadline) - now_ms()) / 1000
            if wait > 0:
                try:
                    message = await asyncio.wait_for(layer.receive(channel), wait)
                except TimeoutError:
                    pass
                else:
                    return await self._render(session, message, timing)
            current = await store.get(session.sid)
            if current is None:
                # The client missed its pong: the session expired while this request waited.
                await release(session)
                return protocol.CLOSE.encode()
            if current.transport is not Transport.POLLING:
                return protocol.NOOP.encode()
            if now_ms() >= current.ping_due:
                await store.pinged(session.sid, ping_due=now_ms() + timing.ping_interval)
                return protocol.PING.encode()
            session = current  # a pong moved the schedule; wait again

    @staticmethod
    async def _render(session: EngineSession, message: dict, timing: Timing) -> bytes:
        kind = Message(message["type"])
        if kind is Message.PACKETS:
            return protocol.encode_payload(message["packets"])
        if kind is Message.CLOSE:
            return protocol.CLOSE.encode()
        if kind is Message.SIGNED_OUT:
            answer: list[str] = []

            async def deliver(encoded: list[str]) -> None:
                answer.extend(encoded)

            await Connection(session, deliver=deliver, timing=timing).signed_out(message["user_id"])
            if answer:
                return protocol.encode_payload(answer)
        return protocol.NOOP.encode()

    async def _post(self, session: EngineSession, body: bytes, timing: Timing) -> bytes:
        if self.received > timing.max_payload:
            await close_session(session.sid)
            raise Refused(EngineError.TOO_LARGE)
        layer = get_channel_layer()
        channel = session_channel(session.sid)

        async def deliver(encoded: list[str]) -> None:
            try:
                await layer.send(channel, packets(*encoded))
            except ChannelFull:
                logger.warning("session channel full; the client is not reading")

        connection = Connection(session, deliver=deliver, timing=timing)
        try:
            for packet in protocol.parse_payload(body, limit=MAX_PACKETS_PER_PAYLOAD):
                await connection.receive(packet)
        except ProtocolError:
            await close_session(session.sid)
            raise Refused(EngineError.BAD_REQUEST) from None
        return b"ok"


class State(Enum):
    PROBING = auto()  # upgrading a polling session: waiting for 2probe
    PROBED = auto()  # 3probe sent: waiting for 5
    OPEN = auto()  # this WebSocket carries the session
    CLOSED = auto()


class WebsocketConsumer(AsyncWebsocketConsumer):
    # Packets for the client come from the session's channel, read by `_read`; the consumer has
    # no use for a channel of its own.
    channel_layer_alias = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.state = State.CLOSED
        self.sid = ""
        self.connection: Connection | None = None
        self.tasks: list[asyncio.Task] = []
        self.pong = asyncio.Event()
        self.timing = Timing.from_settings()
        self.share: AnonymousShare | None = None  # while the session has no account

    async def connect(self):
        query = _query(self.scope)
        if query.get("EIO") != "4" or query.get("transport") != Transport.WEBSOCKET:
            await self.close()  # refuses the handshake (HTTP 403)
            return
        store = get_store()
        sid = query.get("sid")
        if sid:
            session = await store.get(sid)
            if session is None or session.transport is not Transport.POLLING:
                await self.close()
                return
            self.sid = sid
            self.state = State.PROBING
            await self.accept()
            return
        self.share = AnonymousShare(self.scope)
        if not self.share.take():
            await self.close()  # refuses the handshake (HTTP 403); clients back off and retry
            return
        try:
            session = new_session(transport=Transport.WEBSOCKET, timing=self.timing)
            await store.create(session)
            self.sid = session.sid
            await self.accept()
            opening = protocol.open_packet(session.sid, upgrades=[], timing=self.timing)
            await self.send(text_data=opening)
            self._open(session)
        except BaseException:
            # Redis failed or the handshake was cancelled: Daphne then never says disconnect,
            # so the place is given back here or never.
            self.share.release()
            raise

    def _open(self, session: EngineSession) -> None:
        self.connection = Connection(session, deliver=self._deliver, timing=self.timing)
        self.state = State.OPEN
        self.tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._ping())]

    async def _deliver(self, encoded: list[str]) -> None:
        for text in encoded:
            await self.send(text_data=text)

    async def receive(self, text_data=None, bytes_data=None):
        if self.state is State.CLOSED:
            return
        try:
            if text_data is None:
                await self._binary_frame()
            elif len(text_data) > self.timing.max_payload:
                await self._fail(CLOSE_TOO_LARGE)
            elif self.state is State.OPEN:
                await self._packet(protocol.parse_engine_packet(text_data))
                if not self._placed():
                    await self._fail(CLOSE_TOO_MANY)
            else:
                await self._upgrade(protocol.parse_engine_packet(text_data))
        except ProtocolError:
            await self._fail(CLOSE_BAD_PACKET)

    async def _packet(self, packet: EnginePacket) -> None:
        if packet.type is EnginePacketType.PONG:
            if self.pong.is_set():
                return  # only the first pong to a ping counts: a flood of them costs nothing
            self.pong.set()
            if not await self.connection.heartbeat():
                await self._fail(CLOSE_PING_TIMEOUT)
        elif packet.type is EnginePacketType.CLOSE:
            await self._fail(CLOSE_NORMAL)
        else:
            await self.connection.receive(packet)

    async def _binary_frame(self) -> None:
        # Socket.IO sends binary frames only as attachments of a 45x/46x packet, which the
        # connection has refused already; a socket still connected hears why.
        if self.state is not State.OPEN:
            raise ProtocolError("binary frame during upgrade")
        await self.connection.refuse_binary()

    async def _upgrade(self, packet: EnginePacket) -> None:
        if self.state is State.PROBING:
            if packet.type is not EnginePacketType.PING or packet.data != protocol.PROBE:
                raise ProtocolError("expected a probe")
            await self.send(text_data=f"{int(EnginePacketType.PONG)}{protocol.PROBE}")
            # Release the client's pending GET, wherever it waits, so it can pause polling.
            layer = get_channel_layer()
            await layer.send(session_channel(self.sid), {"type": Message.NOOP.value})
            self.state = State.PROBED
            return
        if packet.type is not EnginePacketType.UPGRADE:
            raise ProtocolError("expected an upgrade")
        # The client has stopped polling: from here on this consumer reads the session's channel.
        # Its place is taken before the upgrade, so a refusal leaves the session polling.
        self.share = AnonymousShare(self.scope)
        current = await get_store().get(self.sid)
        if current is not None and not current.user_id and not self.share.take():
            await self._fail(CLOSE_TOO_MANY)
            return
        try:
            session = await get_store().upgrade(self.sid)
        except BaseException:
            self.share.release()  # as in connect: no disconnect follows a failed handler
            raise
        if session is None:
            await self._fail(CLOSE_NORMAL)
            return
        self._open(session)
        if not self._placed():
            await self._fail(CLOSE_TOO_MANY)

    def _placed(self) -> bool:
        """Hold a place in the client's share while the session has no account (it signed in
        later, or was let go of by `41` or a sign-out everywhere), and give it back once it has
        one. False when it needs a place and none is free: the caller closes the socket (4429)."""
        if self.connection.session.user_id:
            self.share.release()
            return True
        return self.share.taken or self.share.take()

    async def _read(self) -> None:
        """Forward the session's channel to the client, in order, for as long as it is open."""
        layer = get_channel_layer()
        channel = session_channel(self.sid)
        while True:
            try:
                message = await layer.receive(channel)
            except Exception:
                # Redis is unreachable or this process is out of connections: a socket that
                # can no longer receive is closed, so the client reconnects (elsewhere).
                logger.exception("cannot read Socket.IO session %s", self.sid)
                await self._stop(CLOSE_UNAVAILABLE)
                return
            kind = Message(message["type"])
            if kind is Message.PACKETS:
                await self._deliver(message["packets"])
            elif kind is Message.CLOSE:
                await self._stop(CLOSE_NORMAL)
                return
            elif kind is Message.SIGNED_OUT:
                try:
                    await self.connection.signed_out(message["user_id"])
                except Exception:
                    # Not knowing whether the socket was let go of, close it (fail closed).
                    logger.exception("cannot sign Socket.IO session %s out", self.sid)
                    await self._stop(CLOSE_UNAVAILABLE)
                    return
                if not self._placed():
                    await self._stop(CLOSE_TOO_MANY)  # anonymous again, and no place for it
                    return
            # NOOP: meant for a GET the upgrade released already

    async def _ping(self) -> None:
        interval = self.timing.ping_interval / 1000
        timeout = self.timing.ping_timeout / 1000
        while True:
            await asyncio.sleep(interval)
            self.pong.clear()
            await self.send(text_data=protocol.PING)
            try:
                await asyncio.wait_for(self.pong.wait(), timeout)
            except TimeoutError:
                await self._stop(CLOSE_PING_TIMEOUT)
                return

    async def _stop(self, code: int) -> None:
        """Close from a background task, which disconnect() must then not cancel mid-clean-up."""
        current = asyncio.current_task()
        self.tasks = [task for task in self.tasks if task is not current]
        await self._fail(code)

    async def _fail(self, code: int) -> None:
        await self.close(code=code)
        await self._end()

    async def _end(self) -> None:
        """Forget the session once; a WebSocket that never completed an upgrade owns nothing."""
        owned = self.state is State.OPEN
        self.state = State.CLOSED
        if self.share is not None:
            self.share.release()
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if owned and not await close_session(self.sid):
            # Expired while open: what it joined is this socket's to let go of.
            await release(self.connection.session)

    async def disconnect(self, code):
        await self._end()
