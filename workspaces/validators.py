"""Field rules shared by the admin API, the Django admin and the model itself."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

validate_cpu = RegexValidator(
    r"^[1-9]\d{0,3}(\.\d{1,2})? vCPU$",
    'Give the CPU allocation as a number of virtual CPUs, e.g. "4 vCPU".',
    "invalid_size",
)
validate_size = RegexValidator(
    r"^[1-9]\d{0,5}(\.\d{1,2})? (MB|GB|TB)$",
    'Give the size as a number and a unit (MB, GB or TB), e.g. "8 GB".',
    "invalid_size",
)


def validate_web_url(value: str) -> None:
    """Blank, or an http(s) URL: these are rendered as links, so no javascript: or data: URLs."""
    if not value:
        return
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # e.g. an unclosed "[" around an IPv6 host
        raise ValidationError("Enter an http:// or https:// URL.", code="invalid_url") from exc
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError("Enter an http:// or https:// URL.", code="invalid_url")


def validate_vnc_target(value: str) -> None:
    """Blank, tcp://host:port (a plain RFB server) or ws(s)://host:port/path (KasmVNC)."""
    if not value:
        return
    message = "Enter tcp://host:port for an RFB server or ws(s)://host[:port]/path for KasmVNC."
    try:
        parts = urlsplit(value)  # raises for an unclosed "[" around an IPv6 host
        port = parts.port
    except ValueError as exc:
        raise ValidationError(message, code="invalid_vnc_target") from exc
    if not parts.hostname or parts.username or parts.password:
        # Credentials belong in vnc_username / vnc_secret (encrypted), never in the URL.
        raise ValidationError(message, code="invalid_vnc_target")
    if parts.scheme == "tcp":
        if port is None or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValidationError(message, code="invalid_vnc_target")
    elif parts.scheme not in ("ws", "wss"):
        raise ValidationError(message, code="invalid_vnc_target")


CREDENTIALS_IN_CLEAR = (
    "A ws:// target would send vnc_username and vnc_secret unencrypted: use wss:// (with "
    "vnc_tls_verify off for a lab server's self-signed certificate), or clear both."
)


def sends_credentials_in_clear(target: str, *, username: str, secret: str) -> bool:
    """Whether the relay would send HTTP Basic credentials to `target` unencrypted (ws://).

    The one rule for saving a workspace (API and Django admin), launching it, and connecting to
    it: a row saved before the rule existed is still refused at the launch and the relay."""
    if not (username or secret):
        return False
    try:
        return urlsplit(target).scheme == "ws"
    except ValueError:  # not a URL at all: nothing would be sent
        return False
