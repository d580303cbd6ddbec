"""The Content Security Policy of every HTML answer: pages (config.middleware) and static files;
and the one of answers that are data (core.headers)."""

from __future__ import annotations


def _policy(scripts: str) -> str:
    """What a page may load and where it may send things. Scripts come only from Workgate's own
    origin (and, for a page, inline with its response's nonce: the viewer's import map); styles
    inline too (the Django admin's attributes); images from any http(s) address (a workspace's
    image_url is an administrator's choice); frames from http(s) (the viewer shows a web
    workspace in one); fetches and WebSockets only to Workgate. Nothing may frame it, nor does
    it post a form elsewhere."""
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src {scripts}",
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


# A page's, with `{nonce}` to fill per response.
CONTENT_SECURITY_POLICY = _policy("'self' 'nonce-{nonce}'")
# A static HTML file's: no nonce, so none of its inline script runs.
STATIC_CONTENT_SECURITY_POLICY = _policy("'self'")
# An answer that is data, should a browser ever open it as a document: it loads nothing, runs
# nothing, and nothing may frame it.
RESOURCE_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"


def static_headers(headers, path: str, url: str) -> None:
    """WhiteNoise's hook for the headers of a static file: static HTML (Swagger UI's
    oauth2-redirect.html is the one) gets the static policy and may not be framed either."""
    if path.endswith((".html", ".htm")):
        headers["Content-Security-Policy"] = STATIC_CONTENT_SECURITY_POLICY
        headers["X-Frame-Options"] = "DENY"
