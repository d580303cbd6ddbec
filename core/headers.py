"""The security headers of answers that Django's middleware never sees.

The Socket.IO long-polling transport is a Channels consumer beside Django (config/asgi.py), so
SecurityMiddleware and XFrameOptionsMiddleware do not run for it. Its answers get the same headers
from the same settings, plus what suits a body that is data, never a document or a script: a
browser may not sniff it into one, embed it from another site, or render anything it names.
"""

from __future__ import annotations

from django.conf import settings

from core.csp import RESOURCE_CONTENT_SECURITY_POLICY


def resource_security_headers() -> list[tuple[bytes, bytes]]:
    """ASGI headers for a non-HTML answer, as Django's middleware would set them and more.

    nosniff is sent whatever SECURE_CONTENT_TYPE_NOSNIFF says: without it a text/plain body a
    client shaped could run as a `<script src>` (Chromium sniffs), under any page's CSP."""
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": settings.X_FRAME_OPTIONS.upper(),
        "Content-Security-Policy": RESOURCE_CONTENT_SECURITY_POLICY,
        # Only no-cors loads (<script>, <img>): the official clients' requests are CORS ones.
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        values = policy.split(",") if isinstance(policy, str) else policy
        headers["Referrer-Policy"] = ",".join(value.strip() for value in values)
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers["Cross-Origin-Opener-Policy"] = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
