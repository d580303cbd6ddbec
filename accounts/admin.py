from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group
from django.db import transaction

from accounts import services
from accounts.models import Profile, User
from audit.admin_tools import AuditedAdmin
from core.network import Origin


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    fields = ("mfa_enabled", "mfa_enabled_at")
    readonly_fields = ("mfa_enabled", "mfa_enabled_at")


@admin.register(User)
class UserAdmin(AuditedAdmin, BaseUserAdmin):
    inlines = [ProfileInline]
    actions = ["reset_mfa", "sign_out_everywhere"]
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

    # Only a superuser hands out roles or touches an administrator's account: anyone else
    # allowed to edit accounts could otherwise make themselves superuser, or set the password
    # (or reset the second factor) of an account with more rights than their own.
    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        if request.user.is_superuser:
            return fields
        return (*fields, "is_staff", "is_superuser", "groups")

    def _protected(self, request, obj) -> bool:
        # Their own account included: a non-superuser does not set their own password here
        # without the old one, nor reset their own second factor (a stolen admin session would
        # become a lasting takeover); /admin/password_change/ asks for the old password.
        return (
            obj is not None and not request.user.is_superuser and (obj.is_staff or obj.is_superuser)
        )

    def has_change_permission(self, request, obj=None):
        return not self._protected(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._protected(request, obj) and super().has_delete_permission(request, obj)

    @admin.display(boolean=True, description="MFA", ordering="profile__mfa_enabled")
    def mfa_state(self, user):
        return bool(getattr(getattr(user, "profile", None), "mfa_enabled", False))

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("profile")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            # Turning an account off ends its desktops now (and closes their relay
            # connections), and signs it out everywhere, in the same transaction: its tokens,
            # browser sessions and unused tickets end for good, not only while it is off.
            # (Deleting is no way round it: an account with sessions cannot be deleted here,
            # because its sessions, tickets and turns are view-only records.)
            ended = services.user_disabled(user=obj, actor=request.user, origin=Origin.of(request))
            if ended:
                self.message_user(request, f"{ended} live session(s) of {obj.email} ended.")

    def user_change_password(self, request, id, form_url=""):
        # The new password and its audit entry commit together.
        with transaction.atomic():
            return super().user_change_password(request, id, form_url)

    def _act_on_accounts(self, request, queryset, act) -> tuple[int, int]:
        """`act(user=, actor=, origin=)` on each selected account this administrator may change;
        an administrator's account is a superuser's to act on, and is left with a warning.
        Returns (accounts `act` changed, accounts left); `act` returns False if it changed
        nothing."""
        origin = Origin.of(request)
        changed = refused = 0
        for user in queryset:
            if not self.has_change_permission(request, user):
                refused += 1
            elif act(user=user, actor=request.user, origin=origin) is not False:
                changed += 1
        if refused:
            self.message_user(
                request,
                f"{refused} administrator account(s) left unchanged: only a superuser may "
                "do that to them.",
                messages.WARNING,
            )
        return changed, refused

    @admin.action(
        description="Reset two-step sign-in (a lost or replaced phone)", permissions=["change"]
    )
    def reset_mfa(self, request, queryset):
        reset, refused = self._act_on_accounts(request, queryset, services.mfa_reset)
        if reset:
            self.message_user(request, f"Two-step sign-in reset for {reset} account(s).")
        elif not refused:
            self.message_user(request, "None of those accounts had two-step sign-in.")

    @admin.action(
        description="Sign out everywhere (every token and browser session)",
        permissions=["change"],
    )
    def sign_out_everywhere(self, request, queryset):
        done, _ = self._act_on_accounts(request, queryset, services.user_sign_out_everywhere)
        if done:
            self.message_user(request, f"{done} account(s) signed out everywhere.")


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(AuditedAdmin, BaseGroupAdmin):
    """Groups carry administrators' rights (security.md): only a superuser creates, changes or
    deletes one (anyone else allowed to could grant themselves any permission), and every change
    is audited."""

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
