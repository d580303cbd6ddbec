"""Every library internal Workgate relies on, asserted in one place.

Where a measured win needed it, the code reaches past a library's documented surface (Daphne's
and autobahn's protocol objects, Twisted's write buffer, httpx's connection pool, asyncio's
StreamReader, some of Django's and asgiref's underscored methods). Those libraries are pinned
exactly (pyproject.toml, constraints.txt); when one is upgraded, this module says in one place
which internal moved and which of our files relies on it, instead of an AttributeError on a hot
path far from any test that says why.

Each assertion's message names the file (and function) that relies on the internal and the
version tested. The last section exercises the plain, documented fallbacks taken where an
internal is missing at run time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import platform
import re
import socket
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Pinned exactly in pyproject.toml because the code relies on their internals.
EXACT = (
    "aiohttp",
    "asgiref",
    "autobahn",
    "channels",
    "daphne",
    "httpcore",
    "httpx",
    "psycopg-pool",
    "twisted",
    "websockets",
    "whitenoise",
)


def contract(holds: bool, *, dist: str, internal: str, where: str) -> None:
    """Fail with the one message an upgrade needs: what moved, who relies on it."""
    installed = f"CPython {platform.python_version()}" if dist == "python" else dist
    if dist != "python":
        installed = f"{dist} {version(dist)}"
    assert holds, (
        f"{where} relies on {internal}, which {installed} does not provide as expected: "
        f"adapt {where} (or keep the version pinned in pyproject.toml and constraints.txt)"
    )


def source_without_import(module: str) -> str:
    """A module's source, read without importing it (daphne.server installs a reactor)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, module
    return Path(spec.origin).read_text()


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# --- The pins themselves ---------------------------------------------------------------------


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = pinned
    return pins


def test_the_libraries_whose_internals_are_used_are_pinned_exactly_to_what_is_installed():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {}
    for requirement in pyproject["project"]["dependencies"]:
        name, _, pinned = re.split(r"\[.*?\]", requirement)[0].partition("==")
        declared[name.strip().lower()] = pinned.strip()
    constraints = _constraints()
    for dist in EXACT:
        assert declared.get(dist), f"pyproject.toml must pin {dist} exactly (==)"
        assert declared[dist] == version(dist) == constraints[dist], (
            f"{dist}: pyproject.toml {declared[dist]}, constraints.txt {constraints[dist]}, "
            f"installed {version(dist)}; they must agree"
        )
    assert constraints["django"] == version("django")


def test_every_installed_dependency_is_in_constraints_at_its_installed_version():
    constraints = _constraints()
    for dist in (
        "django",
        "djangorestframework",
        "channels-redis",
        "django-redis",
        "httpx-sse",
        "psycopg",
        "redis",
        "pytest",
    ):
        assert constraints.get(dist) == version(dist), f"constraints.txt: {dist}"


# --- Daphne ----------------------------------------------------------------------------------


def test_daphne_sends_through_a_partial_of_handle_reply_with_the_protocol():
    source = source_without_import("daphne.server")
    contract(
        "send=partial(self.handle_reply, protocol)" in source,
        dist="daphne",
        internal="Server.create_application's send being partial(handle_reply, protocol)",
        where="vnc_proxy/browser.py _daphne_protocol",
    )


def test_daphnes_websocket_protocol_keeps_its_input_queue_as_application_queue():
    from autobahn.twisted.websocket import WebSocketServerProtocol
    from daphne.ws_protocol import WebSocketProtocol

    contract(
        issubclass(WebSocketProtocol, WebSocketServerProtocol),
        dist="daphne",
        internal="ws_protocol.WebSocketProtocol being autobahn's WebSocketServerProtocol",
        where="vnc_proxy/browser.py DaphneBrowser",
    )
    worked = inspect.getsource(WebSocketProtocol.applicationCreateWorked)
    received = inspect.getsource(WebSocketProtocol.onMessage)
    contract(
        "self.application_queue = application_queue" in worked
        and "self.application_queue.put_nowait(" in received,
        dist="daphne",
        internal="WebSocketProtocol.application_queue (put_nowait for every incoming message)",
        where="vnc_proxy/browser.py DaphneBrowser.divert and _Diverted",
    )


def test_daphnes_access_log_is_a_callable_of_protocol_action_and_details():
    # Read from the file: vnc_proxy/access_log.py has already wrapped __call__ in this process.
    source = source_without_import("daphne.access")
    contract(
        "def __call__(self, protocol, action, details):" in source and "%(path)s" in source,
        dist="daphne",
        internal="AccessLogGenerator.__call__(protocol, action, details) formatting details' path",
        where="vnc_proxy/access_log.py install",
    )


def test_daphne_calls_the_application_before_reading_the_request_body_into_its_queue():
    from daphne.http_protocol import WebRequest

    where = "app_proxy/daphne.py take_body (called from app_proxy/proxy.py AppRouter.__call__)"
    contract(
        "send=partial(self.handle_reply, protocol)" in source_without_import("daphne.server")
        and "application_instance = self.application(" in source_without_import("daphne.server"),
        dist="daphne",
        internal="Server.create_application calling the application synchronously, with send "
        "being partial(handle_reply, request)",
        where=where,
    )
    process = inspect.getsource(WebRequest.process)
    created = process.find("self.server.create_application")
    contract(
        0
        < created
        < process.find("self.content.closed")
        < process.find("self.content.read(buffer_size)"),
        dist="daphne",
        internal="WebRequest.process reading self.content (and checking .closed) only after "
        "create_application",
        where=where,
    )


def test_daphnes_request_is_twisteds_with_the_hooks_the_body_limit_wraps():
    from daphne.http_protocol import WebRequest
    from twisted.web import http

    where = "app_proxy/daphne.py install_body_limit"
    # What Daphne's WebRequest itself defines (before install_body_limit wraps it, if it has in
    # this process: then the wrapped originals).
    wrapped = vars(WebRequest).get("workgate_wrapped", {})
    contract(
        issubclass(WebRequest, http.Request)
        and all(
            wrapped.get(name, vars(WebRequest).get(name)) in (None, getattr(http.Request, name))
            for name in ("gotLength", "handleContentChunk")
        ),
        dist="daphne",
        internal="WebRequest inheriting Twisted's gotLength and handleContentChunk",
        where=where,
    )
    contract(
        "self.content = _getContentFile(length)" in inspect.getsource(http.Request.gotLength)
        and "self.content.write(data)" in inspect.getsource(http.Request.handleContentChunk)
        and "req.gotLength(self.length)" in inspect.getsource(http.HTTPChannel.allHeadersReceived)
        and hasattr(http.HTTPChannel, "loseConnection"),
        dist="twisted",
        internal="Request.gotLength making self.content, handleContentChunk writing to it, "
        "HTTPChannel.allHeadersReceived calling gotLength, HTTPChannel.loseConnection",
        where=where,
    )
    contract(
        "self._path = request" in inspect.getsource(http.HTTPChannel.lineReceived)
        and "del self._command, self._path"
        in inspect.getsource(http.HTTPChannel.allContentReceived)
        and "self.method, self.uri = command, path"
        in inspect.getsource(http.Request.requestReceived)
        and "method" in vars(http.Request),
        dist="twisted",
        internal="HTTPChannel._path holding the request target until the body is whole, and "
        "Request.method a class default until requestReceived sets it (request_head, "
        "_watch_body)",
        where="app_proxy/daphne.py request_head and _watch_body",
    )
    contract(
        all(hasattr(http.Request, name) for name in ("registerProducer", "unregisterProducer"))
        and "self._requestProducer.pauseProducing()"
        in inspect.getsource(http.HTTPChannel.pauseProducing),
        dist="twisted",
        internal="Request.registerProducer, and HTTPChannel pausing the request's producer",
        where="app_proxy/daphne.py ResponseFlow",
    )


# --- Channels --------------------------------------------------------------------------------


def test_channels_session_middleware_keeps_the_servers_send_as_real_send():
    from channels.sessions import InstanceSessionWrapper

    contract(
        "self.real_send = send" in inspect.getsource(InstanceSessionWrapper),
        dist="channels",
        internal="sessions.InstanceSessionWrapper.real_send (the server's own send)",
        where="vnc_proxy/browser.py _daphne_protocol",
    )


def test_channels_http_consumer_collects_the_body_in_a_list_named_body():
    from channels.generic.http import AsyncHttpConsumer

    source = inspect.getsource(AsyncHttpConsumer)
    contract(
        "self.body = []" in source and 'self.body.append(message["body"])' in source,
        dist="channels",
        internal="AsyncHttpConsumer.body (the list http_request appends each chunk to)",
        where="socketio_server/consumers.py PollingConsumer.http_request",
    )


# --- autobahn --------------------------------------------------------------------------------


def _open_autobahn_protocol():
    """autobahn's server protocol after a real opening handshake, on an in-memory transport."""
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    factory = WebSocketServerFactory(reactor=Clock())  # no global reactor in the test process
    factory.protocol = WebSocketServerProtocol
    factory.setProtocolOptions(maxFramePayloadSize=1 << 20, maxMessagePayloadSize=1 << 20)
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return protocol


def test_autobahns_protocol_exposes_the_parser_state_the_frame_reader_checks():
    protocol = _open_autobahn_protocol()
    where = "vnc_proxy/browser.py _FrameReader"
    contract(
        protocol.state == protocol.STATE_OPEN,
        dist="autobahn",
        internal="WebSocketProtocol.state and STATE_OPEN",
        where=where,
    )
    contract(
        protocol.data == b"" and protocol.current_frame is None and not protocol.inside_message,
        dist="autobahn",
        internal="the parser state data, current_frame and inside_message between frames",
        where=f"{where}.__call__ and _FrameReader.supported",
    )
    contract(
        protocol.maxFramePayloadSize == protocol.maxMessagePayloadSize == 1 << 20,
        dist="autobahn",
        internal="maxFramePayloadSize and maxMessagePayloadSize on the protocol",
        where=f"{where}.__init__",
    )


def test_autobahns_protocol_sends_closes_and_pings_as_the_relay_calls_it():
    from daphne.ws_protocol import WebSocketProtocol

    where = "vnc_proxy/browser.py DaphneBrowser"
    for name in ("sendMessage", "sendPing", "dataReceived", "STATE_CONNECTING"):
        contract(
            hasattr(WebSocketProtocol, name),
            dist="autobahn",
            internal=f"WebSocketProtocol.{name}",
            where=where,
        )
    contract(
        parameters(WebSocketProtocol.sendCloseFrame)[:3] == ["self", "code", "reasonUtf8"],
        dist="autobahn",
        internal="WebSocketProtocol.sendCloseFrame(code=, reasonUtf8=)",
        where=f"{where}.close",
    )


def test_autobahns_websocket_module_pretty_prints_only_for_debug_output():
    # Read from the file: core/serving.py may have replaced the name in this process.
    source = source_without_import("autobahn.websocket.protocol")
    uses = {line.strip() for line in source.splitlines() if "pformat(" in line}
    contract(
        "from pprint import pformat" in source
        and uses
        == {
            'self.log.debug("\\n{attrs}", attrs=pformat(configAttrLog))',  # _connectionMade
            "return pformat(self._timings)",  # Timings.__str__
            "transport_details=pformat(self._transport_details.marshal()),",  # a debug argument
        },
        dist="autobahn",
        internal="websocket.protocol's module-level pformat, used for debug output only",
        where="core/serving.py autobahn_debug_dumps_unformatted",
    )


# --- Twisted ---------------------------------------------------------------------------------


def test_twisted_tcp_transports_keep_their_write_buffer_where_write_now_looks():
    from twisted.internet import abstract, tcp
    from twisted.internet.task import Clock

    where = "vnc_proxy/browser.py DaphneBrowser.write_now"
    contract(
        issubclass(tcp.Connection, abstract.FileDescriptor),
        dist="twisted",
        internal="tcp.Connection being an abstract.FileDescriptor",
        where=where,
    )
    ours, theirs = socket.socketpair()
    try:
        transport = tcp.Connection(ours, None, reactor=Clock())
        contract(
            transport.socket is ours,
            dist="twisted",
            internal="tcp.Connection.socket",
            where=f"{where} and _check_peer",
        )
        contract(
            transport._tempDataLen == 0
            and transport.offset == 0
            and transport.dataBuffer == b""
            and not transport.disconnecting,
            dist="twisted",
            internal="FileDescriptor._tempDataLen, offset, dataBuffer and disconnecting",
            where=where,
        )
        contract(
            "self._tempDataLen += len(data)" in inspect.getsource(abstract.FileDescriptor.write),
            dist="twisted",
            internal="FileDescriptor.write counting what it queues in _tempDataLen",
            where=where,
        )
    finally:
        ours.close()
        theirs.close()
    for name in (
        "bufferSize",
        "registerProducer",
        "unregisterProducer",
        "pauseProducing",
        "resumeProducing",
        "abortConnection",
        "setTcpNoDelay",
    ):
        contract(
            hasattr(tcp.Connection, name),
            dist="twisted",
            internal=f"tcp.Connection.{name}",
            where="vnc_proxy/browser.py DaphneBrowser (accept, pause_reading, _check_peer)",
        )


# --- websockets ------------------------------------------------------------------------------


def test_websockets_frames_module_offers_the_fast_apply_mask():
    from websockets import frames

    masked = frames.apply_mask(b"\x01\x02\x03\x04\x05", b"\xff\x00\xff\x00")
    contract(
        masked == b"\xfe\x02\xfc\x04\xfa",
        dist="websockets",
        internal="frames.apply_mask (its C speedup, imported there)",
        where="vnc_proxy/browser.py _FrameReader",
    )


def test_websockets_connect_asks_process_redirect_before_following_a_redirect():
    from websockets.asyncio.client import ClientConnection, connect

    contract(
        parameters(connect.process_redirect) == ["self", "exc"]
        and "self.process_redirect(" in inspect.getsource(connect),
        dist="websockets",
        internal="asyncio.client.connect.process_redirect(exc), called before a redirect",
        where="vnc_proxy/upstreams.py _connect_here_only",
    )
    contract(
        issubclass(ClientConnection, asyncio.Protocol)
        and "pause_writing" in vars(ClientConnection.__mro__[1])
        and "resume_writing" in vars(ClientConnection.__mro__[1]),
        dist="websockets",
        internal="ClientConnection being the asyncio Protocol with pause/resume_writing",
        where="vnc_proxy/upstreams.py _HookedClientConnection",
    )


# --- httpx, httpcore and asyncio's StreamReader ----------------------------------------------


def test_httpx_async_transport_sends_through_its_pool_attribute():
    import httpcore
    import httpx

    transport = httpx.AsyncHTTPTransport()
    contract(
        isinstance(transport._pool, httpcore.AsyncConnectionPool)
        and "self._pool.handle_async_request("
        in inspect.getsource(type(transport).handle_async_request),
        dist="httpx",
        internal="AsyncHTTPTransport._pool (the httpcore pool every request goes through)",
        where="streaming/providers/network.py AsyncioTransport",
    )
    contract(
        callable(httpx.create_ssl_context),
        dist="httpx",
        internal="httpx.create_ssl_context",
        where="streaming/providers/http.py _trust",
    )


def test_httpcore_pool_takes_a_network_backend_and_asks_is_readable_before_reuse():
    import httpcore

    contract(
        {"ssl_context", "keepalive_expiry", "network_backend"}
        <= set(parameters(httpcore.AsyncConnectionPool)),
        dist="httpcore",
        internal="AsyncConnectionPool(ssl_context=, keepalive_expiry=, network_backend=)",
        where="streaming/providers/network.py AsyncioTransport",
    )
    contract(
        'get_extra_info("is_readable")'
        in inspect.getsource(httpcore.AsyncHTTP11Connection.has_expired),
        dist="httpcore",
        internal='the network stream\'s get_extra_info("is_readable") before reusing a connection',
        where="streaming/providers/network.py AsyncioStream.get_extra_info",
    )


async def test_asyncios_stream_reader_keeps_what_it_read_ahead_in_buffer():
    reader = asyncio.StreamReader()
    reader.feed_data(b"ahead")
    contract(
        bytes(reader._buffer) == b"ahead",
        dist="python",
        internal="asyncio.StreamReader._buffer",
        where="streaming/providers/network.py AsyncioStream.get_extra_info",
    )


# --- asgiref ---------------------------------------------------------------------------------


def test_asgiref_takes_an_object_marked_single_callable_as_asgi_3():
    from asgiref.compatibility import guarantee_single_callable, is_double_callable

    class Marked:
        _asgi_single_callable = True

        def __call__(self, scope, receive, send):
            return None

    marked = Marked()
    contract(
        not is_double_callable(marked) and guarantee_single_callable(marked) is marked,
        dist="asgiref",
        internal="the _asgi_single_callable marker read by guarantee_single_callable",
        where="app_proxy/proxy.py AppRouter (a plain __call__, so Daphne calls it synchronously)",
    )


def test_asgirefs_sync_to_async_runs_the_function_through_thread_handler():
    from asgiref.sync import SyncToAsync

    contract(
        parameters(SyncToAsync.thread_handler)[:2] == ["self", "loop"]
        and "self.thread_handler" in inspect.getsource(SyncToAsync.__call__)
        and {"thread_sensitive", "executor"} <= set(parameters(SyncToAsync)),
        dist="asgiref",
        internal="SyncToAsync.thread_handler(loop, ...), run in the executor's thread",
        where="core/database.py _InPool",
    )


# --- Django ----------------------------------------------------------------------------------


def test_djangos_session_auth_hash_goes_through_the_underscored_method():
    from django.contrib.auth.base_user import AbstractBaseUser

    contract(
        parameters(AbstractBaseUser._get_session_auth_hash) == ["self", "secret"]
        and "self._get_session_auth_hash(" in inspect.getsource(AbstractBaseUser),
        dist="django",
        internal="AbstractBaseUser._get_session_auth_hash(secret=), behind get_session_auth_hash",
        where="accounts/models.py User._get_session_auth_hash",
    )


def test_djangos_insert_query_compiles_a_rows_insert_without_running_it():
    from django.db.models import Model
    from django.db.models.base import ModelState
    from django.db.models.options import Options
    from django.db.models.sql import InsertQuery
    from django.db.models.sql.compiler import SQLInsertCompiler

    where = "audit/services.py record_created"
    contract(
        parameters(InsertQuery.insert_values)[:3] == ["self", "fields", "objs"]
        and hasattr(InsertQuery, "get_compiler")
        and "def as_sql(self)" in inspect.getsource(SQLInsertCompiler),
        dist="django",
        internal="sql.InsertQuery(model).insert_values(fields, objs) and its compiler's as_sql()",
        where=where,
    )
    contract(
        all(hasattr(Options, name) for name in ("db_returning_fields", "local_concrete_fields")),
        dist="django",
        internal="Options.db_returning_fields and local_concrete_fields",
        where=where,
    )
    state = ModelState()
    contract(
        state.adding is True and state.db is None and "_state" in inspect.getsource(Model),
        dist="django",
        internal="Model._state.adding and _state.db",
        where=f"{where} and _append_on_postgresql",
    )


def test_django_connects_the_two_request_started_receivers_that_asgi_disconnects():
    source = source_without_import("django.db")
    contract(
        "signals.request_started.connect(reset_queries)" in source
        and "signals.request_started.connect(close_old_connections)" in source,
        dist="django",
        internal="django.db connecting reset_queries and close_old_connections to request_started",
        where="config/asgi.py",
    )


def test_djangos_message_middleware_keeps_storage_in_request_messages():
    from django.contrib.messages.middleware import MessageMiddleware
    from django.contrib.messages.storage.base import BaseStorage

    storage = BaseStorage(request=None)
    contract(
        "request._messages = " in inspect.getsource(MessageMiddleware.process_request)
        and storage.used is False
        and storage.added_new is False,
        dist="django",
        internal="request._messages, and the storage's used and added_new",
        where="config/middleware.py MessageMiddleware.response_needs_thread",
    )


def test_djangos_middleware_mixin_records_its_async_mode():
    from django.middleware.csrf import CsrfViewMiddleware

    async def get_response(request):
        return None

    contract(
        CsrfViewMiddleware(get_response).async_mode is True,
        dist="django",
        internal="MiddlewareMixin.async_mode",
        where="config/middleware.py CsrfViewMiddleware.__init__",
    )


def test_djangos_database_wrapper_has_the_lifetime_hooks_the_assistant_pool_sets():
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    connection = connections["default"]
    contract(
        hasattr(connection, "close_at")
        and hasattr(connection, "close_if_unusable_or_obsolete")
        and hasattr(DatabaseWrapper, "pool")
        and "initialized_only" in parameters(connections.all),
        dist="django",
        internal="connection.close_at, close_if_unusable_or_obsolete(), pool and "
        "connections.all(initialized_only=)",
        where="core/database.py _tidy_connections",
    )


# --- WhiteNoise ------------------------------------------------------------------------------


def test_whitenoise_middleware_finds_and_serves_files_through_its_own_methods():
    from whitenoise.middleware import WhiteNoiseMiddleware

    middleware = WhiteNoiseMiddleware(get_response=lambda request: None)
    contract(
        isinstance(middleware.autorefresh, bool)
        and isinstance(middleware.files, dict)
        and parameters(middleware.find_file) == ["url"]
        and parameters(middleware.serve) == ["static_file", "request"],
        dist="whitenoise",
        internal="WhiteNoiseMiddleware.autorefresh, files, find_file(url), serve(file, request)",
        where="config/middleware.py WhiteNoiseMiddleware.__acall__",
    )


# --- channels_redis --------------------------------------------------------------------------


def test_channels_redis_keys_a_group_with_its_underscored_group_key():
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:9"], prefix="wg")
    contract(
        layer._group_key("session.x") == b"wg:group:session.x",
        dist="channels-redis",
        internal="RedisChannelLayer._group_key (a group's sorted set)",
        where="core/groups.py _pipelines",
    )


def test_channels_redis_joins_with_zadd_and_expire_and_leaves_with_zrem_on_the_groups_shard():
    from channels_redis.core import RedisChannelLayer

    add = inspect.getsource(RedisChannelLayer.group_add)
    discard = inspect.getsource(RedisChannelLayer.group_discard)
    shard = "connection = self.connection(self.consistent_hash(group))"
    contract(
        shard in add
        and "await connection.zadd(group_key, {channel: time.time()})" in add
        and "await connection.expire(group_key, self.group_expiry)" in add
        and shard in discard
        and "await connection.zrem(key, channel)" in discard,
        dist="channels-redis",
        internal="group_add's ZADD and EXPIRE and group_discard's ZREM, on connection("
        "consistent_hash(group)), with group_expiry",
        where="core/groups.py _groups_add and _groups_discard (the same commands, pipelined)",
    )


# --- psycopg_pool ----------------------------------------------------------------------------


def test_psycopg_pool_keeps_the_check_it_is_given_as_check_and_runs_it_on_every_lending():
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool("", open=False, check=ConnectionPool.check_connection)
    contract(
        pool._check is ConnectionPool.check_connection
        and "self._check(conn)" in inspect.getsource(ConnectionPool._check_connection)
        and "self._check_connection(conn)"
        in inspect.getsource(ConnectionPool._getconn_with_check_loop),
        dist="psycopg-pool",
        internal="ConnectionPool._check (check=), run before getconn lends a connection",
        where="core/database.py _pools_check_unless_fresh",
    )


# --- When an internal is missing: the plain, documented path ---------------------------------


class _Protocol:
    """What DaphneBrowser needs of a protocol, and nothing of Daphne's queue."""

    STATE_OPEN = 3
    state = 3

    def __init__(self, transport):
        self.transport = transport


async def test_a_transport_without_twisteds_buffer_bookkeeping_is_written_through_write():
    from twisted.internet import tcp

    from vnc_proxy.browser import DaphneBrowser

    written = []

    class Transport(tcp.Connection):
        # No FileDescriptor.__init__: none of _tempDataLen, offset's instance value, dataBuffer.
        def __init__(self, sock):
            self.socket = sock

        def write(self, data):
            written.append(bytes(data))

        def registerProducer(self, producer, streaming):
            pass

    assert not hasattr(tcp.Connection, "_tempDataLen")  # set by __init__, which Transport skips
    ours, theirs = socket.socketpair()
    try:
        sent = []

        async def send(message):
            sent.append(message)

        browser = DaphneBrowser(None, send, _Protocol(Transport(ours)))
        await browser.accept(None)
        assert browser._socket is None  # the direct write is off
        assert browser.write_now(b"frame") is True
        assert b"".join(written) == b"\x82\x05frame"
    finally:
        ours.close()
        theirs.close()


def test_a_protocol_without_daphnes_application_queue_is_not_diverted():
    from vnc_proxy.browser import DaphneBrowser

    protocol = _Protocol(transport=None)
    reader = protocol.dataReceived = object()
    browser = DaphneBrowser(None, None, protocol)
    browser.divert(lambda data: pytest.fail("diverted without Daphne's queue"))
    assert protocol.dataReceived is reader  # autobahn's own parser, messages by receive()


async def test_a_stream_reader_without_buffer_counts_an_idle_connection_as_readable():
    from streaming.providers.network import AsyncioStream

    class Writer:
        class transport:
            @staticmethod
            def is_closing():
                return False

    reader = asyncio.StreamReader()
    stream = AsyncioStream(reader, Writer())
    assert stream.get_extra_info("is_readable") is False
    del reader._buffer
    # httpcore then opens a new connection rather than reuse one it cannot see into.
    assert stream.get_extra_info("is_readable") is True


async def test_a_channel_layer_other_than_channels_redis_is_joined_and_left_through_its_methods():
    from channels.layers import InMemoryChannelLayer

    from core.groups import _groups_add, _groups_discard, _pipelines

    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    assert _pipelines(layer, [("session.x", channel)]) is None
    await _groups_add(layer, [("session.x", channel)])
    await layer.group_send("session.x", {"type": "test.message"})
    assert (await layer.receive(channel))["type"] == "test.message"
    await _groups_discard(layer, [("session.x", channel)])
    assert "session.x" not in layer.groups


def test_an_autobahn_without_its_pformat_name_is_left_as_it_is(monkeypatch):
    from autobahn.websocket import protocol

    from core.serving import autobahn_debug_dumps_unformatted

    monkeypatch.delattr(protocol, "pformat")
    autobahn_debug_dumps_unformatted()
    assert not hasattr(protocol, "pformat")
