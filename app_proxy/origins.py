"""Where a web app behind the gateway is reached (issue 21): its own origin
`<runtime-id>.<WORKGATE_APPS_DOMAIN>`, or `/apps/<runtime-id>/` on the gateway's origin.

WORKGATE_APPS_DOMAIN may carry a port ("apps.localhost:8000"). Its app origins are https, except
under a `.localhost` domain: browsers resolve those names to loopback themselves and treat them
as secure contexts (Secure and __Host- cookies work over http there), which is what `make run`
and the tests use without DNS or certificates.
"""

from __future__ import annotations

import re

from django.conf import settings

RUNTIME_ID = re.compile(r"wg-[0-9a-f]{12}")
PREFIX = re.compile(r"^/apps/(wg-[0-9a-f]{12})(/.*)?$")


def apps_domain() -> str:
    return settings.WORKGATE_APPS_DOMAIN.strip().lower().rstrip(".")


def _is_local(domain: str) -> bool:
    host = domain.rpartition(":")[0] if domain.count(":") == 1 else domain
    return host == "localhost" or host.endswith(".localhost")


def app_origin(runtime_id: str) -> str:
    """The app's own origin, or "" when no WORKGATE_APPS_DOMAIN is configured."""
    domain = apps_domain()
    if not domain:
        return ""
    return f"{'http' if _is_local(domain) else 'https'}://{runtime_id}.{domain}"


def runtime_from_host(host: str) -> str | None:
    """For a request's Host: None when it is not under the apps domain (the gateway's own
    request); "" when it is under it but names no runtime (answered 404 by the proxy, never by
    Django); the runtime id otherwise."""
    domain = apps_domain()
    host = host.strip().lower().rstrip(".")
    if not domain or not host.endswith("." + domain):
        return None
    label = host[: -len(domain) - 1]
    return label if RUNTIME_ID.fullmatch(label) else ""


def runtime_from_prefix(path: str) -> tuple[str, str] | None:
    """(runtime id, the path below the prefix, at least "/") for `/apps/<runtime-id>/...`."""
    match = PREFIX.match(path)
    if match is None:
        return None
    return match.group(1), match.group(2) or "/"
