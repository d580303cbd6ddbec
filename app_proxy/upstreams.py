"""The upstream side of the web-app proxy: how a request reaches the app pinned at launch.

HTTP goes through aiohttp, one client session per pinned upstream (kept-alive pooled
connections), whose resolver answers every name with the address pinned at launch and nothing
else: the URL keeps the workspace's name, so Host, SNI and the certificate check all use that
name, and no later DNS answer (rebinding) can move the app elsewhere. WebSockets go through
`websockets` (as the desktop relay's KasmVNC upstreams do), dialled to the same pinned address
with the name as server_hostname.

Every session shares no cookies (DummyCookieJar: one user's app cookies must never be sent for
another's request), follows no redirects (the browser does, through the proxy), decompresses
nothing and adds no headers of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from yarl import URL

from app_proxy.admission import AppUpstream
from app_proxy.daphne import on_shutdown

READ_BUFFER = 256 * 1024  # bytes aiohttp reads from the upstream at a time (large bodies)
POOL_PER_UPSTREAM = 100  # kept-alive connections to one pinned upstream
PER_ACCOUNT = 32  # requests one account may have at once on one pooled upstream (SSE included)
KEEPALIVE_SECONDS = 30.0
WS_MAX_MESSAGE = 16 * 1024 * 1024  # bytes: one WebSocket message from the app
WS_MAX_QUEUE = 16  # messages read ahead from the app before reading stops (backpressure)
WS_WRITE_LIMIT = 512 * 1024  # bytes waiting for the app before sending waits


class PinnedResolver(AbstractResolver):
    """Resolves every name to the one address pinned at launch."""

    def __init__(self, address: str):
        self._family = (
            socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        )
        self._address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=self._address,
                port=port,
                family=self._family,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


@functools.cache
def tls_context(*, verify: bool) -> ssl.SSLContext:
    """Made once per process for each setting (reading the system's CA store costs ~30 ms).
    Unverified only where the session says tls_verify false (an administrator's choice)."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


_sessions: dict[tuple, aiohttp.ClientSession] = {}


async def close_all() -> None:
    sessions = list(_sessions.values())
    _sessions.clear()
    await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)


def _pool_key(upstream: AppUpstream) -> tuple:
    return (upstream.origin, upstream.address, upstream.port, upstream.tls_verify)


def http_session(upstream: AppUpstream) -> aiohttp.ClientSession:
    """The pooled client session of one pinned upstream, made on first use in this process's
    event loop (Daphne runs one)."""
    key = _pool_key(upstream)
    session = _sessions.get(key)
    if session is None or session.closed:
        if not _sessions:
            on_shutdown(close_all)
        connector = aiohttp.TCPConnector(
            resolver=PinnedResolver(upstream.address),
            use_dns_cache=False,
            ssl=tls_context(verify=upstream.tls_verify),
            limit=0,
            limit_per_host=POOL_PER_UPSTREAM,
            keepalive_timeout=KEEPALIVE_SECONDS,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            # sock_connect, not connect: a timer only when a connection is dialled, not for
            # every request that takes one from the pool.
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=settings.WORKGATE_APP_CONNECT_TIMEOUT,
                sock_read=settings.WORKGATE_APP_IDLE_TIMEOUT,
            ),
            read_bufsize=READ_BUFFER,
            trust_env=False,
        )
        _sessions[key] = session
    return session


class NotPinned(ValueError):
    """A URL for the upstream that names another host or port than the one pinned at launch."""


@functools.lru_cache(maxsize=1024)
def _pinned(origin: str) -> tuple[str, str, str]:
    """(scheme, authority, host) of a pinned upstream's origin."""
    url = URL(origin)
    return url.scheme, url.raw_authority, url.host


def url_for(upstream: AppUpstream, path: str, query: str = "", *, websocket: bool = False) -> URL:
    """The URL of a request to the pinned upstream, built from its parts: the scheme, host and
    port are the pinned origin's, never anything the request says. `path` (already encoded,
    the base path included) must start with "/"."""
    if not path.startswith("/"):
        raise NotPinned("an upstream path starts with '/'")
    scheme, authority, _ = _pinned(upstream.origin)
    if websocket:
        scheme = "wss" if scheme == "https" else "ws"
    return URL.build(
        scheme=scheme, authority=authority, path=path, query_string=query, encoded=True
    )


def check_pinned(upstream: AppUpstream, url: URL) -> None:
    """Before dialling (defence in depth): `url` names the pinned host and port, and carries no
    userinfo; NotPinned otherwise. An IP literal in a URL would skip the pinned resolver."""
    if url.host != _pinned(upstream.origin)[2] or url.port != upstream.port or url.raw_user:
        raise NotPinned(f"{url.host}:{url.port} is not the pinned upstream")


class Busy(Exception):
    """The account already has PER_ACCOUNT requests on this upstream's pool."""


_in_flight: dict[tuple, int] = {}  # pool key -> requests holding or awaiting a connection
_per_account: dict[tuple, int] = {}  # (pool key, account) -> the same, for one account


@contextlib.asynccontextmanager
async def request(upstream: AppUpstream, account: object, method: str, url: URL, **kwargs):
    """`session.request` on the upstream's pooled session, once `url` is checked to name it.

    The pool is shared by every user of the upstream: one account may hold PER_ACCOUNT of its
    connections at once (Busy past that, before anything is sent), so long answers (SSE, slow
    downloads) of one user cannot starve the others; and when the pool is full, the wait for a
    connection is bounded by WORKGATE_APP_CONNECT_TIMEOUT (aiohttp's `connect` timeout covers
    the wait and the dial: ServerTimeoutError), a timer paid only then."""
    check_pinned(upstream, url)
    pool = _pool_key(upstream)
    mine = (pool, account)
    held = _per_account.get(mine, 0)
    if held >= PER_ACCOUNT:
        raise Busy(f"{held} requests of this account on this app already")
    _per_account[mine] = held + 1
    _in_flight[pool] = waiting = _in_flight.get(pool, 0) + 1
    try:
        if waiting > POOL_PER_UPSTREAM:
            kwargs["timeout"] = _waiting_timeout()
        async with http_session(upstream).request(method, url, **kwargs) as response:
            yield response
    finally:
        _release(_per_account, mine)
        _release(_in_flight, pool)


def _release(counts: dict, key) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


def _waiting_timeout() -> aiohttp.ClientTimeout:
    connect = settings.WORKGATE_APP_CONNECT_TIMEOUT
    return aiohttp.ClientTimeout(
        total=None,
        connect=connect,
        sock_connect=connect,
        sock_read=settings.WORKGATE_APP_IDLE_TIMEOUT,
    )


class _connect_here_only(connect):
    """websockets' connect without following redirects: the upstream's 3xx is refused like any
    other status (the credential and the assertion go to the pinned app and nowhere else)."""

    def process_redirect(self, exc: Exception) -> Exception:
        return exc


async def ws_connect(
    upstream: AppUpstream,
    url: URL,
    *,
    headers: list[tuple[str, str]],
    subprotocols: list[str] | None,
    origin: str | None,
) -> ClientConnection:
    """A WebSocket to the pinned address, named as the workspace's url names it."""
    check_pinned(upstream, url)
    tls = url.scheme == "wss"
    name = urlsplit(upstream.origin).hostname
    return await _connect_here_only(
        str(url),
        host=upstream.address,
        port=upstream.port,
        ssl=tls_context(verify=upstream.tls_verify) if tls else None,
        server_hostname=name if tls else None,
        origin=origin,
        additional_headers=headers,
        subprotocols=subprotocols or None,
        open_timeout=settings.WORKGATE_APP_CONNECT_TIMEOUT,
        ping_interval=None,  # the browser and the app keep their own connection alive
        max_size=WS_MAX_MESSAGE,
        max_queue=WS_MAX_QUEUE,
        write_limit=WS_WRITE_LIMIT,
        compression=None,
        user_agent_header=None,
        proxy=None,
    )
