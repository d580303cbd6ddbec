"""Workspaces in the Django admin. Saves and deletes go through the same services (and audit) as
the admin API; the secrets (two passwords, a container's environment and a web app's credential)
are write-only: the
form never shows them, a blank field keeps the stored value, and a checkbox clears it."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth.models import Group

from core.network import Origin
from workspaces import services
from workspaces.models import Workspace
from workspaces.validators import environment_stored, validate_container_environment

SECRETS = ("vnc_secret", "rfb_password", "container_environment", "app_credential")


class WorkspaceAdminForm(forms.ModelForm):
    new_vnc_secret = forms.CharField(
        label="New VNC secret",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="HTTP Basic password the relay sends to a KasmVNC upstream. Blank keeps it.",
    )
    clear_vnc_secret = forms.BooleanField(label="Clear the VNC secret", required=False)
    new_rfb_password = forms.CharField(
        label="New RFB password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The desktop's VNC password, handed to the browser with each ticket. "
        "Blank keeps it.",
    )
    clear_rfb_password = forms.BooleanField(label="Clear the RFB password", required=False)
    new_container_environment = forms.JSONField(
        label="New container environment",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Replaces it: a JSON object of NAME: "value" for each session\'s container. '
        "Encrypted, never shown again, but every user of the workspace can read it on their "
        "desktop. Blank keeps it.",
    )
    clear_container_environment = forms.BooleanField(
        label="Clear the container environment", required=False
    )
    new_app_credential = forms.CharField(
        label="New app credential",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The value of the header above, added to every request to the web app (e.g. "
        "Bearer <token>). Encrypted, never shown again. Blank keeps it.",
    )
    clear_app_credential = forms.BooleanField(label="Clear the app credential", required=False)
    # The model's `groups` goes through WorkspaceGroup (a group that shares a workspace cannot
    # be deleted), which the admin does not edit directly: this field stands in for it.
    shared_with = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"),
        required=False,
        label="Who may use it",
        help_text="Only members of these groups see and launch it. None: everyone.",
        widget=FilteredSelectMultiple("groups", is_stacked=False),
    )

    class Meta:
        model = Workspace
        fields = sorted(services.EDITABLE_FIELDS - {*SECRETS, "groups"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["shared_with"].initial = list(self.instance.groups.all())

    def clean(self) -> dict:
        cleaned = super().clean()
        # The model's rules (Workspace.clean, run next) judge the secrets as they will be saved:
        # a ws:// target is refused with a Basic secret being set, not with one being cleared.
        for name, value in self.secret_changes().items():
            setattr(self.instance, name, value)
        return cleaned

    def groups_change(self) -> dict:
        """{"groups": [...]} when the form changed who may use it, else {}."""
        return (
            {"groups": self.cleaned_data["shared_with"]}
            if "shared_with" in self.changed_data
            else {}
        )

    def clean_new_container_environment(self) -> str:
        environment = self.cleaned_data.get("new_container_environment")
        if environment in (None, "", {}):
            return ""
        if not isinstance(environment, dict):
            raise forms.ValidationError('Enter a JSON object of NAME: "value".')
        value = environment_stored(environment)
        # Not a model field of this form, so the model's own validation would pass it over.
        validate_container_environment(value)
        return value

    def secret_changes(self) -> dict:
        changes = {}
        for name in SECRETS:
            if self.cleaned_data.get(f"clear_{name}"):
                changes[name] = ""
            elif self.cleaned_data.get(f"new_{name}"):
                changes[name] = self.cleaned_data[f"new_{name}"]
        return changes


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    form = WorkspaceAdminForm
    list_display = (
        "id",
        "name",
        "type",
        "status",
        "connection_type",
        "provisioner",
        "requires_netbird",
        "vnc_secret_set",
        "rfb_password_set",
    )
    list_filter = ("type", "status", "connection_type", "provisioner", "requires_netbird", "groups")
    search_fields = ("id", "name", "description", "url", "vnc_target")
    readonly_fields = (
        "id",
        "vnc_secret_set",
        "rfb_password_set",
        "container_environment_names",
        "app_credential_set",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("id", "name", "type", "description", "status", "icon", "image_url")}),
        ("Resources", {"fields": ("cpu", "memory", "storage")}),
        ("Access", {"fields": ("shared_with", "connection_type", "url", "requires_netbird")}),
        (
            "Desktop",
            {
                "fields": (
                    "provisioner",
                    "vnc_target",
                    "vnc_tls_verify",
                    "vnc_username",
                    "vnc_secret_set",
                    "new_vnc_secret",
                    "clear_vnc_secret",
                    "rfb_password_set",
                    "new_rfb_password",
                    "clear_rfb_password",
                )
            },
        ),
        (
            "Container desktop",
            {
                "fields": (
                    "container_image",
                    "container_protocol",
                    "container_port",
                    "container_capabilities",
                    "container_environment_names",
                    "new_container_environment",
                    "clear_container_environment",
                )
            },
        ),
        (
            "Web app through the gateway",
            {
                "fields": (
                    "app_credential_header",
                    "app_credential_set",
                    "new_app_credential",
                    "clear_app_credential",
                    "app_path_prefix_allowed",
                )
            },
        ),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(boolean=True, description="VNC secret set")
    def vnc_secret_set(self, workspace):
        return workspace.vnc_secret_set

    @admin.display(boolean=True, description="RFB password set")
    def rfb_password_set(self, workspace):
        return workspace.rfb_password_set

    @admin.display(boolean=True, description="App credential set")
    def app_credential_set(self, workspace):
        return workspace.app_credential_set

    @admin.display(description="Container environment (names)")
    def container_environment_names(self, workspace):
        return ", ".join(workspace.container_environment_names) or "-"

    def save_model(self, request, obj, form, change):
        origin = Origin.of(request)
        fields = [name for name in form.cleaned_data if name in services.EDITABLE_FIELDS]
        if change:
            data = {name: form.cleaned_data[name] for name in form.changed_data if name in fields}
            data.update(form.secret_changes())
            data.update(form.groups_change())
            saved = services.workspace_update(
                actor=request.user, workspace_id=obj.pk, data=data, origin=origin
            )
        else:
            data = {name: form.cleaned_data[name] for name in fields}
            data.update(form.secret_changes())
            data["groups"] = form.cleaned_data["shared_with"]
            saved = services.workspace_create(actor=request.user, data=data, origin=origin)
        obj.__dict__.update(saved.__dict__)

    def delete_model(self, request, obj):
        services.workspace_delete(
            actor=request.user, workspace_id=obj.pk, origin=Origin.of(request)
        )

    def delete_queryset(self, request, queryset):
        for workspace_id in queryset.values_list("pk", flat=True):
            services.workspace_delete(
                actor=request.user, workspace_id=workspace_id, origin=Origin.of(request)
            )
