from __future__ import annotations

from rest_framework import serializers

from vnc_proxy.tickets import TICKET_TTL_SECONDS

# Runtime ids are ours ("wg-" + 12 hex) but the seed's examples look like "pria-ws-7a3f9".
RUNTIME_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
RUNTIME_STATUSES = "provisioning, ready, stopped or error"


class TicketInput(serializers.Serializer):
    workspaceId = serializers.RegexField(
        RUNTIME_ID_PATTERN,
        max_length=32,
        help_text="Your runtime's id: agent.workspace.runtime.workspaceId from "
        "GET /api/agents/workspace/me.",
        error_messages={"invalid": "Not a workspace runtime id."},
    )


class TicketOutput(serializers.Serializer):
    success = serializers.BooleanField()
    workspaceId = serializers.CharField(help_text="Echo of the validated workspace id.")
    vncUrl = serializers.CharField(
        help_text="The WebSocket URL (ws:// or wss://, as this request came) of the desktop "
        "relay, carrying the single-use ticket as its `ticket` query parameter."
    )
    vncPassword = serializers.CharField(
        help_text="The RFB password the viewer answers the desktop's VNC challenge with."
    )
    expiresInSec = serializers.IntegerField(help_text=f"Always {TICKET_TTL_SECONDS}.")


class RuntimeWorkspaceOutput(serializers.Serializer):
    id = serializers.CharField(allow_null=True, help_text="Null once the workspace is deleted.")
    name = serializers.CharField()
    type = serializers.CharField()


class RuntimeOutput(serializers.Serializer):
    workspaceId = serializers.CharField(help_text="The runtime id tickets are asked for.")
    status = serializers.CharField(help_text=f"One of {RUNTIME_STATUSES}.")
    sessionId = serializers.UUIDField()
    workspace = RuntimeWorkspaceOutput()
    startedAt = serializers.DateTimeField()
    readyAt = serializers.DateTimeField(allow_null=True)


class AgentWorkspaceOutput(serializers.Serializer):
    runtime = RuntimeOutput(
        allow_null=True,
        help_text="Your newest live desktop runtime, else your newest one; null if none ever.",
    )
    runtimes = RuntimeOutput(many=True, help_text="Every live desktop runtime of yours.")


class AgentOutput(serializers.Serializer):
    workspace = AgentWorkspaceOutput()


class AgentMeOutput(serializers.Serializer):
    success = serializers.BooleanField()
    agent = AgentOutput()


class RuntimeUserOutput(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()


class AdminRuntimeOutput(RuntimeOutput):
    user = RuntimeUserOutput()
    lastSeenAt = serializers.DateTimeField()
    endedAt = serializers.DateTimeField(allow_null=True)
    endReason = serializers.CharField(allow_blank=True)
    clientIp = serializers.IPAddressField(allow_null=True)


class RuntimeListOutput(serializers.Serializer):
    success = serializers.BooleanField()
    runtimes = AdminRuntimeOutput(many=True)


class RuntimeTerminateOutput(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()
    runtime = AdminRuntimeOutput()
