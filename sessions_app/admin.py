"""Sessions in the Django admin: read-only rows, and a Terminate action that goes through
`sessions_terminate` (so it is audited and closes live relay connections like every other end)."""

from __future__ import annotations

from django.contrib import admin, messages

from audit.admin_tools import ViewOnlyAdmin
from core.network import Origin
from sessions_app.models import WorkspaceSession
from sessions_app.services import EndReason, sessions_terminate


@admin.register(WorkspaceSession)
class WorkspaceSessionAdmin(ViewOnlyAdmin):
    # Viewing only; the Terminate action is the one way an administrator changes a session.
    list_display = (
        "id",
        "user",
        "workspace_name",
        "status",
        "started_at",
        "ended_at",
        "end_reason",
        "client_ip",
        "tunnel_status",
        "mfa_verified",
    )
    list_filter = ("status", "workspace_type", "tunnel_status", "mfa_verified", "provisioner")
    search_fields = ("id", "runtime_id", "user__email", "workspace_name", "client_ip")
    date_hierarchy = "started_at"
    list_select_related = ("user",)
    actions = ["terminate"]
    # The upstream secret and RFB password are never shown, not even to administrators.
    fields = (
        "id",
        "runtime_id",
        "user",
        "workspace",
        "workspace_name",
        "workspace_type",
        "status",
        "started_at",
        "ready_at",
        "ended_at",
        "last_seen_at",
        "end_reason",
        "client_ip",
        "user_agent",
        "tunnel_status",
        "mfa_verified",
        "provisioner",
        "upstream_kind",
        "upstream_target",
    )
    readonly_fields = fields

    @admin.action(description="Terminate the selected sessions", permissions=["terminate"])
    def terminate(self, request, queryset):
        ended = sessions_terminate(
            sessions=queryset,
            actor=request.user,
            reason=EndReason.ADMIN_TERMINATE,
            origin=Origin.of(request),
        )
        self.message_user(request, f"Terminated {ended} session(s).", messages.SUCCESS)

    def has_terminate_permission(self, request) -> bool:
        return request.user.has_perm("sessions_app.change_workspacesession")
