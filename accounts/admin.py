from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import Profile, User


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    fields = ("mfa_enabled", "mfa_enabled_at")
    readonly_fields = ("mfa_enabled", "mfa_enabled_at")


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    inlines = [ProfileInline]
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_staff", "is_superuser", "mfa_state")
    list_filter = ("is_staff", "is_superuser", "is_active", "profile__mfa_enabled")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    # Only a superuser hands out roles or touches a superuser's account: anyone else allowed to
    # edit accounts could otherwise make themselves superuser, or set a superuser's password.
    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        if request.user.is_superuser:
            return fields
        return (*fields, "is_staff", "is_superuser", "groups")

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(boolean=True, description="MFA", ordering="profile__mfa_enabled")
    def mfa_state(self, user):
        return bool(getattr(getattr(user, "profile", None), "mfa_enabled", False))

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("profile")
