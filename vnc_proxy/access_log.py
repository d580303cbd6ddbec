"""Keeping query strings out of Daphne's access log.

Daphne writes its access log (on by default, to stdout) itself, not through `logging`. For
WebSocket connections it logs the path alone, but for plain HTTP it logs the full URI, query
string included: a relay URL fetched without the upgrade (a proxy that drops the Upgrade header,
a curious user) would print its ticket, every Socket.IO long-polling request its `sid` (enough
to read that socket's stream), and every request to a web app behind the gateway whatever the
app carries in its queries (OAuth codes, access tokens, an app's own session ids), which the
gateway cannot know the names of. So no query string is logged: its parameters' names stay, each
value replaced by a placeholder. Daphne's line names no host, so it cannot tell an app's request
from the gateway's own.
"""

from __future__ import annotations

REDACTED = "[redacted]"


def redact_credentials(path: str) -> str:
    """The path with each query value, or a bare query part, replaced (a fragment dropped)."""
    base, mark, query = path.partition("?")
    if not mark:
        return path
    parts = (part.partition("=") for part in query.partition("#")[0].split("&"))
    return base + "?" + "&".join(f"{name}={REDACTED}" if eq else REDACTED for name, eq, _ in parts)


def install() -> None:
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # not served by Daphne: nothing to do
        return
    original = AccessLogGenerator.__call__
    if getattr(original, "redacts_tickets", False):
        return

    def __call__(self, protocol, action, details):
        path = details.get("path")
        if isinstance(path, str) and "?" in path:
            details = {**details, "path": redact_credentials(path)}
        return original(self, protocol, action, details)

    __call__.redacts_tickets = True
    AccessLogGenerator.__call__ = __call__
