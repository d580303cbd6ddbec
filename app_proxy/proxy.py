"""The web-app proxy (issue 21): the ASGI application that moves an app's HTTP and WebSocket
traffic between the browser and the upstream pinned at launch.

`AppRouter` sits in front of the gateway (config/asgi.py). A Host under WORKGATE_APPS_DOMAIN is
an app's own origin ("origin" mode: every name there is answered here, never by Django); a path
`/apps/<runtime-id>/...` on the gateway's host is an app under a prefix ("prefix" mode: the
prefix is stripped before the upstream, sent as X-Forwarded-Prefix, and put back on Location).
Everything else, lifespan included, goes to the gateway unchanged.

Per request: `/.workgate/enter?ticket=` spends an app ticket for the app-session cookie
(admission.enter) and nothing else under `/.workgate/` is ever proxied; every other request is
admitted by its cookie (admission.admit: a per-process cache, no database on a hit), checked
(Origin, size), and streamed both ways: the body is pulled from the browser as the upstream
takes it, the answer is passed on chunk by chunk, and under Daphne `send` waits while the
browser is behind (app_proxy/daphne.py). What the upstream sees: no hop-by-hop headers, none of
the gateway's cookies or tokens, the identity assertion, the workspace's credential if it has
one, X-Forwarded-* set here. WebSockets are passed through (subprotocols included) with flow
control both ways and are closed when the session stops or the account signs out everywhere
(core/groups.py, as the desktop relay is); long answers (SSE) end then too, by re-admission.

One line per request goes to the `workgate.app_access` logger; never a cookie, a ticket, the
assertion or the credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import posixpath
import re
import time
from urllib.parse import quote, unquote

import aiohttp
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from yarl import URL

from accounts.connections import ACCOUNT_SIGNED_OUT, account_group
from app_proxy import admission, origins, upstreams
from app_proxy.admission import Admission, AppRefused
from app_proxy.daphne import (
    REFUSED,
    ResponseFlow,
    abort,
    install_body_limit,
    request_head,
    take_body,
)
from core.exceptions import error_body
from core.groups import Membership
from core.network import client_from_scope, client_is_tunnelled
from sessions_app.models import SESSION_ENDED, session_group
from vnc_proxy.browser import browser_for
from vnc_proxy.close_codes import CloseCode

access_log = logging.getLogger("workgate.app_access")
logger = logging.getLogger(__name__)

# Hop-by-hop (RFC 9110 7.6.1) and what the proxy sets or must never pass on.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_NOT_TO_APP = _HOP_BY_HOP | {
    b"expect",  # Daphne answered 100-continue itself
    b"host",
    b"origin",
    b"cookie",
    b"authorization",  # the gateway's own tokens
    b"x-access-token",
    b"x-workgate-assertion",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-prefix",
    b"x-forwarded-port",
    b"x-real-ip",
    b"forwarded",
}
_NOT_TO_APP_WS = _NOT_TO_APP | {
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
    b"sec-websocket-accept",
    b"user-agent",  # websockets sends the browser's, below
}
_NOT_TO_BROWSER = _HOP_BY_HOP
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_OTHER_SITES = frozenset({b"same-site", b"cross-site"})  # Sec-Fetch-Site of another origin's page
_GATEWAY_COOKIE_PREFIXES = ("__host-workgate", "__secure-workgate")
_DOMAIN_ATTRIBUTE = re.compile(r";\s*domain\s*=[^;]*", re.IGNORECASE)
_PATH_ATTRIBUTE = re.compile(r";\s*path\s*=\s*([^;]*)", re.IGNORECASE)

RECHECK_AFTER = 2.0  # seconds an answer may run before it is re-admitted periodically
RECHECK_EVERY = 2.0  # seconds between re-admissions of a long answer (SSE) or a WebSocket
BYTES_EVERY = 30.0  # seconds between byte reports of an open WebSocket


def _gateway_cookie_names() -> frozenset[str]:
    return _lowered(settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME)


@functools.cache
def _lowered(*names: str) -> frozenset[str]:
    return frozenset(name.lower() for name in names)


def _header(headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _cookie_value(cookie_header: bytes | None, name: str) -> str | None:
    if not cookie_header:
        return None
    prefix = name + "="
    for part in cookie_header.decode("latin-1").split(";"):
        part = part.strip()
        if part.startswith(prefix):
            return part[len(prefix) :]
    return None


def _strip_cookies(cookie_header: bytes, gateway_names: frozenset[str]) -> str:
    """The Cookie header without the app-session cookies and the gateway's own cookies."""
    text = cookie_header.decode("latin-1")
    lowered = text.lower()
    if "workgate" not in lowered and not any(name in lowered for name in gateway_names):
        return text
    kept = []
    for part in text.split(";"):
        name = part.split("=", 1)[0].strip().lower()
        if name in gateway_names or name.startswith(_GATEWAY_COOKIE_PREFIXES):
            continue
        kept.append(part.strip())
    return "; ".join(part for part in kept if part)


_SLASHES = re.compile(r"[/\\]+")


def _reserved(path: str) -> bool:
    """Whether `path` (decoded) is under /.workgate/ however it is spelled: in any case, with
    doubled slashes or backslashes, or dot segments an upstream might resolve."""
    path = path.lower()
    if ".." in path or "//" in path or "/./" in path or "\\" in path:
        path = posixpath.normpath(_SLASHES.sub("/", path))
    return path == "/.workgate" or path.startswith(admission.RESERVED_PREFIX)


def _climbs(path: str) -> bool:
    """Whether dot segments in `path` (decoded, so %2e and %2f are spelled out; and decoded
    again while it still decodes, for an upstream that decodes twice) climb above "/": joined
    to the workspace url's base path, the upstream would resolve them outside it. Backslashes
    count as slashes (some servers take them as such)."""
    if "%" in path:
        again = unquote(path)
        if again != path and _climbs(again):
            return True
    if ".." not in path:
        return False
    depth = 0
    for segment in _SLASHES.split(path):
        if segment == "..":
            depth -= 1
            if depth < 0:
                return True
        elif segment and segment != ".":
            depth += 1
    return False


class _Request:
    """What one request to an app is, worked out once from its scope."""

    __slots__ = (
        "client",
        "cookie_header",
        "host",
        "mode",
        "origin_header",
        "path",
        "prefix",
        "public_origin",
        "raw_path",
        "runtime_id",
        "scope",
    )

    def __init__(self, scope: dict, mode: str, runtime_id: str, path: str):
        self.scope = scope
        self.mode = mode
        self.runtime_id = runtime_id
        self.path = path  # below the prefix in prefix mode, decoded
        headers = scope["headers"]
        self.host = (_header(headers, b"host") or b"").decode("latin-1")
        self.client = client_from_scope(scope)
        origin = _header(headers, b"origin")
        self.origin_header = origin.decode("latin-1") if origin is not None else None
        self.cookie_header = _header(headers, b"cookie")
        self.prefix = f"/apps/{runtime_id}" if mode == "prefix" else ""
        raw = scope.get("raw_path") or b""
        if self.prefix:
            prefix = self.prefix.encode()
            raw = raw[len(prefix) :] or b"/" if raw.startswith(prefix) else b""
        # As the browser encoded it; rebuilt from the decoded path where that is not plain.
        # Anything not starting with "/" (`@host:port/x`, or `%2F@host...` right after the
        # prefix) is refused as a bad target (`target_ok`): glued after the upstream's origin,
        # it would name another host.
        self.raw_path = raw.decode("latin-1") if raw else quote(path, safe="/:@!$&'()*+,;=~-._")
        if mode == "origin":
            self.public_origin = origins.app_origin(runtime_id)
        else:
            scheme = "https" if self.client.scheme in ("https", "wss") else "http"
            self.public_origin = f"{scheme}://{self.host}"

    def cookie(self) -> str | None:
        return _cookie_value(self.cookie_header, admission.cookie_name(self.mode, self.runtime_id))

    def origin_ok(self) -> bool:
        return self.origin_header is None or self.origin_header == self.public_origin

    def host_ok(self) -> bool:
        """In prefix mode, whether Host is one of the gateway's (ALLOWED_HOSTS, as Django checks
        it for its own requests): the app receives it as X-Forwarded-Host and its redirects are
        rewritten onto it, so a poisoned Host would build the app's links elsewhere. An app's
        own origin was routed by its Host already."""
        if not self.prefix:
            return True
        domain, _ = split_domain_port(self.host)
        allowed = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed:
            allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's get_host
        return bool(domain) and validate_host(domain, allowed)

    def target_ok(self) -> bool:
        """Whether the request target is a path ("/..." as sent, and a literal "/" right after
        the prefix in prefix mode)."""
        return self.raw_path.startswith("/")

    def upstream_url(self, upstream, *, websocket: bool = False) -> URL:
        """Built from the pinned origin's parts and the path and query (never by gluing strings:
        the request cannot name another host)."""
        query = (self.scope.get("query_string") or b"").decode("latin-1")
        return upstreams.url_for(
            upstream, upstream.base_path + self.raw_path, query, websocket=websocket
        )

    def forwarded(self, policy: frozenset[bytes]) -> list[tuple[str, str]]:
        """The headers the upstream receives."""
        headers = []
        named = None
        for name, value in self.scope["headers"]:
            if name in policy:
                if name == b"connection":
                    named = value
                elif name == b"cookie":
                    cookies = _strip_cookies(value, _gateway_cookie_names())
                    if cookies:
                        headers.append(("Cookie", cookies))
                continue
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if named is not None:  # Connection names more hop-by-hop headers
            tokens = {token.strip().lower() for token in named.decode("latin-1").split(",")}
            headers = [(name, value) for name, value in headers if name.lower() not in tokens]
        scheme = self.public_origin.split(":", 1)[0]
        headers += [
            ("X-Forwarded-For", self.client.ip),
            ("X-Forwarded-Proto", scheme),
            ("X-Forwarded-Host", self.host),
        ]
        if self.prefix:
            headers.append(("X-Forwarded-Prefix", self.prefix))
        return headers

    def rewrite_location(self, location: str, upstream) -> str:
        """A Location naming the upstream's own origin (or an absolute path on it) names the
        app's origin, under its prefix, instead."""
        origin = upstream.origin
        if location[: len(origin)].lower() == origin.lower() and (
            len(location) == len(origin) or location[len(origin)] in "/?#"
        ):
            path, absolute = location[len(origin) :] or "/", True
        elif location.startswith("/") and not location.startswith("//"):
            path, absolute = location, False
        else:
            return location
        base = upstream.base_path
        if base and (path == base or path.startswith((base + "/", base + "?"))):
            path = path[len(base) :] or "/"
        path = self.prefix + path
        return self.public_origin + path if absolute else path

    def rewrite_set_cookie(self, value: str) -> str | None:
        """None (dropped) for a cookie named as one of the gateway's; otherwise host-only on the
        app's origin (no Domain) and, in prefix mode, with exactly one Path: the app's last one
        (the one browsers obey, RFC 6265 5.3) under the prefix, at the end."""
        name, equals, _ = value.split(";", 1)[0].partition("=")
        name = name.strip().lower() if equals else ""
        if name in _gateway_cookie_names() or name.startswith(_GATEWAY_COOKIE_PREFIXES):
            return None
        value = _DOMAIN_ATTRIBUTE.sub("", value)
        if self.prefix:
            paths = _PATH_ATTRIBUTE.findall(value)
            path = paths[-1].strip() if paths else "/"
            if not path.startswith("/"):
                path = "/"
            value = _PATH_ATTRIBUTE.sub("", value) + f"; Path={self.prefix}{path}"
        return value


def _tunnel_refusal(request: _Request, admitted: Admission) -> AppRefused | None:
    """For a workspace that asks for the tunnel, every request from outside it is refused, with
    the client's address as X-Forwarded-For gives it (the admission says; no database)."""
    if admitted.requires_tunnel and not client_is_tunnelled(request.client.ip or None):
        return AppRefused(403, "tunnel_required", "This app requires an encrypted tunnel.")
    return None


def _error_response(status: int, code: str, message: str) -> tuple[dict, dict]:
    body = json.dumps(error_body(message, code)).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"referrer-policy", b"no-referrer"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class AppRouter:
    """The gateway's ASGI entry: apps by Host or prefix, everything else to `gateway`.

    Called synchronously by the server (its call returns the coroutine to run): under Daphne
    that is before Daphne reads a request body into the application's queue, which is when
    `take_body` must take it."""

    _asgi_single_callable = True  # asgiref: a plain (not async) __call__ is still ASGI 3

    def __init__(self, gateway):
        self.gateway = gateway
        install_body_limit(_body_limit, _body_window)

    def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            route = self.route(scope)
            if route is not None:
                mode, runtime_id, path = route
                if kind == "http":
                    body = take_body(send)
                    if body is REFUSED:  # answered 413 already, and the connection closed
                        return _nothing()
                    return _proxy_http(scope, receive, send, mode, runtime_id, path, body)
                return _proxy_websocket(scope, receive, send, mode, runtime_id, path)
        return self.gateway(scope, receive, send)

    @staticmethod
    def route(scope) -> tuple[str, str, str] | None:
        """(mode, runtime id or "" for a name under the apps domain naming none, the path the
        app sees) for a request to an app; None for the gateway's own."""
        host = _header(scope["headers"], b"host")
        if host is not None:
            runtime_id = origins.runtime_from_host(host.decode("latin-1"))
            if runtime_id is not None:
                return "origin", runtime_id, scope["path"]
        path = scope["path"]
        if path.startswith("/apps/"):
            found = origins.runtime_from_prefix(path)
            if found is not None:
                return "prefix", found[0], found[1]
        return None


async def _nothing() -> None:
    return None


def _body_limit(twisted_request) -> int:
    """The largest body a request may send, decided on its head before Twisted spools any of
    it: WORKGATE_APP_MAX_REQUEST_BODY only for a request routed to an app (by Host or prefix)
    whose Cookie carries that app's cookie signed by this gateway for that runtime, less than a
    grant's longest life ago (a signature check, no database); the gateway's own limit for
    every other request, so no anonymous client makes the gateway spool a large body."""
    gateway = settings.WORKGATE_MAX_REQUEST_BODY
    host, target, cookies = request_head(twisted_request)
    if b"workgate-app" not in cookies:
        return gateway
    runtime_id = origins.runtime_from_host(host.decode("latin-1"))
    if runtime_id:
        mode = "origin"
    else:
        found = origins.runtime_from_prefix(target.split(b"?", 1)[0].decode("latin-1"))
        if found is None:
            return gateway
        mode, runtime_id = "prefix", found[0]
    app = settings.WORKGATE_APP_MAX_REQUEST_BODY
    value = _cookie_value(cookies, admission.cookie_name(mode, runtime_id))
    return app if admission.cookie_is_signed(value, runtime_id) else min(gateway, app)


def _body_window() -> float:
    return float(settings.WORKGATE_APP_BODY_TIMEOUT)


class _Exchange:
    """One HTTP request through the proxy: counters and the access-log line."""

    __slots__ = (
        "admission",
        "method",
        "reported",
        "request",
        "started",
        "status",
        "to_app",
        "to_browser",
    )

    def __init__(self, request: _Request, method: str):
        self.request = request
        self.method = method
        self.started = time.perf_counter()
        self.status = 0
        self.to_app = 0
        self.to_browser = 0
        self.admission: Admission | None = None
        self.reported = (0, 0)  # (to_app, to_browser) already given to record_bytes

    async def record_bytes(self) -> None:
        to_app, to_browser = self.to_app, self.to_browser
        if self.admission is None or (to_app, to_browser) == self.reported:
            return
        reported, self.reported = self.reported, (to_app, to_browser)
        with contextlib.suppress(Exception):  # counters are best effort; never fail a request
            await admission.record_bytes(
                self.admission.grant_id,
                to_app=to_app - reported[0],
                to_browser=to_browser - reported[1],
            )

    def log(self) -> None:
        admitted = self.admission
        access_log.info(
            "%s %s%s %d %d %d %.1fms user=%s runtime=%s",
            self.method,
            self.request.prefix,
            self.request.path,
            self.status,
            self.to_browser,
            self.to_app,
            (time.perf_counter() - self.started) * 1000,
            admitted.user_id if admitted else "-",
            self.request.runtime_id or "-",
        )


async def _proxy_http(scope, receive, send, mode, runtime_id, path, body) -> None:
    request = _Request(scope, mode, runtime_id, path)
    exchange = _Exchange(request, scope["method"])
    try:
        await _http(exchange, receive, send, body)
    except AppRefused as refused:
        if exchange.status:  # the answer had started (a long one whose grant ended): it ends
            await send({"type": "http.response.body", "body": b""})
            return
        exchange.status = refused.status
        start, end = _error_response(refused.status, refused.code, refused.message)
        await send(start)
        await send(end)
    finally:
        if body is not None:
            body.close()
        exchange.log()


async def _http(exchange: _Exchange, receive, send, body) -> None:
    request = exchange.request
    if not request.runtime_id:
        raise AppRefused(404, "not_found", "No app is reached at this address.")
    if not request.host_ok():
        raise AppRefused(400, "bad_request", "This host is not one of the gateway's.")
    if not request.target_ok():
        raise AppRefused(400, "bad_request", "The request target is not a path.")
    if _climbs(request.path):
        raise AppRefused(400, "bad_request", "The path climbs above the app's root.")
    if request.prefix and _header(request.scope["headers"], b"service-worker") is not None:
        # A worker registered on the gateway's origin would outlive the app session.
        raise AppRefused(403, "service_worker_refused", "An app under a prefix has no workers.")
    if _reserved(request.path):
        if request.path == admission.ENTER_PATH:
            await _enter(exchange, send)
            return
        raise AppRefused(404, "not_found", "Not found.")
    headers = request.scope["headers"]
    if _header(headers, b"sec-fetch-site") in _OTHER_SITES and (
        _header(headers, b"sec-fetch-mode") != b"navigate"
    ):
        # Every <runtime-id>.<apps domain> is one site: another app's page would send this app's
        # SameSite=Lax cookie along with its <img>, <script> or no-cors fetch.
        raise AppRefused(403, "cross_site_refused", "Another site's page may not send this.")
    limit = settings.WORKGATE_APP_MAX_REQUEST_BODY
    length = _header(headers, b"content-length")
    try:
        declared = int(length) if length is not None else None
    except ValueError:
        raise AppRefused(400, "invalid", "Content-Length is not a number.") from None
    if (declared is not None and declared > limit) or (body is not None and body.size > limit):
        raise AppRefused(413, "too_large", f"The request body is larger than {limit} bytes.")
    admitted = exchange.admission = await admission.admit(
        mode=request.mode, runtime_id=request.runtime_id, cookie_value=request.cookie()
    )
    refused = _tunnel_refusal(request, admitted)
    if refused is not None:
        raise refused
    method = exchange.method
    if method not in _SAFE_METHODS and not request.origin_ok():
        raise AppRefused(403, "origin_not_allowed", "This origin may not send this request.")
    upstream = admitted.upstream
    forwarded = request.forwarded(_NOT_TO_APP)
    if request.origin_header is not None:
        forwarded.append(("Origin", upstream.origin))
    forwarded.append(("Host", upstream.origin.split("://", 1)[1]))
    forwarded.append(("X-Workgate-Assertion", admitted.assertion))
    if upstream.credential_header:
        forwarded.append((upstream.credential_header, upstream.credential))

    has_body = (declared or 0) > 0 or _header(headers, b"transfer-encoding") is not None
    data = None
    if body is not None:
        if body.size or has_body:
            data = _counted(exchange, body.chunks())
    elif has_body:
        data = _received(exchange, receive, limit)
    url = request.upstream_url(upstream)
    try:
        async with upstreams.request(
            upstream,
            admitted.user_id,
            method,
            url,
            headers=forwarded,
            data=data,
            allow_redirects=False,
            chunked=None,
            compress=None,
        ) as response:
            await _answer(exchange, response, send)
    except AppRefused:
        raise
    except upstreams.NotPinned:  # never dialled: the target named another host
        raise AppRefused(400, "bad_request", "The request target is not a path.") from None
    except upstreams.Busy:
        message = "Too many requests to this app at once; try again when one has ended."
        raise AppRefused(503, "app_busy", message) from None
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        if exchange.status:  # the answer had started: it is cut short, visibly
            _cut_short(send)
            return
        logger.info("app %s timed out: %s", request.runtime_id, type(exc).__name__)
        raise AppRefused(504, "upstream_timeout", "The app did not answer in time.") from None
    except (aiohttp.ClientError, OSError) as exc:
        if exchange.status:
            _cut_short(send)
            return
        logger.info("app %s could not be reached: %s", request.runtime_id, exc)
        raise AppRefused(502, "upstream_unreachable", "The app could not be reached.") from None
    finally:
        await exchange.record_bytes()


def _cut_short(send) -> None:
    if not abort(send):
        raise RuntimeError("the app's answer was cut short")  # the server drops the connection


async def _counted(exchange: _Exchange, chunks):
    async for chunk in chunks:
        exchange.to_app += len(chunk)
        yield chunk


async def _received(exchange: _Exchange, receive, limit: int):
    """The request body as the browser sends it (plain ASGI), refused past the limit."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise OSError("the browser left during its upload")
        chunk = message.get("body", b"")
        if chunk:
            exchange.to_app += len(chunk)
            if exchange.to_app > limit:
                raise AppRefused(
                    413, "too_large", f"The request body is larger than {limit} bytes."
                )
            yield chunk
        if not message.get("more_body", False):
            return


async def _answer(exchange: _Exchange, response: aiohttp.ClientResponse, send) -> None:
    request = exchange.request
    upstream = exchange.admission.upstream
    named = None
    headers = []
    for name, value in response.raw_headers:
        lowered = name.lower()
        if lowered in _NOT_TO_BROWSER:
            if lowered == b"connection":
                named = value
            continue
        if lowered == b"location":
            value = request.rewrite_location(value.decode("latin-1"), upstream).encode("latin-1")
        elif lowered == b"set-cookie":
            rewritten = request.rewrite_set_cookie(value.decode("latin-1"))
            if rewritten is None:
                continue
            value = rewritten.encode("latin-1")
        elif lowered == b"service-worker-allowed" and request.prefix:
            continue  # a worker's scope stays under the prefix (and workers are refused there)
        headers.append((lowered, value))
    if named is not None:
        tokens = {token.strip().lower().encode() for token in named.decode("latin-1").split(",")}
        headers = [(name, value) for name, value in headers if name not in tokens]
    exchange.status = response.status
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    loop = asyncio.get_running_loop()
    recheck_at = loop.time() + RECHECK_AFTER
    content = response.content
    flow = None
    try:
        while True:
            chunk = await _next_chunk(content, exchange, loop, recheck_at)
            if chunk is None:
                recheck_at = loop.time() + RECHECK_EVERY
                continue
            if not chunk:
                break
            exchange.to_browser += len(chunk)
            if content.at_eof():  # the last chunk (a small answer's only one): one write
                if flow is not None:
                    flow, last = None, flow
                    last.detach()  # before the response ends: Twisted keeps no producer
                await send({"type": "http.response.body", "body": chunk})
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if flow is None:
                # A longer answer: from now on, send waits while the browser is behind.
                flow = ResponseFlow.attach(send)
            elif flow.gone:
                return
            else:
                await flow.drained()
    finally:
        if flow is not None:
            flow.detach()
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _next_chunk(content, exchange: _Exchange, loop, recheck_at: float) -> bytes | None:
    """The next chunk of the answer (b"" at its end), or None when it is time to re-admit: a
    long answer (SSE) ends when the grant does (AppRefused out of here)."""
    if content.is_eof():  # all of it has arrived (a small answer): nothing to wait for
        return await content.readany()
    timeout = recheck_at - loop.time()
    if timeout > 0:
        try:
            async with asyncio.timeout(timeout):
                return await content.readany()
        except TimeoutError:
            if content.is_eof():
                return b""
    request = exchange.request
    await admission.admit(
        mode=request.mode, runtime_id=request.runtime_id, cookie_value=request.cookie()
    )
    return None


async def _enter(exchange: _Exchange, send) -> None:
    request = exchange.request
    if exchange.method != "GET":
        raise AppRefused(405, "method_not_allowed", "Open this address with GET.")
    ticket = ""
    query = request.scope.get("query_string", b"").decode("latin-1")
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "ticket":
            ticket = value
            break
    user_agent = (_header(request.scope["headers"], b"user-agent") or b"").decode("latin-1")
    entry = await admission.enter(
        mode=request.mode,
        runtime_id=request.runtime_id,
        ticket=ticket,
        client_ip=request.client.ip or None,
        user_agent=user_agent[:512],
    )
    exchange.admission = entry.admission
    name = admission.cookie_name(request.mode, request.runtime_id)
    path = f"{request.prefix}/" if request.prefix else "/"
    cookie = (
        f"{name}={entry.cookie_value}; Max-Age={entry.max_age}; Path={path}; "
        "HttpOnly; Secure; SameSite=Lax"
    )
    exchange.status = 303
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", path.encode()),
                (b"set-cookie", cookie.encode("latin-1")),
                (b"cache-control", b"no-store"),
                (b"referrer-policy", b"no-referrer"),
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


# --- WebSockets -------------------------------------------------------------------------------


# Closing before accept: Daphne answers the handshake 403 (RFC 6455 1008, policy violation).
REFUSE_BEFORE_ACCEPT = 1008

# How an open WebSocket ends when its re-admission is refused, in the relay's codes (a sign-out
# everywhere is 4411 for an app as for a desktop); anything else: the app session ended.
_CLOSE_FOR_REFUSAL = {
    "signed_out": (CloseCode.SIGNED_OUT, "signed out"),
    "account_disabled": (CloseCode.SIGNED_OUT, "the account is disabled"),
    "app_not_shared": (CloseCode.FORBIDDEN, "the app is no longer shared"),
    "tunnel_required": (CloseCode.FORBIDDEN, "the app requires an encrypted tunnel"),
    "app_wrong_origin": (CloseCode.FORBIDDEN, "another app's session"),
    "app_not_found": (CloseCode.UNKNOWN_WORKSPACE, "no such app here"),
    "app_sign_in_required": (CloseCode.TICKET_INVALID, "open this app from Workgate"),
    "app_signing_key_unset": (CloseCode.UPSTREAM_FAILED, "the app cannot be told who is asking"),
}


def close_for_refusal(refused: AppRefused) -> tuple[int, str]:
    """(close code, reason) for an open WebSocket whose re-admission was refused."""
    return _CLOSE_FOR_REFUSAL.get(refused.code, (CloseCode.SESSION_ENDED, "the app session ended"))


def frame_size(data: str | bytes) -> int:
    """The bytes a frame's payload carries: a text frame's in UTF-8, not its characters."""
    return len(data.encode()) if isinstance(data, str) else len(data)


def _close_code(code: int | None) -> int:
    """A code that may be sent in a close frame (1005, 1006 and 1015 may not)."""
    if code is None or code in (1005, 1006, 1015) or not (1000 <= code < 5000):
        return 1000
    return code


async def _proxy_websocket(scope, receive, send, mode, runtime_id, path) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    request = _Request(scope, mode, runtime_id, path)
    exchange = _Exchange(request, "WEBSOCKET")
    try:
        await _websocket(exchange, receive, send)
    finally:
        exchange.log()


async def _websocket(exchange: _Exchange, receive, send) -> None:
    request = exchange.request
    refuse = {"type": "websocket.close", "code": REFUSE_BEFORE_ACCEPT}
    if not request.runtime_id or _reserved(request.path):
        exchange.status = 404
        await send(refuse)
        return
    if not request.host_ok() or not request.target_ok() or _climbs(request.path):
        exchange.status = 400
        await send(refuse)
        return
    try:
        admitted = exchange.admission = await admission.admit(
            mode=request.mode, runtime_id=request.runtime_id, cookie_value=request.cookie()
        )
    except AppRefused as refused:
        exchange.status = refused.status
        await send(refuse)
        return
    tunnel = _tunnel_refusal(request, admitted)
    if tunnel is not None:
        exchange.status = tunnel.status
        await send(refuse)
        return
    if not request.origin_ok():
        exchange.status = 403
        await send(refuse)
        return
    upstream = admitted.upstream
    headers = request.forwarded(_NOT_TO_APP_WS)
    headers.append(("X-Workgate-Assertion", admitted.assertion))
    if upstream.credential_header:
        headers.append((upstream.credential_header, upstream.credential))
    agent = _header(request.scope["headers"], b"user-agent")
    if agent is not None:
        headers.append(("User-Agent", agent.decode("latin-1")))
    membership = await Membership.join(
        (session_group(admitted.session_id), account_group(admitted.user_id))
    )
    try:
        try:
            app = await upstreams.ws_connect(
                upstream,
                request.upstream_url(upstream, websocket=True),
                headers=headers,
                subprotocols=list(request.scope.get("subprotocols") or ()),
                origin=upstream.origin if request.origin_header is not None else None,
            )
        except InvalidStatus as exc:
            exchange.status = exc.response.status_code
            await send(refuse)
            return
        except (OSError, TimeoutError, WebSocketException, upstreams.NotPinned) as exc:
            logger.info("app %s: no WebSocket upstream: %s", request.runtime_id, exc)
            exchange.status = 502
            await send(refuse)
            return
        try:
            if membership is not None:
                await membership.joining  # a stop from now on reaches this connection
            browser = browser_for(receive, send)
            await browser.accept(app.subprotocol)
            exchange.status = 101
            await _relay(exchange, browser, app, membership)
        finally:
            await app.close()
    finally:
        if membership is not None:
            await membership.leave()
        await exchange.record_bytes()


async def _relay(exchange: _Exchange, browser, app, membership) -> None:
    async def browser_to_app() -> None:
        transport = app.transport
        while True:
            message = await browser.receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                await app.close(_close_code(message.get("code")))
                return
            if kind != "websocket.receive":
                continue
            data = message.get("bytes")
            if data is None:
                data = message.get("text") or ""
            exchange.to_app += frame_size(data)
            if transport.get_write_buffer_size() > upstreams.WS_WRITE_LIMIT:
                browser.pause_reading()  # the app is behind: stop reading from the browser
                try:
                    await app.send(data)
                finally:
                    browser.resume_reading()
            else:
                await app.send(data)

    async def app_to_browser() -> None:
        try:
            async for data in app:
                exchange.to_browser += frame_size(data)
                if isinstance(data, str):
                    await browser.send_text(data)
                else:
                    await browser.send(data)
                if browser.closed:  # the browser is closing: what the app sends is not for it
                    return
        except ConnectionClosed:
            pass
        close = app.close_rcvd
        await browser.close(
            _close_code(close.code if close else None), close.reason if close else ""
        )

    async def control() -> None:
        request = exchange.request
        loop = asyncio.get_running_loop()
        next_bytes = loop.time() + BYTES_EVERY
        ending = (
            asyncio.ensure_future(
                membership.ending((SESSION_ENDED, ACCOUNT_SIGNED_OUT), who="an app WebSocket")
            )
            if membership is not None
            else None
        )
        try:
            while True:
                if ending is not None:
                    done, _ = await asyncio.wait([ending], timeout=RECHECK_EVERY)
                    kind = ending.result() if done else None
                    if kind == SESSION_ENDED:
                        await browser.close(CloseCode.SESSION_ENDED, "the session ended")
                        return
                    if kind == ACCOUNT_SIGNED_OUT:
                        await browser.close(CloseCode.SIGNED_OUT, "signed out")
                        return
                    if done:
                        ending = None  # the channel layer was lost: re-admission only
                else:
                    await asyncio.sleep(RECHECK_EVERY)
                try:
                    await admission.admit(
                        mode=request.mode,
                        runtime_id=request.runtime_id,
                        cookie_value=request.cookie(),
                    )
                except AppRefused as refused:
                    await browser.close(*close_for_refusal(refused))
                    return
                if loop.time() >= next_bytes:
                    next_bytes = loop.time() + BYTES_EVERY
                    await exchange.record_bytes()
        finally:
            if ending is not None:
                ending.cancel()

    tasks = [
        asyncio.ensure_future(browser_to_app()),
        asyncio.ensure_future(app_to_browser()),
        asyncio.ensure_future(control()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[2] in done or tasks[1] in done:
            await app.close()
            # The browser's side: closed above; its disconnect ends browser_to_app.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(tasks[0]), 5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
