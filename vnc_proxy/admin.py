from django.contrib import admin

from vnc_proxy.models import Ticket


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    """Read-only: tickets are minted by the API and spent by the relay, never edited."""

    list_display = ["jti", "user", "session", "issued_at", "expires_at", "used_at", "used_ip"]
    list_filter = ["used_at", "issued_at"]
    search_fields = ["jti", "user__email", "session__runtime_id"]
    readonly_fields = [field.name for field in Ticket._meta.fields]
    list_select_related = ["user", "session"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
