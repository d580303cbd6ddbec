"""Where Engine.IO sessions and Socket.IO sockets live between requests: Redis, or memory.

No process owns a session. Any process may answer the next long-poll request, hold the upgraded
WebSocket, or run a turn that streams to the socket, so what they share is here: the session's
transport, its socket and user, and its liveness. Each record expires by
itself at its deadline (`PEXPIREAT`): a client that stops answering pings disappears even if the
process that served it died. Conditional changes are Lua scripts, so two processes never both
win a race for the same session.

An account's signed-in sockets are a sorted set scored by each socket's deadline, so that
WORKGATE_SOCKETIO_MAX_SOCKETS_PER_USER holds across processes. A socket stops counting when it
is let go of, when its session ends, or, if nobody is left to say so (its client went silent,
its process died), once its deadline passes: the heartbeat moves the score with the session's.

The embedded default (no REDIS_URL) runs one process, and keeps the same records in memory.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
import weakref
from dataclasses import dataclass, replace
from typing import Protocol

from django.conf import settings

from socketio_server.protocol import Transport

PREFIX = "workgate:sio:"


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    """An Engine.IO sid or Socket.IO socket id: 120 random bits, valid in channel-layer names."""
    return secrets.token_urlsafe(15)


@dataclass(frozen=True, slots=True)
class EngineSession:
    sid: str
    transport: Transport
    ping_due: int  # ms since the epoch: when the next ping is owed
    deadline: int  # ms since the epoch: when the session expires unless the client pongs
    socket_id: str = ""  # set once the client has connected to the "/" namespace
    user_id: str = ""  # set once the socket has authenticated

    def as_fields(self) -> dict[str, str]:
        return {
            "transport": self.transport.value,
            "ping_due": str(self.ping_due),
            "deadline": str(self.deadline),
            "socket": self.socket_id,
            "user": self.user_id,
        }

    @classmethod
    def from_fields(cls, sid: str, fields: dict[str, str]) -> EngineSession:
        return cls(
            sid=sid,
            transport=Transport(fields["transport"]),
            ping_due=int(fields["ping_due"]),
            deadline=int(fields["deadline"]),
            socket_id=fields.get("socket", ""),
            user_id=fields.get("user", ""),
        )


@dataclass(frozen=True, slots=True)
class SocketRecord:
    socket_id: str
    sid: str
    user_id: str


class Attach:
    """Outcomes of binding a socket or a user to a session."""

    DONE = 1
    GONE = 0
    CONFLICT = -1
    FULL = -2  # the account has its WORKGATE_SOCKETIO_MAX_SOCKETS_PER_USER sockets already


class SessionStore(Protocol):
    async def create(self, session: EngineSession) -> None: ...
    async def get(self, sid: str) -> EngineSession | None: ...
    async def socket(self, socket_id: str) -> SocketRecord | None: ...
    async def heartbeat(self, sid: str, *, ping_due: int, deadline: int) -> bool: ...
    async def pinged(self, sid: str, *, ping_due: int) -> None: ...
    async def attach_socket(self, sid: str, socket_id: str, user_id: str, *, limit: int) -> int: ...
    async def set_user(self, sid: str, socket_id: str, user_id: str, *, limit: int) -> int: ...
    async def detach_socket(self, sid: str, socket_id: str) -> None: ...
    async def detach_user(self, sid: str, user_id: str) -> EngineSession | None: ...
    async def upgrade(self, sid: str) -> EngineSession | None: ...
    async def delete(self, sid: str) -> EngineSession | None: ...


def _decode(raw: dict) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in raw.items()}


def _pairs(flat: list) -> dict[str, str]:
    return _decode(dict(zip(flat[::2], flat[1::2], strict=True)))


_HSET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# The account's sockets, `users` .. user: a sorted set of socket ids scored by their deadlines,
# which itself expires with the last of them. `admit` counts only sockets whose deadline is still
# ahead by Redis's clock, the clock that expires their sessions (TIME before a write needs
# effects replication: Redis 5 or later, which channels-redis needs too).
_ACCOUNT_SOCKETS = """
local function keep(users, user, sock, deadline)
  local key = users .. user
  redis.call('ZADD', key, deadline, sock)
  redis.call('PEXPIREAT', key, redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
end
local function admit(users, user, sock, deadline, limit)
  local key = users .. user
  local time = redis.call('TIME')
  redis.call('ZREMRANGEBYSCORE', key, '-inf', time[1] * 1000 + math.floor(time[2] / 1000))
  if redis.call('ZCARD', key) >= tonumber(limit) then return false end
  keep(users, user, sock, deadline)
  return true
end
local function forget(users, user, sock)
  if user and user ~= '' then redis.call('ZREM', users .. user, sock) end
end
"""

_HEARTBEAT = (
    _ACCOUNT_SOCKETS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ping_due', ARGV[1], 'deadline', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
local sock = redis.call('HGET', KEYS[1], 'socket')
if sock and sock ~= '' then
  redis.call('PEXPIREAT', ARGV[3] .. sock, ARGV[2])
  local user = redis.call('HGET', KEYS[1], 'user')
  if user and user ~= '' then keep(ARGV[4], user, sock, ARGV[2]) end
end
return 1
"""
)

_ATTACH = (
    _ACCOUNT_SOCKETS
    + """
local current = redis.call('HGET', KEYS[1], 'socket')
if not current then return 0 end
if current ~= '' then return -1 end
local deadline = redis.call('HGET', KEYS[1], 'deadline')
if ARGV[2] ~= '' and not admit(ARGV[4], ARGV[2], ARGV[1], deadline, ARGV[5]) then return -2 end
redis.call('HSET', KEYS[1], 'socket', ARGV[1], 'user', ARGV[2])
redis.call('HSET', KEYS[2], 'sid', ARGV[3], 'user', ARGV[2])
redis.call('PEXPIREAT', KEYS[2], deadline)
return 1
"""
)

_SET_USER = (
    _ACCOUNT_SOCKETS
    + """
if redis.call('HGET', KEYS[1], 'socket') ~= ARGV[1] then return 0 end
local current = redis.call('HGET', KEYS[1], 'user')
if current ~= '' and current ~= ARGV[2] then return -1 end
if current == '' then
  local deadline = redis.call('HGET', KEYS[1], 'deadline')
  if not admit(ARGV[3], ARGV[2], ARGV[1], deadline, ARGV[4]) then return -2 end
end
redis.call('HSET', KEYS[1], 'user', ARGV[2])
redis.call('HSET', KEYS[2], 'user', ARGV[2])
return 1
"""
)

_DETACH = (
    _ACCOUNT_SOCKETS
    + """
if redis.call('HGET', KEYS[1], 'socket') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'socket', '', 'user', '')
end
forget(ARGV[2], redis.call('HGET', KEYS[2], 'user'), ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""
)

_DETACH_USER = (
    _ACCOUNT_SOCKETS
    + """
local sock = redis.call('HGET', KEYS[1], 'socket')
if not sock or sock == '' or redis.call('HGET', KEYS[1], 'user') ~= ARGV[1] then return false end
local fields = redis.call('HGETALL', KEYS[1])
redis.call('HSET', KEYS[1], 'socket', '', 'user', '')
redis.call('DEL', ARGV[2] .. sock)
forget(ARGV[3], ARGV[1], sock)
return fields
"""
)

_UPGRADE = """
if redis.call('HGET', KEYS[1], 'transport') ~= 'polling' then return false end
redis.call('HSET', KEYS[1], 'transport', 'websocket')
return redis.call('HGETALL', KEYS[1])
"""

_DELETE = (
    _ACCOUNT_SOCKETS
    + """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
local sock = redis.call('HGET', KEYS[1], 'socket')
if sock ~= '' then
  redis.call('DEL', ARGV[1] .. sock)
  forget(ARGV[2], redis.call('HGET', KEYS[1], 'user'), sock)
end
redis.call('DEL', KEYS[1])
return fields
"""
)


class RedisStore:
    def __init__(self, url: str):
        self.url = url
        # A redis.asyncio client belongs to the event loop that made it.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _client(self):
        from redis import asyncio as redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.Redis.from_url(
                self.url, max_connections=settings.WORKGATE_REDIS_MAX_CONNECTIONS
            )
            self._clients[loop] = client
        return client

    async def _run(self, script: str, keys: list[str], args: list) -> object:
        # EVAL with the source every time costs a few hundred bytes and no NOSCRIPT handling;
        # these calls are per packet at most, never per streamed chunk.
        return await self._client().eval(script, len(keys), *keys, *args)

    @staticmethod
    def _session_key(sid: str) -> str:
        return f"{PREFIX}eio:{sid}"

    @staticmethod
    def _socket_key(socket_id: str) -> str:
        return f"{PREFIX}sock:{socket_id}"

    # Scripts reach a socket's key and its account's set from these prefixes and ids they read.
    SOCKETS = f"{PREFIX}sock:"
    ACCOUNTS = f"{PREFIX}user:"

    async def create(self, session: EngineSession) -> None:
        key = self._session_key(session.sid)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=session.as_fields())
            pipe.pexpireat(key, session.deadline)
            await pipe.execute()

    async def get(self, sid: str) -> EngineSession | None:
        fields = await self._client().hgetall(self._session_key(sid))
        return EngineSession.from_fields(sid, _decode(fields)) if fields else None

    async def socket(self, socket_id: str) -> SocketRecord | None:
        fields = _decode(await self._client().hgetall(self._socket_key(socket_id)))
        if not fields:
            return None
        return SocketRecord(socket_id=socket_id, sid=fields["sid"], user_id=fields["user"])

    async def heartbeat(self, sid: str, *, ping_due: int, deadline: int) -> bool:
        keys = [self._session_key(sid)]
        args = [ping_due, deadline, self.SOCKETS, self.ACCOUNTS]
        return bool(await self._run(_HEARTBEAT, keys, args))

    async def pinged(self, sid: str, *, ping_due: int) -> None:
        await self._run(_HSET_IF_EXISTS, [self._session_key(sid)], ["ping_due", ping_due])

    async def attach_socket(self, sid: str, socket_id: str, user_id: str, *, limit: int) -> int:
        keys = [self._session_key(sid), self._socket_key(socket_id)]
        args = [socket_id, user_id, sid, self.ACCOUNTS, limit]
        return int(await self._run(_ATTACH, keys, args))

    async def set_user(self, sid: str, socket_id: str, user_id: str, *, limit: int) -> int:
        keys = [self._session_key(sid), self._socket_key(socket_id)]
        args = [socket_id, user_id, self.ACCOUNTS, limit]
        return int(await self._run(_SET_USER, keys, args))

    async def detach_socket(self, sid: str, socket_id: str) -> None:
        keys = [self._session_key(sid), self._socket_key(socket_id)]
        await self._run(_DETACH, keys, [socket_id, self.ACCOUNTS])

    async def detach_user(self, sid: str, user_id: str) -> EngineSession | None:
        """Detach the session's socket if `user_id` is on it; the session as it was, or None."""
        args = [user_id, self.SOCKETS, self.ACCOUNTS]
        flat = await self._run(_DETACH_USER, [self._session_key(sid)], args)
        return EngineSession.from_fields(sid, _pairs(flat)) if flat else None

    async def upgrade(self, sid: str) -> EngineSession | None:
        flat = await self._run(_UPGRADE, [self._session_key(sid)], [])
        return EngineSession.from_fields(sid, _pairs(flat)) if flat else None

    async def delete(self, sid: str) -> EngineSession | None:
        flat = await self._run(_DELETE, [self._session_key(sid)], [self.SOCKETS, self.ACCOUNTS])
        return EngineSession.from_fields(sid, _pairs(flat)) if flat else None


class MemoryStore:
    """The same records for a single process (the embedded default's in-memory channel layer)."""

    def __init__(self):
        self._sessions: dict[str, EngineSession] = {}

    def _live(self, sid: str) -> EngineSession | None:
        session = self._sessions.get(sid)
        if session is not None and session.deadline <= now_ms():
            del self._sessions[sid]
            return None
        return session

    async def create(self, session: EngineSession) -> None:
        # Sessions a client abandoned are never asked for again: sweep them as new ones come.
        now = now_ms()
        for sid in [sid for sid, old in self._sessions.items() if old.deadline <= now]:
            del self._sessions[sid]
        self._sessions[session.sid] = session

    async def get(self, sid: str) -> EngineSession | None:
        return self._live(sid)

    async def socket(self, socket_id: str) -> SocketRecord | None:
        for sid in list(self._sessions):
            session = self._live(sid)
            if session is not None and session.socket_id == socket_id:
                return SocketRecord(socket_id=socket_id, sid=sid, user_id=session.user_id)
        return None

    def _update(self, sid: str, **changes) -> EngineSession | None:
        session = self._live(sid)
        if session is None:
            return None
        self._sessions[sid] = replace(session, **changes)
        return self._sessions[sid]

    async def heartbeat(self, sid: str, *, ping_due: int, deadline: int) -> bool:
        return self._update(sid, ping_due=ping_due, deadline=deadline) is not None

    async def pinged(self, sid: str, *, ping_due: int) -> None:
        self._update(sid, ping_due=ping_due)

    def _full(self, user_id: str, limit: int) -> bool:
        """Whether `user_id` has `limit` live sockets already (the sweep-as-you-go store keeps
        no count of its own: it counts its live sessions)."""
        live = (self._live(sid) for sid in list(self._sessions))
        held = sum(1 for s in live if s is not None and s.socket_id and s.user_id == user_id)
        return held >= limit

    async def attach_socket(self, sid: str, socket_id: str, user_id: str, *, limit: int) -> int:
        session = self._live(sid)
        if session is None:
            return Attach.GONE
        if session.socket_id:
            return Attach.CONFLICT
        if user_id and self._full(user_id, limit):
            return Attach.FULL
        self._update(sid, socket_id=socket_id, user_id=user_id)
        return Attach.DONE

    async def set_user(self, sid: str, socket_id: str, user_id: str, *, limit: int) -> int:
        session = self._live(sid)
        if session is None or session.socket_id != socket_id:
            return Attach.GONE
        if session.user_id and session.user_id != user_id:
            return Attach.CONFLICT
        if not session.user_id and self._full(user_id, limit):
            return Attach.FULL
        self._update(sid, user_id=user_id)
        return Attach.DONE

    async def detach_socket(self, sid: str, socket_id: str) -> None:
        session = self._live(sid)
        if session is not None and session.socket_id == socket_id:
            self._update(sid, socket_id="", user_id="")

    async def detach_user(self, sid: str, user_id: str) -> EngineSession | None:
        session = self._live(sid)
        if session is None or not session.socket_id or session.user_id != user_id:
            return None
        self._update(sid, socket_id="", user_id="")
        return session

    async def upgrade(self, sid: str) -> EngineSession | None:
        session = self._live(sid)
        if session is None or session.transport is not Transport.POLLING:
            return None
        return self._update(sid, transport=Transport.WEBSOCKET)

    async def delete(self, sid: str) -> EngineSession | None:
        session = self._live(sid)
        self._sessions.pop(sid, None)
        return session


@functools.cache
def get_store() -> SessionStore:
    """One store per process, made on first use (after settings have loaded)."""
    return RedisStore(settings.REDIS_URL) if settings.REDIS_URL else MemoryStore()
