"""What the server does with a client's packets, whichever transport and process carries them.

A long-poll POST builds a Connection for the packets in its body and throws it away; the
WebSocket consumer keeps one for its lifetime. Either way the session's state is in the store,
and replies go out through `deliver`: straight down the WebSocket, or onto the session's channel
for whichever process answers the next GET.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from channels.layers import get_channel_layer
from django.conf import settings

from accounts.connections import account_group
from socketio_server import protocol
from socketio_server.auth import TokenRejected, user_for_token
from socketio_server.groups import Message, session_channel, socket_group, turn_group
from socketio_server.protocol import (
    ClientEvent,
    EnginePacket,
    EnginePacketType,
    ProtocolError,
    SocketPacket,
    SocketPacketType,
    Timing,
    Transport,
)
from socketio_server.store import Attach, EngineSession, get_store, new_id, now_ms

logger = logging.getLogger(__name__)

BINARY_REFUSED = "Binary payloads are not supported"
INVALID_NAMESPACE = "Invalid namespace"
OTHER_USER = "This socket is registered to another user"
TOO_MANY_SOCKETS = "Too many sockets are open for this account"

Deliver = Callable[[list[str]], Awaitable[None]]


def new_session(*, transport: Transport, timing: Timing) -> EngineSession:
    now = now_ms()
    return EngineSession(
        sid=new_id(),
        transport=transport,
        ping_due=now + timing.ping_interval,
        deadline=now + timing.ping_interval + timing.ping_timeout,
    )


async def release(session: EngineSession) -> None:
    """Let go of a session that has left the store: its socket's groups, its running turns."""
    if session.socket_id:
        layer = get_channel_layer()
        channel = session_channel(session.sid)
        await layer.group_discard(socket_group(session.socket_id), channel)
        if session.user_id:
            await layer.group_discard(account_group(session.user_id), channel)
        await layer.group_send(turn_group(session.socket_id), {"type": Message.SOCKET_GONE.value})


async def close_session(sid: str) -> bool:
    """End a session from any process; only the caller that removes it cleans up after it.
    False if it was gone already (ended elsewhere, or expired)."""
    session = await get_store().delete(sid)
    if session is None:
        return False
    await release(session)
    if session.transport is Transport.POLLING:
        # A GET may be waiting on the session's channel, here or in another process.
        await get_channel_layer().send(session_channel(sid), {"type": Message.CLOSE.value})
    return True


def _sockets_per_user() -> int:
    return settings.WORKGATE_SOCKETIO_MAX_SOCKETS_PER_USER


def _refusal_at_cap(user_id: str) -> str:
    """Why a socket past its account's cap is refused. Logged, not audited: no socket's
    connection is audited, and a refusal costs the client nothing to repeat, so an entry for
    each would be audit-chain writes that anyone holding a token could ask for in a loop."""
    limit = _sockets_per_user()
    logger.warning("account %s has %d Socket.IO sockets open: one more refused", user_id, limit)
    return TOO_MANY_SOCKETS


class Connection:
    def __init__(self, session: EngineSession, *, deliver: Deliver, timing: Timing):
        self.session = session
        self.deliver = deliver
        self.timing = timing
        self.store = get_store()
        self.layer = get_channel_layer()
        self._ponged = False

    # --- Engine.IO ---------------------------------------------------------------------------

    async def receive(self, packet: EnginePacket) -> None:
        await self._engine_handlers[packet.type](self, packet)

    async def heartbeat(self) -> bool:
        """The client answered a ping: it keeps its session for another interval + timeout."""
        now = now_ms()
        return await self.store.heartbeat(
            self.session.sid,
            ping_due=now + self.timing.ping_interval,
            deadline=now + self.timing.ping_interval + self.timing.ping_timeout,
        )

    async def _on_pong(self, packet: EnginePacket) -> None:
        if not self._ponged:  # one payload of a thousand pongs costs one heartbeat
            self._ponged = True
            await self.heartbeat()

    async def _on_close(self, packet: EnginePacket) -> None:
        await close_session(self.session.sid)

    async def _on_noop(self, packet: EnginePacket) -> None:
        pass

    async def _on_unexpected(self, packet: EnginePacket) -> None:
        raise ProtocolError(f"unexpected {packet.type.name} packet")

    async def _on_message(self, packet: EnginePacket) -> None:
        message = protocol.parse_socket_packet(packet.data)
        if message.namespace != "/" and message.type is not SocketPacketType.CONNECT:
            return  # never connected there; the reference server ignores these too
        await self._socket_handlers[message.type](self, message)

    _engine_handlers = {
        EnginePacketType.OPEN: _on_unexpected,
        EnginePacketType.CLOSE: _on_close,
        # In Engine.IO v4 only the server pings (a probe is the upgrade's, handled before this);
        # the reference server ends a session that pings, and an answer would echo its data.
        EnginePacketType.PING: _on_unexpected,
        EnginePacketType.PONG: _on_pong,
        EnginePacketType.MESSAGE: _on_message,
        EnginePacketType.UPGRADE: _on_unexpected,
        EnginePacketType.NOOP: _on_noop,
    }

    # --- Socket.IO ---------------------------------------------------------------------------

    async def _on_connect(self, message: SocketPacket) -> None:
        if message.namespace != "/":
            if not protocol.is_plain_namespace(message.namespace):
                raise ProtocolError("a namespace that is not a plain name")
            await self.deliver(
                [protocol.connect_error(INVALID_NAMESPACE, namespace=message.namespace)]
            )
            return
        user_id = ""
        # python-socketio sends `{}` when given no auth: only a payload that names a token is an
        # attempt to authenticate at CONNECT (no valid token, no socket). Without one the socket
        # connects anonymously, and must `register` before anything is streamed to it.
        auth = message.data or {}
        if "token" in auth:
            try:
                user = await user_for_token(auth["token"])
            except TokenRejected as exc:
                await self.deliver([protocol.connect_error(exc.message)])
                return
            user_id = str(user.pk)
        socket_id = new_id()
        # The store decides whether a socket is connected (this object's copy may be stale:
        # a sign-out handled by a poll elsewhere lets go of the socket there).
        outcome = await self.store.attach_socket(
            self.session.sid, socket_id, user_id, limit=_sockets_per_user()
        )
        if outcome == Attach.CONFLICT:
            raise ProtocolError("already connected to /")
        if outcome == Attach.FULL:
            await self.deliver([protocol.connect_error(_refusal_at_cap(user_id))])
            return
        if outcome == Attach.GONE:
            return
        self.session = replace(self.session, socket_id=socket_id, user_id=user_id)
        # Join before answering: once the client knows its id, streams must reach it.
        await self.layer.group_add(socket_group(socket_id), session_channel(self.session.sid))
        if user_id and not await self._joined_account(auth["token"]):
            return
        await self.deliver([protocol.connect_ok(socket_id)])

    async def _joined_account(self, token: str) -> bool:
        """Join the account's group (accounts/connections.py), then check the token once more:
        a sign-out everywhere that committed between the first check and the join was announced
        before this socket could hear it. A token no longer good ends the socket (False)."""
        group = account_group(self.session.user_id)
        await self.layer.group_add(group, session_channel(self.session.sid))
        try:
            await user_for_token(token)
        except TokenRejected as exc:
            await self._refuse_socket(exc.message)
            return False
        return True

    async def _on_disconnect(self, message: SocketPacket) -> None:
        await self.drop_socket()

    async def _on_event(self, message: SocketPacket) -> None:
        if not self.session.socket_id:
            return
        try:
            name = ClientEvent(message.event_name)
        except ValueError:
            return  # an event nobody listens to, as on any Socket.IO server
        await self._event_handlers[name](self, message)

    async def _on_ack(self, message: SocketPacket) -> None:
        pass  # the server never asks the client for acknowledgements

    async def _on_binary(self, message: SocketPacket) -> None:
        await self.refuse_binary()

    async def refuse_binary(self) -> None:
        """Binary attachments are not part of this API: say so, and end the socket."""
        if self.session.socket_id:
            await self.deliver([protocol.connect_error(BINARY_REFUSED)])
            await self.drop_socket()

    _socket_handlers = {
        SocketPacketType.CONNECT: _on_connect,
        SocketPacketType.DISCONNECT: _on_disconnect,
        SocketPacketType.EVENT: _on_event,
        SocketPacketType.ACK: _on_ack,
        SocketPacketType.CONNECT_ERROR: _on_unexpected,
        SocketPacketType.BINARY_EVENT: _on_binary,
        SocketPacketType.BINARY_ACK: _on_binary,
    }

    async def signed_out(self, user_id: str) -> None:
        """`user_id` was signed out everywhere or turned off: if this session's socket is still
        theirs, the server lets go of it (its running turns stop streaming to it) and tells the
        client, which does not reconnect by itself."""
        gone = await self.store.detach_user(self.session.sid, user_id)
        if gone is None:
            return  # gone already, or a socket connected since by someone else
        await release(gone)
        if self.session.socket_id == gone.socket_id:
            self.session = replace(self.session, socket_id="", user_id="")
        await self.deliver([protocol.SERVER_DISCONNECT])

    async def drop_socket(self) -> None:
        socket_id = self.session.socket_id
        if not socket_id:
            return
        await self.store.detach_socket(self.session.sid, socket_id)
        await release(self.session)
        self.session = replace(self.session, socket_id="", user_id="")

    # --- Client events -----------------------------------------------------------------------

    async def _on_register(self, message: SocketPacket) -> None:
        args = message.event_args
        token = args[0].get("token") if args and isinstance(args[0], dict) else None
        try:
            user = await user_for_token(token)
        except TokenRejected as exc:
            await self._refuse_socket(exc.message)
            return
        user_id = str(user.pk)
        outcome = await self.store.set_user(
            self.session.sid, self.session.socket_id, user_id, limit=_sockets_per_user()
        )
        if outcome == Attach.CONFLICT:
            await self._refuse_socket(OTHER_USER)
            return
        if outcome == Attach.FULL:
            await self._refuse_socket(_refusal_at_cap(user_id))
            return
        if outcome == Attach.GONE:
            return
        self.session = replace(self.session, user_id=user_id)
        if not await self._joined_account(token):
            return
        answer = {"socketId": self.session.socket_id}
        packets = [protocol.event("registered", answer)]
        if message.ack_id is not None:
            packets.append(protocol.ack(message.ack_id, answer))
        await self.deliver(packets)

    async def _refuse_socket(self, reason: str) -> None:
        await self.deliver([protocol.connect_error(reason)])
        await self.drop_socket()

    async def _on_cancel(self, message: SocketPacket) -> None:
        registered = bool(self.session.user_id)
        if registered:
            kind = (
                Message.CANCEL_REQUEST
                if message.event_name == ClientEvent.CANCEL_REQUEST
                else Message.CANCEL_STREAMING
            )
            await self.layer.group_send(turn_group(self.session.socket_id), {"type": kind.value})
        if message.ack_id is not None:
            await self.deliver([protocol.ack(message.ack_id, {"success": registered})])

    _event_handlers = {
        ClientEvent.REGISTER: _on_register,
        ClientEvent.CANCEL_REQUEST: _on_cancel,
        ClientEvent.CANCEL_STREAMING: _on_cancel,
    }
