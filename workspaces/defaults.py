"""The five default workspaces, created when the catalog is empty and by a reset."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from workspaces.models import Workspace

# Built from Debian's packages by `make images` (images/README.md).
DESKTOP_IMAGE = "localhost/workgate-desktop:latest"
BROWSER_IMAGE = "localhost/workgate-browser:latest"
LINUX_DESKTOP = "ws-linux-desktop"

DEFAULT_WORKSPACES: tuple[dict, ...] = (
    {
        "id": "ws-sap-neogenesys",
        "name": "SAP Neogénesys",
        "type": Workspace.Type.HTML5,
        "description": "TSPlus HTML5 Desktop para acceso a SAP. Requiere conexión NetBird activa.",
        "image_url": "https://images.unsplash.com/photo-1551288049-bebda4e38f71?w=400",
        "cpu": "4 vCPU",
        "memory": "8 GB",
        "storage": "100 GB",
        "url": "http://tsplus.intranet.neosc/",
        "connection_type": Workspace.ConnectionType.HTML5,
        # Reached through the gateway's app proxy once its network is in
        # WORKGATE_APP_UPSTREAM_NETWORKS (README); until then its launch answers 503 naming it.
        "provisioner": Workspace.Provisioner.WEB,
        "requires_netbird": True,
        "icon": "sap",
    },
    {
        "id": "ws-remote-desktop",
        "name": "Remote Desktop",
        "type": Workspace.Type.RDP,
        "description": "Escritorio remoto Windows via TSPlus HTML5. IP: 10.100.10.152",
        "image_url": "https://images.unsplash.com/photo-1624571409108-e9a41746af53?w=400",
        "cpu": "4 vCPU",
        "memory": "8 GB",
        "storage": "100 GB",
        "url": "http://10.100.10.152/",
        "connection_type": Workspace.ConnectionType.HTML5,
        "provisioner": Workspace.Provisioner.WEB,
        "requires_netbird": True,
        "icon": "windows",
    },
    {
        "id": "ws-1panel-admin",
        "name": "1Panel Admin",
        "type": Workspace.Type.WEB,
        "description": "Panel de administración de la infraestructura (1Panel). "
        "Requiere conexión NetBird activa.",
        "cpu": "2 vCPU",
        "memory": "4 GB",
        "storage": "50 GB",
        "connection_type": Workspace.ConnectionType.WEB,
        # A web app through the gateway once an administrator sets its url.
        "provisioner": Workspace.Provisioner.WEB,
        "requires_netbird": True,
        "icon": "server",
    },
    {
        "id": "ws-linux-desktop",
        "name": "Linux Desktop",
        "type": Workspace.Type.LINUX,
        "description": "A Debian desktop of your own (a fresh one each launch), streamed in the "
        "browser through the gateway's own VNC relay.",
        "image_url": "https://images.unsplash.com/photo-1587620962725-abab7fe55159?w=400",
        "cpu": "2 vCPU",
        "memory": "4 GB",
        "storage": "50 GB",
        "connection_type": Workspace.ConnectionType.VNC,
        "provisioner": Workspace.Provisioner.CONTAINER,
        "container_image": DESKTOP_IMAGE,
        # The desktop is reached only through the relay on the gateway's own port, so there is
        # no private address the client must tunnel to.
        "requires_netbird": False,
        "icon": "linux",
    },
    {
        "id": "ws-secure-browser",
        "name": "Secure Browser",
        "type": Workspace.Type.BROWSER,
        "description": "Isolated browser environment for browsing the web without touching "
        "the local machine.",
        "cpu": "2 vCPU",
        "memory": "4 GB",
        "storage": "50 GB",
        "connection_type": Workspace.ConnectionType.BROWSER,
        "provisioner": Workspace.Provisioner.CONTAINER,
        "container_image": BROWSER_IMAGE,
        # Chromium's own sandbox, inside the container's.
        "container_capabilities": ["SYS_CHROOT"],
        "requires_netbird": False,
        "icon": "browser",
    },
)

DEFAULT_IDS = tuple(spec["id"] for spec in DEFAULT_WORKSPACES)


def default_workspace_rows() -> list[Workspace]:
    """Fresh, unsaved rows, one microsecond apart so they list in the order above."""
    base = timezone.now()
    return [
        Workspace(created_at=base + timedelta(microseconds=index), **_here(spec))
        for index, spec in enumerate(DEFAULT_WORKSPACES)
    ]


def _here(spec: dict) -> dict:
    """The Linux Desktop is a container per session wherever an engine is configured; without
    one, where local desktops are on (the embedded default, `make run`), the gateway host's
    own. The Secure Browser needs an engine: without one its launch answers 503 naming
    WORKGATE_CONTAINER_ENGINES."""
    if (
        spec["id"] == LINUX_DESKTOP
        and not settings.WORKGATE_CONTAINER_ENGINES
        and settings.WORKGATE_LOCAL_DESKTOP
    ):
        return {**spec, "provisioner": Workspace.Provisioner.LOCAL_DESKTOP}
    return spec


def insert_default_workspaces() -> int:
    """Insert the defaults that are missing, by fixed id, and return how many exist afterwards.

    ON CONFLICT DO NOTHING on the fixed ids makes two racing first requests converge on the
    same five rows: the second insert waits for the first to commit and then skips every row.
    """
    Workspace.objects.bulk_create(default_workspace_rows(), ignore_conflicts=True)
    return Workspace.objects.filter(id__in=DEFAULT_IDS).count()
