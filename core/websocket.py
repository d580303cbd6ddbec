"""The origin check in front of every WebSocket route.

A browser always sends Origin: it must name a host in ALLOWED_HOSTS or an origin in
CSRF_TRUSTED_ORIGINS, or the handshake is refused before any consumer runs. A client that sends
no Origin at all (a native VNC bridge, a server-side Socket.IO client) is not a browser, cannot
carry a victim's cookies, and is let through to authenticate by ticket or token.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def origin_allowed(origin: str) -> bool:
    if not origin:
        return True
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    parsed = urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    host, _port = split_domain_port(parsed.netloc)
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


class OriginCheck:
    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin", b"").decode("latin-1")
            if not origin_allowed(origin):
                denier = WebsocketDenier()
                return await denier(scope, receive, send)
        return await self.application(scope, receive, send)
