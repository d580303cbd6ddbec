from django.contrib import admin

from audit.admin_tools import AuditedAdmin, ViewOnlyAdmin
from streaming.models import Assistant, Conversation, History, Institution, Membership


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Institution)
class InstitutionAdmin(AuditedAdmin):
    list_display = ["name", "public_id", "display_thinking_details", "display_tool_execution"]
    list_filter = ["display_thinking_details", "display_tool_execution"]
    search_fields = ["name", "public_id"]
    readonly_fields = ["public_id", "created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ["user", "institution", "role", "created_at"]
    list_filter = ["role", "institution"]
    search_fields = ["user__email", "institution__name"]
    autocomplete_fields = ["user", "institution"]


@admin.register(Assistant)
class AssistantAdmin(AuditedAdmin):
    list_display = ["name", "provider", "model", "institution", "owner", "status"]
    list_filter = ["provider", "status", "institution"]
    search_fields = ["name", "model", "id"]
    autocomplete_fields = ["institution", "owner"]
    readonly_fields = ["id", "created_at", "updated_at"]


@admin.register(Conversation)
class ConversationAdmin(AuditedAdmin):
    list_display = ["course_id", "course_name", "user", "assistant", "updated_at"]
    search_fields = ["course_id", "course_name", "user__email"]
    autocomplete_fields = ["user", "institution", "assistant"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(History)
class HistoryAdmin(ViewOnlyAdmin):
    """Read-only: a turn is a record of what happened."""

    list_display = ["created_at", "user", "status", "provider", "model", "latency_ms"]
    list_filter = ["status", "provider", "institution"]
    search_fields = ["user__email", "inputs", "completion"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]
