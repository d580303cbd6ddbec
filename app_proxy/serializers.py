from __future__ import annotations

from rest_framework import serializers

from app_proxy.tickets import TICKET_TTL_SECONDS
from vnc_proxy.serializers import TicketInput


class AppTicketInput(TicketInput):
    """The runtime id of a web app session of the caller's (the same field as a desktop
    ticket's)."""


class AppTicketOutput(serializers.Serializer):
    success = serializers.BooleanField()
    workspaceId = serializers.CharField(help_text="Echo of the validated workspace id.")
    appUrl = serializers.CharField(
        help_text="Where to send the browser, at the top level (not in a frame), within "
        f"{TICKET_TTL_SECONDS} seconds, once: `https://<runtime-id>.<apps domain>/.workgate/"
        "enter?ticket=...` on the app's own origin, or `.../apps/<runtime-id>/.workgate/enter"
        "?ticket=...` on the gateway's where the workspace is reached under a path prefix. It "
        "sets the app-session cookie and redirects to the app."
    )
    mode = serializers.ChoiceField(
        choices=["origin", "prefix"],
        help_text="`origin`: the app's own origin; `prefix`: /apps/<runtime-id>/ on the "
        "gateway's origin.",
    )
    expiresAt = serializers.DateTimeField()
    expiresInSec = serializers.IntegerField(help_text=f"Always {TICKET_TTL_SECONDS}.")
