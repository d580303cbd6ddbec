"""Provisioners turn a session into a reachable desktop.

One interface (see base.py): check_available() / start(session) -> Upstream | None /
probe(session) -> bool / stop(session). Their state lives on the session row
(`provisioner_state`), so any server process can stop what another started.
"""

from __future__ import annotations

from sessions_app.provisioners.base import (
    DesktopGone,
    Provisioner,
    ProvisionerUnavailable,
    Upstream,
)

__all__ = ["DesktopGone", "Provisioner", "ProvisionerUnavailable", "Upstream", "provisioner_named"]


def provisioner_named(name: str) -> Provisioner:
    from sessions_app.provisioners.container import ContainerProvisioner
    from sessions_app.provisioners.local_desktop import LocalDesktopProvisioner
    from sessions_app.provisioners.static import StaticProvisioner
    from sessions_app.provisioners.web import WebProvisioner

    registry: dict[str, type[Provisioner]] = {
        "static": StaticProvisioner,
        "local_desktop": LocalDesktopProvisioner,
        "container": ContainerProvisioner,
        "web": WebProvisioner,
    }
    return registry.get(name, StaticProvisioner)()
