"""Flow control for proxied HTTP under Daphne: every private Daphne and Twisted access of the
web-app proxy, in one place (asserted in tests/test_upstream_contracts.py).

Plain ASGI cannot give a proxy flow control under Daphne:
- responses: Daphne writes every `http.response.body` straight to Twisted and returns, so a
  slow browser downloading a large file makes the proxy hold everything the app sent;
- request bodies: Twisted reads the whole body before Daphne starts the application (in memory
  up to 100 KB, in a temporary file above), and Daphne then reads that whole file into the
  application's queue at once.

Under Daphne, a body larger than its request's limit is refused with 413 as soon as its
Content-Length is known (or, chunked, once that much has arrived), before Twisted spools it: a
class-level hook on Daphne's WebRequest (`install_body_limit`), for every request the process
serves, with the limit decided on the request's head (`request_head`: the app's limit only for a
request to an app with a signed app cookie, app_proxy/proxy.py `_body_limit`); a body that
arrives too slowly is answered 408 and its connection closed (`_watch_body`).

So under Daphne the proxy also holds the Twisted Request behind `send` (Daphne's send is
`functools.partial(server.handle_reply, request)`) and uses it for two things only:
- a push producer registered on the Request (Twisted's public `registerProducer`), which
  Twisted pauses while more than the transport's buffer waits for the browser: `send` of the
  next chunk then waits until it has drained;
- the request body: taken from the Request before Daphne reads it (the application is called,
  synchronously, before Daphne's read loop runs) and read in bounded chunks as the upstream
  takes them, never whole in memory. Daphne's loop then finds an empty body.

Anywhere else (another ASGI server, a missing hook), `plain` flow: ASGI messages only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import sys
from collections.abc import Awaitable, Callable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from core.exceptions import error_body

logger = logging.getLogger(__name__)

WRITE_BUFFER = 512 * 1024  # bytes waiting for the browser before the app's body is paused
BODY_CHUNK = 256 * 1024  # bytes read from a spooled request body at a time


_REQUIRED = ("registerProducer", "unregisterProducer", "content", "channel", "finished")
_request_classes: set[type] = set()  # classes whose instances had all of _REQUIRED


def daphne_request(send):
    """The Twisted Request behind Daphne's `send` for an HTTP request, else None."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    request = send.args[0]
    if type(request) in _request_classes:  # checked once per class, not on every request
        return request
    if all(hasattr(request, name) for name in _REQUIRED):
        _request_classes.add(type(request))
        return request
    return None


class _Discard:
    """Where the rest of a refused body goes: nowhere."""

    closed = False

    def write(self, data) -> None:
        return None

    def seek(self, *args) -> int:
        return 0

    def read(self, *args) -> bytes:
        return b""

    def tell(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


def _refuse_too_large(request, limit: int) -> None:
    message = f"The request body is larger than {limit} bytes."
    _refuse_body(request, b"413 Request Entity Too Large", message, "too_large")


def _refuse_body(request, status: bytes, message: str, code: str) -> None:
    """Answer (the one error shape) and close the connection of a request whose body is not
    wanted; what was spooled of it is let go, the rest never read."""
    body = json.dumps(error_body(message, code)).encode()
    request.workgate_refused = True
    content, request.content = getattr(request, "content", None), _Discard()
    if content is not None:
        with contextlib.suppress(Exception):
            content.close()  # a temporary file: its disk space is given back now
    channel = getattr(request, "channel", None)
    if channel is None or channel.transport is None:
        return
    channel.transport.write(
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
        b"Cache-Control: no-store\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    channel.loseConnection()  # Twisted stops reading the body: it is never spooled


def request_head(request) -> tuple[bytes, bytes, bytes]:
    """(Host, request target, Cookie) of a Twisted Request whose headers have arrived and whose
    body has not: the target is still on the channel then (HTTPChannel._path, until the body is
    complete; asserted in tests/test_upstream_contracts.py), b"" where unknown."""
    headers = request.requestHeaders
    host = headers.getRawHeaders(b"host") or (b"",)
    cookies = headers.getRawHeaders(b"cookie") or ()
    target = getattr(request.channel, "_path", b"")
    return host[0], target if isinstance(target, bytes) else b"", b"; ".join(cookies)


MIN_BODY_RATE = 16 * 1024  # bytes a second a body must average over each window, at least


def _watch_body(request, window: float) -> None:
    """Every `window` seconds until the body is whole, it must have grown by MIN_BODY_RATE *
    window bytes, or the request is answered 408 and its connection closed: a body sent a byte
    at a time holds a connection and its spooled file for no longer than that."""
    from twisted.internet import reactor
    from twisted.web.http import Request

    request.workgate_checked = 0

    def check() -> None:
        if request.method is not Request.method or getattr(request, "workgate_refused", False):
            return  # whole (requestReceived set the method), or already refused
        if getattr(request, "channel", None) is None:
            return  # the browser left
        received = getattr(request, "workgate_received", 0)
        if received - request.workgate_checked < MIN_BODY_RATE * window:
            message = "The request body arrived too slowly."
            _refuse_body(request, b"408 Request Timeout", message, "body_too_slow")
            return
        request.workgate_checked = received
        reactor.callLater(window, check)

    reactor.callLater(window, check)


def install_body_limit(
    limit: Callable[[object], int], body_window: Callable[[], float] | None = None
) -> None:
    """Refuse request bodies above `limit(request)` bytes (decided on the request's head, see
    `request_head`) before Twisted spools them, and bodies slower than MIN_BODY_RATE over each
    `body_window()` seconds (once per process; nothing when Daphne is not importable or its
    Request is not as known)."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:
        return
    if "workgate_wrapped" in vars(WebRequest):
        return
    if not all(hasattr(WebRequest, name) for name in ("gotLength", "handleContentChunk")):
        logger.warning("Daphne's WebRequest has no gotLength/handleContentChunk: no early 413")
        return
    got_length, content_chunk = WebRequest.gotLength, WebRequest.handleContentChunk

    def gotLength(self, length):
        self.workgate_received = 0
        if length == 0:
            self.workgate_limit = 0
            got_length(self, length)
            return
        self.workgate_limit = allowed = limit(self)
        if length is not None and length > allowed:
            _refuse_too_large(self, allowed)
            return
        got_length(self, length)
        if body_window is not None:
            _watch_body(self, body_window())

    def handleContentChunk(self, data):
        if getattr(self, "workgate_refused", False):
            return
        self.workgate_received = getattr(self, "workgate_received", 0) + len(data)
        allowed = getattr(self, "workgate_limit", 0)
        if self.workgate_received > allowed:
            _refuse_too_large(self, allowed)
            return
        content_chunk(self, data)

    WebRequest.workgate_wrapped = {"gotLength": got_length, "handleContentChunk": content_chunk}
    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk


def quiet_twisted_access_log() -> None:
    """Daphne writes its own access log (daphne.access, with tickets redacted by
    vnc_proxy/access_log.py); the Twisted HTTPFactory under it also formats a combined-format
    line for every request (Twisted's `HTTPFactory.log`, its documented hook for that line),
    which Daphne's default verbosity sends nowhere and -v2 sends to the log unredacted, query
    strings and tickets included. That second line is no longer made: ~4% of the CPU of each
    proxied small answer (cProfile under wrk). Once per process; nothing when Daphne is not
    importable or already defines its own."""
    try:
        from daphne.http_protocol import HTTPFactory
    except ImportError:
        return
    if "log" in vars(HTTPFactory):
        return

    def log(self, request) -> None:
        return None

    HTTPFactory.log = log


def abort(send) -> bool:
    """Drop the browser's connection of a response cut short (the app failed mid-answer), so
    the browser sees an error rather than a complete-looking body; False when not possible."""
    request = daphne_request(send)
    transport = getattr(getattr(request, "channel", None), "transport", None)
    if transport is None:
        return False
    transport.abortConnection()
    return True


def on_shutdown(close: Callable[[], Awaitable[None]]) -> None:
    """Under Daphne, await `close()` before its reactor stops (Twisted's public system-event
    triggers), so pooled upstream connections are closed, not left to the garbage collector's
    warnings; nothing when no reactor runs this process (it is never imported from here)."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not getattr(reactor, "running", False):
        return
    from twisted.internet.defer import Deferred

    def before_shutdown():
        return Deferred.fromFuture(asyncio.ensure_future(close()))

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)


REFUSED = object()  # take_body's answer for a request already refused with 413


def take_body(send):
    """Take the spooled request body (a file) from Daphne's Request before Daphne reads it into
    the application's queue; None when not under Daphne as this module knows it. Must be called
    synchronously from the application's call, before its coroutine first runs."""
    request = daphne_request(send)
    if request is None:
        return None
    if getattr(request, "workgate_refused", False):
        return REFUSED
    content = request.content
    if content is None or getattr(content, "closed", True):
        return None
    content.seek(0, io.SEEK_END)
    size = content.tell()
    content.seek(0)
    # Daphne reads this next, finds it empty, and queues one empty, final http.request.
    request.content = io.BytesIO()
    return SpooledBody(content, size)


class SpooledBody:
    """A request body Twisted has spooled, read in bounded chunks as the upstream takes them."""

    def __init__(self, content, size: int):
        self.content = content
        self.size = size

    async def chunks(self):
        try:
            while chunk := self.content.read(BODY_CHUNK):
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.content.close()


@implementer(IPushProducer)
class ResponseFlow:
    """Registered on the Request as a push producer: `drained()` waits while Twisted has asked
    it to pause (the browser is behind), and returns at once otherwise."""

    def __init__(self, request):
        self._request = request
        self._paused: asyncio.Future | None = None
        self.gone = False

    @classmethod
    def attach(cls, send) -> ResponseFlow | None:
        request = daphne_request(send)
        if request is None or request.finished or request.channel is None:
            return None
        flow = cls(request)
        try:
            transport = request.channel.transport
            if transport is not None and getattr(transport, "bufferSize", 0) < WRITE_BUFFER:
                transport.bufferSize = WRITE_BUFFER
            request.registerProducer(flow, True)
        except Exception:
            logger.warning("no flow control for a proxied response", exc_info=True)
            return None
        return flow

    async def drained(self) -> None:
        paused = self._paused
        if paused is not None:
            await paused

    def detach(self) -> None:
        """Before the last body message: Twisted must not keep a producer past the response."""
        self.resumeProducing()
        request = self._request
        if not request.finished and request.channel is not None:
            with contextlib.suppress(Exception):
                request.unregisterProducer()

    # IPushProducer: Twisted calls these about the browser's write buffer.

    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = asyncio.get_running_loop().create_future()

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def stopProducing(self) -> None:
        self.gone = True
        self.resumeProducing()
