from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.crypto import EncryptedTextField
from workspaces.validators import (
    CREDENTIALS_IN_CLEAR,
    environment_of,
    sends_credentials_in_clear,
    validate_app_credential_header,
    validate_capabilities,
    validate_container_environment,
    validate_container_image,
    validate_cpu,
    validate_size,
    validate_vnc_target,
    validate_web_url,
)


def new_workspace_id() -> str:
    return f"ws-{secrets.token_hex(4)}"


class Workspace(models.Model):
    class Type(models.TextChoices):
        HTML5 = "html5"
        RDP = "rdp"
        WEB = "web"
        LINUX = "linux"
        BROWSER = "browser"
        WINDOWS = "windows"
        DEV = "dev"
        ADMIN = "admin"

    class Status(models.TextChoices):
        AVAILABLE = "available"
        RUNNING = "running"
        STOPPED = "stopped"
        ERROR = "error"

    class ConnectionType(models.TextChoices):
        HTML5 = "html5"
        WEB = "web"
        VNC = "vnc"
        BROWSER = "browser"

    class Provisioner(models.TextChoices):
        STATIC = "static"
        LOCAL_DESKTOP = "local_desktop"
        CONTAINER = "container"
        WEB = "web"  # a web app at `url`, reached through the gateway's app proxy (issue 21)

    class DesktopProtocol(models.TextChoices):
        """How the relay speaks to a container's desktop."""

        RFB = "rfb"  # plain RFB on a TCP port (x11vnc, TigerVNC): Workgate's own images
        KASMVNC = "kasmvnc"  # KasmVNC's wss with Basic auth (Kasm's published images)

    id = models.CharField(primary_key=True, max_length=64, default=new_workspace_id, editable=False)
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=Type.choices)
    description = models.TextField()
    image_url = models.CharField(
        max_length=500, blank=True, default="", validators=[validate_web_url]
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.AVAILABLE)
    cpu = models.CharField(max_length=32, default="2 vCPU", validators=[validate_cpu])
    memory = models.CharField(max_length=32, default="4 GB", validators=[validate_size])
    storage = models.CharField(max_length=32, default="50 GB", validators=[validate_size])
    url = models.CharField(max_length=500, blank=True, default="", validators=[validate_web_url])
    connection_type = models.CharField(
        max_length=16, choices=ConnectionType.choices, default=ConnectionType.WEB
    )
    requires_netbird = models.BooleanField(default=True)
    icon = models.CharField(max_length=64, default="default")

    # How the relay reaches this workspace's desktop (connection_type vnc).
    provisioner = models.CharField(
        max_length=32, choices=Provisioner.choices, default=Provisioner.STATIC
    )
    vnc_target = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="tcp://host:port for a plain RFB server, ws(s)://host:port/path for KasmVNC",
        validators=[validate_vnc_target],
    )
    vnc_tls_verify = models.BooleanField(
        default=True,
        help_text="Verify the upstream's certificate: a wss:// desktop's, or an https:// web "
        "app's (off only for lab servers)",
    )
    vnc_username = models.CharField(max_length=200, blank=True, default="")
    vnc_secret = EncryptedTextField(blank=True, default="")
    rfb_password = EncryptedTextField(blank=True, default="")

    # A desktop of one's own (provisioner `container`): a fresh container per session.
    container_image = models.CharField(
        max_length=300,
        blank=True,
        default="",
        help_text="The image each session's container runs, e.g. localhost/workgate-desktop",
        validators=[validate_container_image],
    )
    container_protocol = models.CharField(
        max_length=16, choices=DesktopProtocol.choices, default=DesktopProtocol.RFB
    )
    container_port = models.PositiveIntegerField(
        default=5900,
        help_text="The port inside the container its desktop listens on (5900 for RFB, "
        "6901 for KasmVNC)",
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
    )
    # A JSON object of environment variables for the container, encrypted (it may hold
    # secrets); only its names are ever shown.
    container_environment = EncryptedTextField(
        blank=True, default="", validators=[validate_container_environment]
    )
    container_capabilities = models.JSONField(
        default=list,
        blank=True,
        help_text="Linux capabilities the image needs on top of none, which every program on "
        "the desktop then holds: only SYS_CHROOT (Chromium's sandbox), NET_BIND_SERVICE, KILL",
        validators=[validate_capabilities],
    )

    # A web app reached through the gateway (provisioner `web`, issue 21): a header the proxy
    # adds to every request to the app (for apps with a login of their own), encrypted, never
    # returned; and whether it may be reached under /apps/<runtime-id>/ on the gateway's own
    # origin when no apps domain is configured.
    app_credential_header = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="The header the app credential is sent in, e.g. Authorization or X-Api-Key",
        validators=[validate_app_credential_header],
    )
    app_credential = EncryptedTextField(blank=True, default="")
    app_path_prefix_allowed = models.BooleanField(
        default=False,
        help_text="Also reachable under /apps/<runtime-id>/ on the gateway's own origin (for "
        "path-aware apps only). That mode shares the gateway's origin: the app's scripts run "
        "with the gateway's origin and can call its API as the user. Off unless the app is "
        "trusted as much as the gateway.",
    )

    groups = models.ManyToManyField(
        "auth.Group",
        through="WorkspaceGroup",
        blank=True,
        related_name="workspaces",
        verbose_name="who may use it",
        help_text="Only members of these groups see and launch it. None: everyone.",
    )

    # A plain default rather than auto_now_add, so the seeded defaults can be given distinct,
    # ordered creation times and list in their documented order.
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    def clean(self) -> None:
        if sends_credentials_in_clear(
            self.vnc_target, username=self.vnc_username, secret=self.vnc_secret
        ):
            error = ValidationError(CREDENTIALS_IN_CLEAR, code="credentials_in_clear")
            raise ValidationError({"vnc_target": error})
        if self.provisioner == self.Provisioner.CONTAINER and not self.container_image:
            error = ValidationError(
                "A workspace with the container provisioner needs the image its sessions run.",
                code="image_required",
            )
            raise ValidationError({"container_image": error})
        if self.app_credential and not self.app_credential_header:
            error = ValidationError(
                "An app credential is sent in a header: name it in app_credential_header.",
                code="header_required",
            )
            raise ValidationError({"app_credential_header": error})

    @property
    def vnc_secret_set(self) -> bool:
        return bool(self.vnc_secret)

    @property
    def rfb_password_set(self) -> bool:
        return bool(self.rfb_password)

    @property
    def app_credential_set(self) -> bool:
        return bool(self.app_credential)

    @property
    def container_environment_names(self) -> list[str]:
        return sorted(environment_of(self.container_environment))


class WorkspaceGroup(models.Model):
    """A group a workspace is shared with. A group that shares a workspace cannot be deleted
    (PROTECT): its links would vanish with it, and a workspace left with no groups is
    everyone's. Unshare the workspace first, then delete the group."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE)
    group = models.ForeignKey("auth.Group", on_delete=models.PROTECT)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "group"], name="workspace_group_once")
        ]

    def __str__(self) -> str:
        return f"{self.workspace_id} shared with {self.group}"
