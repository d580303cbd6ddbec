from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.crypto import EncryptedTextField


def new_runtime_id() -> str:
    return f"wg-{secrets.token_hex(6)}"


class WorkspaceSession(models.Model):
    """One launch of a workspace by one user. Live while starting or ready."""

    class Status(models.TextChoices):
        STARTING = "starting"
        READY = "ready"
        TERMINATED = "terminated"
        ERROR = "error"

    class UpstreamKind(models.TextChoices):
        NONE = ""
        TCP = "tcp"
        WEBSOCKET = "websocket"
        HTTP = "http"  # a web app through the app proxy (issue 21)

    LIVE = (Status.STARTING, Status.READY)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="workspace_sessions"
    )
    workspace = models.ForeignKey(
        "workspaces.Workspace", null=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    workspace_name = models.CharField(max_length=200)
    workspace_type = models.CharField(max_length=16)
    runtime_id = models.CharField(max_length=32, unique=True, default=new_runtime_id)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STARTING)
    started_at = models.DateTimeField()
    ready_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField()
    end_reason = models.CharField(max_length=64, blank=True, default="")
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True, default="")
    tunnel_status = models.CharField(max_length=32, blank=True, default="")
    mfa_verified = models.BooleanField(default=False)

    # Filled in by the provisioner: where the relay connects, and the desktop's RFB password.
    # For a web app (kind http): upstream_target is its normalized url, upstream_address the
    # address its name resolved to at launch (pinned: never resolved again for the session),
    # upstream_username the header its credential goes in and upstream_secret that credential,
    # both copied from the workspace at launch.
    provisioner = models.CharField(max_length=32, blank=True, default="")
    provisioner_state = models.JSONField(default=dict, blank=True)
    upstream_kind = models.CharField(
        max_length=16, choices=UpstreamKind.choices, blank=True, default=UpstreamKind.NONE
    )
    upstream_target = models.CharField(max_length=500, blank=True, default="")
    upstream_address = models.GenericIPAddressField(null=True, blank=True)
    upstream_username = models.CharField(max_length=200, blank=True, default="")
    upstream_secret = EncryptedTextField(blank=True, default="")
    upstream_tls_verify = models.BooleanField(default=True)
    rfb_password = EncryptedTextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "workspace"],
                condition=Q(status__in=["starting", "ready"]),
                name="one_live_session_per_user_and_workspace",
            )
        ]
        indexes = [
            models.Index(fields=["user", "status"], name="session_user_status"),
            models.Index(fields=["status", "last_seen_at"], name="session_status_seen"),
        ]

    def __str__(self) -> str:
        return f"{self.workspace_name} for {self.user_id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE

    @property
    def group_name(self) -> str:
        """The channel-layer group of this session's live relay connections."""
        return session_group(self.id)


def session_group(session_id) -> str:
    return f"session.{session_id}"


# Sent to session_group once an end commits: {"type", "reason", "session_id"} (the app proxy's
# admission cache, which listens to many sessions on one channel, tells them apart by the id).
SESSION_ENDED = "session.ended"
