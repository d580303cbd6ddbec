"""Field rules shared by the admin API, the Django admin and the model itself."""

from __future__ import annotations

import json
import re
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


# An image reference as engines take it: [registry[:port]/]path[:tag][@sha256:digest].
_IMAGE = re.compile(
    r"^(?:[a-z0-9.-]+(?::\d{1,5})?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def validate_container_image(value: str) -> None:
    """Blank, or an image reference such as `localhost/workgate-desktop:latest` or
    `kasmweb/chrome:1.16.0` (no options: it is passed to the engine as a name only)."""
    if value and (len(value) > 300 or not _IMAGE.match(value)):
        raise ValidationError(
            "Enter an image reference such as localhost/workgate-desktop:latest.",
            code="invalid_image",
        )


# What Workgate sets in every desktop container itself (the session's own password and screen).
RESERVED_ENVIRONMENT = frozenset({"VNC_PW", "VNC_RESOLUTION"})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_ENVIRONMENT_ENTRIES = 64
MAX_ENVIRONMENT_VALUE = 4096


def environment_of(value: str) -> dict[str, str]:
    """The stored container environment (a JSON object), or {} when blank."""
    return json.loads(value) if value else {}


def environment_stored(environment: dict) -> str:
    """An environment as it is stored: canonical JSON, so an unchanged one is no change."""
    return json.dumps(environment, sort_keys=True, separators=(",", ":"))


def validate_container_environment(value: str) -> None:
    """A JSON object of at most 64 NAME: "value" pairs; names as a shell names variables, none
    of those Workgate sets itself, values strings of at most 4096 characters without NUL."""
    message = (
        f'Give at most {MAX_ENVIRONMENT_ENTRIES} variables as an object of NAME: "value" '
        f"(values strings of at most {MAX_ENVIRONMENT_VALUE} characters)."
    )
    try:
        environment = environment_of(value)
    except ValueError as exc:
        raise ValidationError(message, code="invalid_environment") from exc
    if not isinstance(environment, dict) or len(environment) > MAX_ENVIRONMENT_ENTRIES:
        raise ValidationError(message, code="invalid_environment")
    for name, item in environment.items():
        if not _ENV_NAME.match(name) or not isinstance(item, str):
            raise ValidationError(message, code="invalid_environment")
        if len(item) > MAX_ENVIRONMENT_VALUE or "\x00" in item:
            raise ValidationError(message, code="invalid_environment")
        if name.upper() in RESERVED_ENVIRONMENT:
            raise ValidationError(
                f"{name} is set by Workgate for each session (its own VNC password and screen).",
                code="reserved_environment",
            )


# What a desktop image may be given on top of no capability at all. An image runs as an
# unprivileged user, and Podman hands a non-root user the capabilities it adds as ambient ones:
# every program the end user starts holds them (SETUID would let anyone on the desktop become
# uid 0; DAC_OVERRIDE read any file). So only these: SYS_CHROOT for Chromium's sandbox (the
# Secure Browser), NET_BIND_SERVICE for a port below 1024, KILL within the container's own
# processes. (Found by review; Docker's default set was allowed before.)
GRANTABLE_CAPABILITIES = frozenset({"KILL", "NET_BIND_SERVICE", "SYS_CHROOT"})


def validate_capabilities(value) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(
            'Give the capabilities as a list of names, e.g. ["SYS_CHROOT"].',
            code="invalid_capabilities",
        )
    refused = sorted(set(value) - GRANTABLE_CAPABILITIES)
    if refused:
        raise ValidationError(
            f"Not grantable to a desktop: {', '.join(refused)}. A desktop may be given only "
            f"{', '.join(sorted(GRANTABLE_CAPABILITIES))}.",
            code="invalid_capabilities",
        )


# A request header name (RFC 9110 `token`), and those an app credential may never be sent as:
# hop-by-hop headers (a proxy strips them), what the proxy itself sets (Host, the identity
# assertion, X-Forwarded-*), and Cookie (the proxy filters the browser's cookies; a credential
# there would be mixed into them).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
RESERVED_APP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "cookie",
        "content-length",
        "expect",
        "forwarded",
        "x-workgate-assertion",
    }
)


def validate_app_credential_header(value: str) -> None:
    """Blank, or the name of the header the proxy sends a workspace's app credential in (e.g.
    `Authorization`, `X-Api-Key`): a header token, and none the proxy sets or strips itself."""
    if not value:
        return
    if not _HEADER_NAME.match(value):
        raise ValidationError(
            "Enter a header name (letters, digits and - only, e.g. Authorization or X-Api-Key).",
            code="invalid_header",
        )
    lowered = value.lower()
    if (
        lowered in RESERVED_APP_HEADERS
        or lowered.startswith(("x-forwarded-", "sec-websocket-"))
        or lowered.startswith("x-workgate-")
    ):
        raise ValidationError(
            f"{value} is set or removed by the gateway itself and cannot carry the app credential.",
            code="reserved_header",
        )
