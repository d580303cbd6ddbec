"""Who is the client, and did they arrive over HTTPS?

X-Forwarded-For and X-Forwarded-Proto are believed only when the direct peer lies in
WORKGATE_TRUSTED_PROXIES; from anyone else they are ignored, so a client cannot claim to be
inside the trusted network by sending a header.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings


@dataclass(frozen=True)
class ClientAddress:
    ip: str
    scheme: str


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.WORKGATE_TRUSTED_PROXIES)


def resolve_client(
    peer: str, forwarded_for: str, forwarded_proto: str, scheme: str
) -> ClientAddress:
    """Walk X-Forwarded-For from the right while the hop is a trusted proxy."""
    if not _is_trusted_proxy(peer):
        return ClientAddress(ip=peer, scheme=scheme)
    client = peer
    for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
        if not _is_address(hop):
            # Not an address: nothing left of it can be believed, and it must never become
            # REMOTE_ADDR (the audit log and sessions store it in an inet column).
            break
        client = hop
        if not _is_trusted_proxy(hop):
            break
    proto = forwarded_proto.split(",")[0].strip().lower()
    return ClientAddress(ip=client, scheme=proto if proto in ("http", "https") else scheme)


def in_networks(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_from_scope(scope: dict) -> ClientAddress:
    """The same resolution for a Channels scope (WebSocket or ASGI HTTP)."""
    headers = dict(scope.get("headers") or [])
    peer = (scope.get("client") or ("", 0))[0] or ""
    default = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return resolve_client(
        peer,
        headers.get(b"x-forwarded-for", b"").decode("latin-1"),
        headers.get(b"x-forwarded-proto", b"").decode("latin-1"),
        default,
    )


class TrustedProxyMiddleware:
    """Rewrites REMOTE_ADDR and the request scheme from a trusted proxy's headers.

    Sync and async: it only computes, so an async request never leaves the event loop here.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        self.resolve(request)
        return self.get_response(request)  # a coroutine in async mode

    @staticmethod
    def resolve(request) -> None:
        client = resolve_client(
            request.META.get("REMOTE_ADDR", ""),
            request.META.get("HTTP_X_FORWARDED_FOR", ""),
            request.META.get("HTTP_X_FORWARDED_PROTO", ""),
            request.scheme,
        )
        request.META["REMOTE_ADDR"] = client.ip
        if client.scheme != request.scheme:
            request.META["wsgi.url_scheme"] = client.scheme
            scope = getattr(request, "scope", None)
            if scope is not None:
                scope["scheme"] = client.scheme


def client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


def user_agent(request) -> str:
    return request.META.get("HTTP_USER_AGENT", "")[:512]


@dataclass(frozen=True)
class Origin:
    """Where an action came from: an HTTP request, a WebSocket scope, or the system itself."""

    ip: str | None = None
    user_agent: str = ""

    @classmethod
    def of(cls, request) -> Origin:
        if request is None:
            return cls()
        return cls(ip=client_ip(request) or None, user_agent=user_agent(request))

    @classmethod
    def of_scope(cls, scope: dict) -> Origin:
        """The same for a Channels scope (a WebSocket connection)."""
        headers = dict(scope.get("headers") or [])
        agent = headers.get(b"user-agent", b"").decode("latin-1")[:512]
        return cls(ip=client_from_scope(scope).ip or None, user_agent=agent)


SYSTEM = Origin()


def client_is_tunnelled(ip: str | None) -> bool:
    """Did the client reach us from a trusted network (WORKGATE_TRUSTED_NETWORKS: the NetBird
    overlay, whose traffic is WireGuard-encrypted end to end)? The address is the one
    TrustedProxyMiddleware resolved, so a client cannot claim it with a header."""
    return bool(ip) and in_networks(ip, settings.WORKGATE_TRUSTED_NETWORKS)
