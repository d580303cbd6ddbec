from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


class ProvisionerUnavailable(Exception):
    """This deployment cannot start such a desktop; the message says what to install or set."""


class DesktopGone(Exception):
    """probe(): the desktop ended before it answered (waiting longer would not help)."""


@dataclass(frozen=True)
class Upstream:
    """Where the relay (or the app proxy) connects for a session, and with which credentials."""

    kind: Literal["tcp", "websocket", "http"]
    target: str  # "host:port" for tcp; the full ws(s):// URL for websocket; the url for http
    username: str = ""  # HTTP Basic auth for a KasmVNC-style websocket upstream; for http, the
    secret: str = ""  # header an app credential goes in, and that credential
    address: str = ""  # http: the address the url's name was pinned to at launch
    rfb_password: str = ""  # what the browser answers the VNC challenge with
    tls_verify: bool = True
    # start() itself saw the desktop answer, so the launch need not probe it again (for x11vnc a
    # second connection is greeted only at its next poll, 100-300 ms later).
    ready: bool = False


class Provisioner(Protocol):
    name: str

    def check_available(self, workspace) -> None:
        """Raise ProvisionerUnavailable when this provisioner cannot serve `workspace` here."""

    def start(self, session) -> Upstream | None:
        """Bring up the session's desktop; None when the workspace has no desktop to relay."""

    def probe(self, session) -> bool:
        """Is the desktop answering? DesktopGone when it never will."""

    def stop(self, session) -> None:
        """Tear the desktop down; safe to call twice and from any process."""
