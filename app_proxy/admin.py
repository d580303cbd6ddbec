"""App tickets and grants in the Django admin: read-only records (they change only through
app_proxy's services, audited)."""

from __future__ import annotations

from django.contrib import admin

from app_proxy.models import AppGrant, AppTicket


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AppGrant)
class AppGrantAdmin(_ReadOnly):
    list_display = (
        "short_id",
        "session",
        "user",
        "mode",
        "created_at",
        "expires_at",
        "ended_at",
        "end_reason",
        "bytes_to_app",
        "bytes_to_browser",
    )
    list_filter = ("mode", "end_reason")
    search_fields = ("session__runtime_id", "user__email")
    # The cookie's payload (no use without SECRET_KEY's signature), shown shortened on the page.
    exclude = ("id",)
    readonly_fields = (
        "short_id",
        "session",
        "user",
        "sign_in_epoch",
        "mode",
        "created_at",
        "expires_at",
        "ended_at",
        "end_reason",
        "client_ip",
        "user_agent",
        "bytes_to_app",
        "bytes_to_browser",
        "last_seen_at",
    )

    @admin.display(description="Grant")
    def short_id(self, grant):
        return f"{grant.id[:12]}…"


@admin.register(AppTicket)
class AppTicketAdmin(_ReadOnly):
    list_display = ("jti", "session", "user", "issued_at", "expires_at", "used_at", "replayed_at")
    search_fields = ("session__runtime_id", "user__email")
    readonly_fields = (
        "jti",
        "session",
        "user",
        "issued_at",
        "expires_at",
        "used_at",
        "client_ip",
        "used_ip",
        "replayed_at",
    )
