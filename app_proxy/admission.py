"""Who may reach a web app behind the gateway, decided once per request (issue 21).

The contract between the control plane (tickets, grants, the app-session cookie: this module,
app_proxy/models.py, services.py) and the data plane (app_proxy/proxy.py: the ASGI app that
streams HTTP and WebSockets to the upstream). The proxy knows nothing of the database: it asks
`admit` for every request and `enter` for a ticket, and reports bytes with `record_bytes`.

An app is reached in one of two modes:
- "origin": `https://<runtime-id>.<WORKGATE_APPS_DOMAIN>/...`, the app's own origin; the cookie
  is `__Host-workgate-app`;
- "prefix": `/apps/<runtime-id>/...` on the gateway's origin, for path-aware apps of workspaces
  that allow it; the cookie is `__Secure-workgate-app-<runtime-id>` with that path.

Every refusal is an `AppRefused` carrying the status and the one error shape's code and message;
the proxy answers it as JSON (HTTP) or by closing (WebSocket) and never proxies.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

Mode = Literal["origin", "prefix"]

# Reserved on every app origin (and under each prefix); never proxied.
ENTER_PATH = "/.workgate/enter"
RESERVED_PREFIX = "/.workgate/"


def cookie_name(mode: Mode, runtime_id: str) -> str:
    return "__Host-workgate-app" if mode == "origin" else f"__Secure-workgate-app-{runtime_id}"


class AppRefused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class AppUpstream:
    """Where the session's app is, as pinned at launch (never re-resolved afterwards)."""

    origin: str  # scheme://name[:port] as the workspace's url gives it; Host and SNI use the name
    base_path: str  # the url's path ("" or "/some/base"), what "/" on the app origin maps to
    address: str  # the IP resolved at launch, inside WORKGATE_APP_UPSTREAM_NETWORKS
    port: int
    tls_verify: bool
    credential_header: str  # "" when the workspace sets none
    credential: str  # the decrypted value; never logged, never returned


@dataclass(frozen=True)
class Admission:
    grant_id: str
    session_id: uuid.UUID
    runtime_id: str
    workspace_id: str
    user_id: int
    mode: Mode
    upstream: AppUpstream
    assertion: str  # the X-Workgate-Assertion value, valid for at least 30 more seconds
    # The workspace asks for the tunnel (requires_netbird): the proxy refuses every request and
    # WebSocket from an address outside WORKGATE_TRUSTED_NETWORKS, not only the ticket and entry.
    requires_tunnel: bool = False


@dataclass(frozen=True)
class Entry:
    """A spent app ticket: the cookie to set and where to send the browser."""

    admission: Admission
    cookie_value: str
    max_age: int  # seconds


def cookie_is_signed(cookie_value: str | None, runtime_id: str | None = None) -> bool:
    """Whether an app cookie was signed by this gateway within a grant's longest life, and for
    `runtime_id` when given (no database, no grant looked up)."""
    from app_proxy import services

    return services.cookie_is_signed(cookie_value, runtime_id)


async def admit(*, mode: Mode, runtime_id: str, cookie_value: str | None) -> Admission:
    """The admission for one request, or AppRefused (401 no or bad cookie, 403 another user's or
    an ended grant, 404 no such live app session). Cheap on a hit: per-process cache, evicted at
    once when the session ends or the account signs out everywhere."""
    from app_proxy import services

    return await services.app_admit(mode=mode, runtime_id=runtime_id, cookie_value=cookie_value)


async def enter(
    *, mode: Mode, runtime_id: str, ticket: str, client_ip: str | None, user_agent: str
) -> Entry:
    """Spend a single-use 60-second app ticket for this runtime: a new grant (audited
    app_session_opened) and the cookie for it, or AppRefused (401/403/404)."""
    from app_proxy import services

    return await services.app_enter(
        mode=mode, runtime_id=runtime_id, ticket=ticket, client_ip=client_ip, user_agent=user_agent
    )


async def record_bytes(grant_id: str, *, to_app: int, to_browser: int) -> None:
    """Add to a grant's byte counters (flushed to the database in batches, and at the end)."""
    from app_proxy import services

    await services.app_record_bytes(grant_id, to_app=to_app, to_browser=to_browser)
