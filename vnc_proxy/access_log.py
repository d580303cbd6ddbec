"""Keeping tickets out of Daphne's access log.

Daphne writes its access log (on by default, to stdout) itself, not through `logging`. For
WebSocket connections it logs the path alone, but for plain HTTP it logs the full URI, query
string included: a relay URL fetched without the upgrade (a proxy that drops the Upgrade header,
a curious user) would print its ticket. This replaces any `ticket=` value with a placeholder
before Daphne formats the line.
"""

from __future__ import annotations

import re

_TICKET = re.compile(r"((?:^|[?&])ticket=)[^&#\s]*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact_tickets(path: str) -> str:
    return _TICKET.sub(rf"\g<1>{REDACTED}", path)


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
        if isinstance(path, str) and "ticket=" in path.lower():
            details = {**details, "path": redact_tickets(path)}
        return original(self, protocol, action, details)

    __call__.redacts_tickets = True
    AccessLogGenerator.__call__ = __call__
