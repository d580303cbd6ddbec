"""A web app reached through the gateway's app proxy (issue 21): the workspace's `url`.

There is nothing to start. What a launch does is decide, once, where the app is: the url's name
is resolved at launch (by `resolve`, the one resolver, which tests replace), every address it
resolves to must lie inside WORKGATE_APP_UPSTREAM_NETWORKS and outside the deny list below, and
the first is pinned on the session (`upstream_address`). The proxy dials that address for the
session's whole life, with the url's own name as Host and TLS server name, so a name that
resolves elsewhere later (DNS rebinding) changes nothing.

The deny list is applied whatever an administrator lists: link-local addresses (cloud metadata
services live at 169.254.169.254), 0.0.0.0/8 and :: (which reach the host itself), multicast and
broadcast, and the gateway's own database, Redis and container engines (by address and port),
so the gateway can never be turned into a client of its own back end. Loopback is reached only
where an administrator lists it.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from core.exceptions import APIError, Forbidden
from sessions_app.provisioners.base import ProvisionerUnavailable, Upstream

logger = logging.getLogger(__name__)

NAME = "web"
NETWORKS_SETTING = "WORKGATE_APP_UPSTREAM_NETWORKS"
DEFAULT_PORTS = {"http": 80, "https": 443}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Never an app, whatever WORKGATE_APP_UPSTREAM_NETWORKS says.
DENIED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this host": reaches the gateway itself on Linux
        "169.254.0.0/16",  # link-local: cloud metadata (169.254.169.254), the host's own
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
        "::/128",
        "fe80::/10",  # link-local
        "ff00::/8",  # multicast
    )
)


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def resolve(host: str, port: int) -> list[str]:
    """Every address a web workspace's `host` resolves to, as the operating system's resolver
    answers (an IP literal resolves to itself). The one resolver of web launches: tests replace
    it to make a name resolve where they need."""
    return _system_resolve(host, port)


@dataclass(frozen=True)
class Pinned:
    url: str  # normalized: scheme://name[:port][/base], no credentials, query or fragment
    host: str
    port: int
    address: str


def _address(value: str) -> Address:
    address = ipaddress.ip_address(value.split("%", 1)[0])
    # An IPv4-mapped IPv6 address (::ffff:169.254.169.254) is judged as the IPv4 one it is.
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _endpoint(url: str, default_port: int) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or default_port
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def _own_endpoints() -> list[tuple[str, int]]:
    """The gateway's own back end as (host, port): its database, Redis and tcp:// engines."""
    database = settings.DATABASES["default"]
    endpoints = []
    if database.get("HOST"):
        endpoints.append((database["HOST"], int(database.get("PORT") or 5432)))
    if settings.REDIS_URL:
        endpoints.append(_endpoint(settings.REDIS_URL, 6379))
    for engine in settings.WORKGATE_CONTAINER_ENGINES:
        if engine.startswith("tcp://"):
            endpoints.append(_endpoint(engine, 2376))
    return [endpoint for endpoint in endpoints if endpoint is not None]


@functools.cache
def _denied_endpoints(endpoints: tuple[tuple[str, int], ...]) -> frozenset[tuple[Address, int]]:
    """The addresses the back end's names resolve to (once per process: they are the
    gateway's own, fixed while it runs)."""
    denied = set()
    for host, port in endpoints:
        if host.startswith("/"):
            continue  # a unix socket
        try:
            denied.update((_address(item), port) for item in _system_resolve(host, port))
        except (OSError, ValueError):
            logger.warning("the gateway's own %s:%s does not resolve: not denied", host, port)
    return frozenset(denied)


def denied_endpoints() -> frozenset[tuple[Address, int]]:
    return _denied_endpoints(tuple(_own_endpoints()))


def normalized(url: str) -> tuple[str, str, int]:
    """(the url as the session keeps it, its host, its port); ProvisionerUnavailable when it is
    not an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        raise ProvisionerUnavailable("The workspace's url is not an http:// or https:// URL.")
    if parts.username or parts.password:
        raise ProvisionerUnavailable(
            "The workspace's url carries credentials: give them as its app credential instead."
        )
    scheme = parts.scheme.lower()
    host = parts.hostname.lower().rstrip(".")
    port = port or DEFAULT_PORTS[scheme]
    netloc = f"[{host}]" if ":" in host else host
    if port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", "")), host, port


def pin(url: str, *, workspace_id: str) -> Pinned:
    """Resolve `url`'s name once and check every address it resolves to: the pinned upstream,
    or an APIError saying which rule refused it (503 with no allowed network, or a name that
    does not resolve; 403 for an address outside the allowed networks or on the deny list).
    The addresses are in the log for the administrator, not in the answer."""
    target, host, port = normalized(url)
    networks = settings.WORKGATE_APP_UPSTREAM_NETWORKS
    if not networks:
        raise ProvisionerUnavailable(
            f"Web apps are not reached through this gateway yet: an administrator must list "
            f"their networks in {NETWORKS_SETTING}."
        )
    try:
        addresses = [_address(item) for item in resolve(host, port)]
    except (OSError, ValueError) as exc:
        logger.warning("workspace %s: %s does not resolve: %s", workspace_id, host, exc)
        addresses = []
    if not addresses:
        raise APIError(
            503, "The workspace's address does not resolve; try again later.", "app_unresolved"
        )
    denied = denied_endpoints()
    for address in addresses:
        if any(address in network for network in DENIED_NETWORKS) or (address, port) in denied:
            logger.warning(
                "workspace %s: %s resolves to %s, which the gateway never reaches "
                "(link-local, multicast, or its own database, Redis or engine)",
                workspace_id,
                host,
                address,
            )
            raise Forbidden(
                "The workspace's address is one the gateway never reaches (link-local, "
                "metadata, or the gateway's own services).",
                "app_upstream_denied",
            )
        if not any(address in network for network in networks):
            logger.warning(
                "workspace %s: %s resolves to %s, outside %s",
                workspace_id,
                host,
                address,
                NETWORKS_SETTING,
            )
            raise Forbidden(
                f"The workspace's address is outside the networks web apps may be on: an "
                f"administrator must add its network to {NETWORKS_SETTING}.",
                "app_upstream_not_allowed",
            )
    return Pinned(url=target, host=host, port=port, address=str(addresses[0]))


class WebProvisioner:
    name = NAME

    def check_available(self, workspace) -> None:
        """Refuse before any session is written: no url, no allowed network, or an address
        the rules refuse (the launch's start pins it again: the one it keeps)."""
        if not workspace.url:
            raise ProvisionerUnavailable(
                f"Workspace {workspace.id} has no url; an administrator must set one."
            )
        pin(workspace.url, workspace_id=workspace.id)

    def start(self, session) -> Upstream:
        workspace = session.workspace
        try:
            pinned = pin(workspace.url, workspace_id=workspace.id)
        except APIError as exc:
            # Resolved differently since check_available: refused all the same.
            raise ProvisionerUnavailable(str(exc.detail)) from exc
        return Upstream(
            kind="http",
            target=pinned.url,
            address=pinned.address,
            username=workspace.app_credential_header if workspace.app_credential else "",
            secret=workspace.app_credential if workspace.app_credential_header else "",
            tls_verify=workspace.vnc_tls_verify,
            # Not probed: an app that is down answers 502 through the proxy, and the session
            # stays (as a bookmark stays while a site is down).
            ready=True,
        )

    def probe(self, session) -> bool:
        return True

    def stop(self, session) -> None:
        """Nothing runs on the gateway's side: ending the session ends its grants (app_proxy),
        which refuses every further request on its origin."""
