from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from vnc_proxy.models import SingleUseTicket


class AppTicket(SingleUseTicket):
    """The server-side half of an app ticket (the JWT names it by `jti`): what a browser brings
    to an app's origin (`/.workgate/enter?ticket=`) to be given its app-session cookie.

    The same rules as a desktop ticket (vnc_proxy.models.Ticket): 60 seconds, spent by one
    conditional UPDATE (vnc_proxy.tickets.ticket_spend) that exactly one of any number of
    attempts wins, shown again audited once (`replayed_at`), voided when the account signs out
    everywhere. The account's sign-in epoch at issue is in the JWT."""

    session = models.ForeignKey(
        "sessions_app.WorkspaceSession", on_delete=models.CASCADE, related_name="app_tickets"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="app_tickets"
    )

    class Meta(SingleUseTicket.Meta):
        pass

    def __str__(self) -> str:
        return f"app ticket {self.jti} for session {self.session_id}"


def new_grant_id() -> str:
    return secrets.token_hex(16)  # 128 random bits


class AppGrant(models.Model):
    """The server side of an app-session cookie: one browser let into one session's app, from
    the ticket it spent until the session ends, the account signs out everywhere, or it
    expires. The cookie holds only the signed id; every request is admitted against this row
    (through the per-process admission cache, app_proxy/admission_cache.py)."""

    class Mode(models.TextChoices):
        ORIGIN = "origin"  # <runtime-id>.<WORKGATE_APPS_DOMAIN>
        PREFIX = "prefix"  # /apps/<runtime-id>/ on the gateway's origin

    id = models.CharField(primary_key=True, max_length=32, default=new_grant_id, editable=False)
    session = models.ForeignKey(
        "sessions_app.WorkspaceSession", on_delete=models.CASCADE, related_name="app_grants"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="app_grants"
    )
    sign_in_epoch = models.PositiveIntegerField()
    mode = models.CharField(max_length=8, choices=Mode.choices)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=64, blank=True, default="")
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True, default="")
    bytes_to_app = models.BigIntegerField(default=0)
    bytes_to_browser = models.BigIntegerField(default=0)
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["session"],
                condition=models.Q(ended_at__isnull=True),
                name="app_grant_open_by_session",
            ),
            models.Index(
                fields=["user"],
                condition=models.Q(ended_at__isnull=True),
                name="app_grant_open_by_user",
            ),
        ]

    def __str__(self) -> str:
        return f"app grant {self.id} for session {self.session_id}"
