"""Keeping tickets and Socket.IO session ids out of Daphne's access log.

Daphne writes its access log (on by default, to stdout) itself, not through `logging`. For
WebSocket connections it logs the path alone, but for plain HTTP it logs the full URI, query
string included: a relay URL fetched without the upgrade (a proxy that drops the Upgrade header,
a curious user) would print its ticket, and every Socket.IO long-polling request would print
its `sid`, which is enough to read that socket's stream. This replaces any `ticket=` or `sid=`
value with a placeholder before Daphne formats the line.
"""

from __future__ import annotations

import re

_CREDENTIAL = re.compile(r"((?:^|[?&])(?:ticket|sid)=)[^&#\s]*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact_credentials(path: str) -> str:
    return _CREDENTIAL.sub(rf"\g<1>{REDACTED}", path)


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
        if isinstance(path, str) and "=" in path:
            details = {**details, "path": redact_credentials(path)}
        return original(self, protocol, action, details)

    __call__.redacts_tickets = True
    AccessLogGenerator.__call__ = __call__
