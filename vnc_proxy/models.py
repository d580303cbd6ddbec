from __future__ import annotations

from django.conf import settings
from django.db import models


class SingleUseTicket(models.Model):
    """What every ticket row holds, desktop (below) or app (app_proxy.models.AppTicket): the JWT
    names it by `jti`; vnc_proxy.tickets spends, replays and voids either kind."""

    jti = models.CharField(primary_key=True, max_length=64)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)
    client_ip = models.GenericIPAddressField(
        null=True, blank=True, help_text="Where the ticket was requested from"
    )
    used_ip = models.GenericIPAddressField(
        null=True, blank=True, help_text="Where the ticket was used from"
    )
    replayed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the ticket was first shown again after it was used or had expired",
    )

    class Meta:
        abstract = True
        ordering = ["-issued_at"]


class Ticket(SingleUseTicket):
    """The server-side half of a desktop ticket: the JWT names it by `jti`.

    A ticket opens at most one relay connection: using it is one conditional UPDATE that sets
    `used_at` only while it is unused and unexpired, which exactly one of any number of
    concurrent attempts (in any number of server processes) can win. Showing it again after
    that is audited once, when `replayed_at` is set.

    A used ticket is also the record of the relay connection it opened, until that closes
    (`closed_at`): the connection says it is open every 30 seconds (`alive_at`), so the viewers
    of a desktop can be counted across processes, and one whose process died stops counting.
    """

    session = models.ForeignKey(
        "sessions_app.WorkspaceSession", on_delete=models.CASCADE, related_name="tickets"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="desktop_tickets"
    )
    alive_at = models.DateTimeField(
        null=True, blank=True, help_text="When the connection it opened last said it was open"
    )
    closed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the connection it opened closed"
    )

    class Meta(SingleUseTicket.Meta):
        pass

    def __str__(self) -> str:
        return f"ticket {self.jti} for session {self.session_id}"
