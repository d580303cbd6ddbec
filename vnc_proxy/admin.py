from django.contrib import admin

from audit.admin_tools import ViewOnlyAdmin
from vnc_proxy.models import Ticket


@admin.register(Ticket)
class TicketAdmin(ViewOnlyAdmin):
    """Read-only: tickets are minted by the API and spent by the relay, never edited."""

    list_display = ["jti", "user", "session", "issued_at", "expires_at", "used_at", "used_ip"]
    list_filter = ["used_at", "issued_at"]
    search_fields = ["jti", "user__email", "session__runtime_id"]
    list_select_related = ["user", "session"]
