from django.contrib import admin

from audit.admin_tools import ViewOnlyAdmin
from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(ViewOnlyAdmin):
    """Read-only: the audit log is appended by services, never edited by hand."""

    list_display = ("created_at", "action", "actor_email", "resource", "success", "ip_address")
    list_filter = ("action", "success", "created_at")
    search_fields = ("actor_email", "action", "resource", "ip_address")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEntry._meta.fields]
