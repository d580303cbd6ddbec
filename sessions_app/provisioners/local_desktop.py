"""Xvfb + x11vnc on loopback per session (issue 4 fills this in)."""

from __future__ import annotations

from sessions_app.provisioners.base import ProvisionerUnavailable, Upstream


class LocalDesktopProvisioner:
    name = "local_desktop"

    def check_available(self, workspace) -> None:
        raise ProvisionerUnavailable("Local desktops are not implemented yet.")

    def start(self, session) -> Upstream | None:
        raise ProvisionerUnavailable("Local desktops are not implemented yet.")

    def probe(self, session) -> bool:
        return False

    def stop(self, session) -> None:
        return None
