from __future__ import annotations

from rest_framework import serializers

from sessions_app.models import WorkspaceSession
from sessions_app.selectors import LIVE_FILTER
from workspaces.serializers import WorkspaceOutput

SESSION_STATUS_FILTERS = [*WorkspaceSession.Status.values, LIVE_FILTER]


def stream_url(session: WorkspaceSession) -> str:
    return f"/viewer/{session.id}"


class SessionOutput(serializers.Serializer):
    """A session; never its upstream address or credentials."""

    id = serializers.UUIDField()
    runtime_id = serializers.CharField()
    user_id = serializers.IntegerField()
    user_email = serializers.EmailField(source="user.email")
    workspace_id = serializers.CharField(allow_null=True, help_text="Null once deleted.")
    workspace_name = serializers.CharField()
    workspace_type = serializers.CharField()
    status = serializers.ChoiceField(choices=WorkspaceSession.Status.choices)
    started_at = serializers.DateTimeField()
    ready_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField()
    end_reason = serializers.CharField(allow_blank=True)
    client_ip = serializers.IPAddressField(allow_null=True)
    user_agent = serializers.CharField(allow_blank=True)
    tunnel_status = serializers.CharField(help_text='"encrypted" (trusted network) or "direct".')
    mfa_verified = serializers.BooleanField()
    stream_url = serializers.SerializerMethodField()

    def get_stream_url(self, session) -> str:
        return stream_url(session)


class SessionPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = SessionOutput(many=True)


class SessionFilterInput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=SESSION_STATUS_FILTERS,
        required=False,
        help_text='A session status, or "live" for starting and ready ones.',
    )
    workspace = serializers.CharField(required=False, max_length=64, help_text="A workspace id.")
    user = serializers.IntegerField(
        required=False, min_value=1, help_text="A user id (administrators; others see their own)."
    )


class SecurityOutput(serializers.Serializer):
    encrypted_tunnel = serializers.BooleanField()
    identity_verified = serializers.BooleanField()
    mfa_enforced = serializers.BooleanField()
    session_recording = serializers.BooleanField()
    no_open_ports = serializers.BooleanField()


class LaunchOutput(serializers.Serializer):
    session_id = serializers.UUIDField()
    runtime_id = serializers.CharField()
    status = serializers.ChoiceField(choices=WorkspaceSession.Status.choices)
    created = serializers.BooleanField(
        help_text="False when the caller's existing live session of the workspace is returned."
    )
    workspace = WorkspaceOutput()
    stream_url = serializers.CharField()
    tunnel_status = serializers.CharField()
    security = SecurityOutput()


class TerminateOutput(serializers.Serializer):
    message = serializers.CharField()
    session = SessionOutput()
