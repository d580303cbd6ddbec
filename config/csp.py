"""The Content Security Policy of every HTML answer: pages (config.middleware) and static files."""

from __future__ import annotations

# What a page may load and where it may send things. Scripts come only from Workgate's own
# origin, or inline with this response's nonce (the viewer's import map); styles inline too (the
# Django admin's attributes); images from any http(s) address (a workspace's image_url is an
# administrator's choice); frames from http(s) (the viewer shows a web workspace in one); fetches
# and WebSockets only to Workgate. No page may be framed, nor post a form elsewhere.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'nonce-{nonce}'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: https: http:",
        "frame-src 'self' https: http:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


def static_headers(headers, path: str, url: str) -> None:
    """WhiteNoise's hook for the headers of a static file. Static HTML (Swagger UI's
    oauth2-redirect.html is the one) gets the pages' policy with no nonce, so none of its inline
    script runs, and may not be framed either."""
    if path.endswith((".html", ".htm")):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(" 'nonce-{nonce}'", "")
        headers["X-Frame-Options"] = "DENY"
