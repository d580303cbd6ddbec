"""The workspace's own configured target: a KasmVNC or TigerVNC host, or no desktop at all."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from sessions_app.provisioners.base import ProvisionerUnavailable, Upstream

PROBE_TIMEOUT = 2.0


class StaticProvisioner:
    name = "static"

    def check_available(self, workspace) -> None:
        if workspace.connection_type == "vnc" and not workspace.vnc_target:
            raise ProvisionerUnavailable(
                f"Workspace {workspace.id} has no vnc_target; an administrator must set one "
                "(tcp://host:port or wss://host:port/path)."
            )

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
        if session.upstream_kind != "tcp":
            return True  # no desktop, or a websocket upstream checked when the relay connects
        return rfb_greets(session.upstream_target)

    def stop(self, session) -> None:
        return None


def rfb_greets(hostport: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does host:port accept a connection and send an "RFB 003.00x" protocol version?"""
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            conn.settimeout(timeout)
            greeting = conn.recv(12)
    except (OSError, ValueError):
        return False
    return greeting.startswith(b"RFB 003.00")
