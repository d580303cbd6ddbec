"""The workspace's own configured target: a KasmVNC or TigerVNC host, or no desktop at all."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from core.rfb import RFB_GREETING_LENGTH, is_rfb_greeting
from sessions_app.provisioners.base import ProvisionerUnavailable, Upstream
from workspaces.validators import CREDENTIALS_IN_CLEAR, sends_credentials_in_clear

PROBE_TIMEOUT = 2.0
_DEFAULT_PORTS = {"ws": 80, "wss": 443}


class StaticProvisioner:
    name = "static"

    def check_available(self, workspace) -> None:
        if workspace.connection_type == "vnc" and not workspace.vnc_target:
            raise ProvisionerUnavailable(
                f"Workspace {workspace.id} has no vnc_target; an administrator must set one "
                "(tcp://host:port or wss://host:port/path)."
            )
        if workspace.vnc_target and urlsplit(workspace.vnc_target).scheme not in (
            "tcp",
            *_DEFAULT_PORTS,
        ):
            raise ProvisionerUnavailable(
                f"Workspace {workspace.id} has a vnc_target that is neither tcp:// nor ws(s)://."
            )
        if sends_credentials_in_clear(
            workspace.vnc_target, username=workspace.vnc_username, secret=workspace.vnc_secret
        ):
            # Saved before the rule existed (saving such a workspace is refused now).
            raise ProvisionerUnavailable(f"Workspace {workspace.id}: {CREDENTIALS_IN_CLEAR}")

    def start(self, session) -> Upstream | None:
        workspace = session.workspace
        if not workspace.vnc_target:
            return None
        parts = urlsplit(workspace.vnc_target)
        if parts.scheme == "tcp":
            return Upstream(kind="tcp", target=parts.netloc, rfb_password=workspace.rfb_password)
        return Upstream(
            kind="websocket",
            target=workspace.vnc_target,
            username=workspace.vnc_username,
            secret=workspace.vnc_secret,
            rfb_password=workspace.rfb_password,
            tls_verify=workspace.vnc_tls_verify,
        )

    def probe(self, session) -> bool:
        if session.upstream_kind == "tcp":
            return rfb_greets(session.upstream_target)
        if session.upstream_kind == "websocket":
            # A KasmVNC-style server answers RFB only inside an authenticated WebSocket: taking
            # the TCP connection is what can be checked without speaking for a viewer.
            parts = urlsplit(session.upstream_target)
            try:
                port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
            except ValueError:
                return False
            return accepts_connections(parts.hostname or "", port)
        return True  # no desktop: ready as soon as it is launched

    def stop(self, session) -> None:
        """Nothing to tear down: the desktop is the workspace's own host, which outlives the
        sessions opened on it (ending a session closes its relay connections, elsewhere)."""


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host.strip("[]"), port), timeout=timeout)


def accepts_connections(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    try:
        with _connect(host, port, timeout):
            return True
    except OSError:
        return False


def rfb_greets(hostport: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does host:port accept a connection and send an RFB protocol version?"""
    host, _, port = hostport.rpartition(":")
    try:
        with _connect(host, int(port), timeout) as conn:
            conn.settimeout(timeout)
            greeting = conn.recv(RFB_GREETING_LENGTH)
    except (OSError, ValueError):
        return False
    return is_rfb_greeting(greeting)
