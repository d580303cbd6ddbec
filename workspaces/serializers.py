from __future__ import annotations

from django.contrib.auth.models import Group
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.inputs import NamedRows
from workspaces.models import Workspace
from workspaces.services import EDITABLE_FIELD_ORDER
from workspaces.validators import GRANTABLE_CAPABILITIES, environment_stored

ADMIN_ONLY = "Administrators only."
ADMIN_FIELDS = (
    "provisioner",
    "vnc_target",
    "vnc_tls_verify",
    "vnc_username",
    "vnc_secret_set",
    "rfb_password_set",
    "container_image",
    "container_protocol",
    "container_port",
    "container_environment_names",
    "container_capabilities",
    "app_credential_header",
    "app_credential_set",
    "app_path_prefix_allowed",
    "groups",
    "created_at",
    "updated_at",
)
WRITABLE_FIELDS = EDITABLE_FIELD_ORDER
WRITE_ONLY_HELP = "Write-only; encrypted at rest, never returned (see {name}_set). Blank clears it."


class _Environment(serializers.JSONField):
    """The container's environment as an object of NAME: "value"; stored as canonical JSON
    (encrypted), so an unchanged object is no change."""

    def to_internal_value(self, data) -> str:
        if data in ("", None, {}):
            return ""
        if not isinstance(data, dict):
            raise serializers.ValidationError('Expected an object of NAME: "value".')
        return environment_stored(data)


class WorkspaceInput(serializers.ModelSerializer):
    """Create (name, type, description required) or, with partial=True, update a workspace.

    The model's validators run here, so a bad size or target is a 400 naming the field.
    """

    groups = NamedRows(
        slug_field="name",
        queryset=Group.objects.all(),
        required=False,
        help_text="Names of the groups whose members may use it; [] or none: everyone.",
    )
    container_environment = _Environment(
        required=False,
        write_only=True,
        help_text="Environment variables for each session's container, as an object of "
        'NAME: "value". Write-only; encrypted at rest, never returned (see '
        "container_environment_names). {} clears it. Every user of the workspace can read "
        "them on their desktop: never a secret they may not know.",
    )
    container_capabilities = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Linux capabilities the image needs (all others are dropped), which every "
        "program on the desktop then holds; only "
        + ", ".join(sorted(GRANTABLE_CAPABILITIES))
        + ".",
    )

    class Meta:
        model = Workspace
        fields = WRITABLE_FIELDS
        extra_kwargs = {
            "vnc_secret": {
                "write_only": True,
                "help_text": WRITE_ONLY_HELP.format(name="vnc_secret"),
                "style": {"input_type": "password"},
            },
            "rfb_password": {
                "write_only": True,
                "help_text": WRITE_ONLY_HELP.format(name="rfb_password"),
                "style": {"input_type": "password"},
            },
            "app_credential": {
                "write_only": True,
                "help_text": "The value of app_credential_header the gateway adds to every "
                "request to the web app (e.g. `Bearer <token>`), for apps with a login of their "
                "own. " + WRITE_ONLY_HELP.format(name="app_credential"),
                "style": {"input_type": "password"},
            },
            "vnc_target": {
                "help_text": "tcp://host:port for a plain RFB server, wss://host:port/path for "
                "KasmVNC; ws:// only with no vnc_username or vnc_secret (Basic credentials are "
                "never sent unencrypted)."
            },
            "cpu": {"help_text": 'e.g. "4 vCPU"'},
            "memory": {"help_text": 'e.g. "8 GB"'},
            "storage": {"help_text": 'e.g. "100 GB"'},
        }


@extend_schema_field({"type": "array", "items": {"type": "string"}})
class _GroupNames(serializers.Field):
    """A workspace's group names, read only for administrators (a query per workspace unless
    prefetched); a field of its own, not a method field, so the document does not call it
    required of the catalog everyone else sees."""

    def to_representation(self, workspace) -> list[str]:
        if not self.context.get("admin"):
            return []
        return sorted(group.name for group in workspace.groups.all())


class WorkspaceOutput(serializers.Serializer):
    """A workspace as the catalog shows it. Administrators also see how its desktop is reached
    and whether its secrets are set; the secrets themselves are never returned."""

    id = serializers.CharField()
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=Workspace.Type.choices)
    description = serializers.CharField()
    image_url = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=Workspace.Status.choices)
    cpu = serializers.CharField()
    memory = serializers.CharField()
    storage = serializers.CharField()
    url = serializers.CharField(allow_blank=True)
    connection_type = serializers.ChoiceField(choices=Workspace.ConnectionType.choices)
    requires_netbird = serializers.BooleanField()
    icon = serializers.CharField()

    provisioner = serializers.ChoiceField(
        choices=Workspace.Provisioner.choices, required=False, help_text=ADMIN_ONLY
    )
    vnc_target = serializers.CharField(required=False, allow_blank=True, help_text=ADMIN_ONLY)
    vnc_tls_verify = serializers.BooleanField(required=False, help_text=ADMIN_ONLY)
    vnc_username = serializers.CharField(required=False, allow_blank=True, help_text=ADMIN_ONLY)
    vnc_secret_set = serializers.BooleanField(required=False, help_text=ADMIN_ONLY)
    rfb_password_set = serializers.BooleanField(required=False, help_text=ADMIN_ONLY)
    container_image = serializers.CharField(required=False, allow_blank=True, help_text=ADMIN_ONLY)
    container_protocol = serializers.ChoiceField(
        choices=Workspace.DesktopProtocol.choices, required=False, help_text=ADMIN_ONLY
    )
    container_port = serializers.IntegerField(required=False, help_text=ADMIN_ONLY)
    container_environment_names = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text=ADMIN_ONLY + " The names of the container's environment variables (never "
        "their values).",
    )
    container_capabilities = serializers.ListField(
        child=serializers.CharField(), required=False, help_text=ADMIN_ONLY
    )
    app_credential_header = serializers.CharField(
        required=False, allow_blank=True, help_text=ADMIN_ONLY
    )
    app_credential_set = serializers.BooleanField(required=False, help_text=ADMIN_ONLY)
    app_path_prefix_allowed = serializers.BooleanField(required=False, help_text=ADMIN_ONLY)
    groups = _GroupNames(
        source="*",
        required=False,
        help_text=ADMIN_ONLY + " The groups whose members may use it; empty: everyone.",
    )
    created_at = serializers.DateTimeField(required=False, help_text=ADMIN_ONLY)
    updated_at = serializers.DateTimeField(required=False, help_text=ADMIN_ONLY)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("admin"):
            for name in ADMIN_FIELDS:
                data.pop(name, None)
        return data


class WorkspaceWriteOutput(serializers.Serializer):
    message = serializers.CharField()
    workspace = WorkspaceOutput()


class MessageOutput(serializers.Serializer):
    message = serializers.CharField()


class ResetOutput(serializers.Serializer):
    message = serializers.CharField()
    count = serializers.IntegerField()
