"""The agents API: the caller's desktop runtimes and tickets, and the super gate's routes."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tokens import request_mfa
from core.exceptions import NotFound
from core.network import Origin
from core.permissions import IsSuperuser
from core.ratelimit import enforce, key_by_user
from core.schema import ADMIN, RUNTIME
from core.serializers import ErrorOutput
from vnc_proxy import selectors, services
from vnc_proxy import serializers as s
from vnc_proxy.routing import RELAY_PATH

WORKSPACE_ID = OpenApiParameter(
    "workspace_id", str, OpenApiParameter.PATH, description="A runtime id (workspaceId)."
)


def relay_url(request, workspace_id: str, ticket: str) -> str:
    """ws:// or wss:// as the request came (X-Forwarded-Proto only from a trusted proxy)."""
    scheme = "wss" if request.scheme == "https" else "ws"
    query = urlencode({"ticket": ticket})
    return f"{scheme}://{request.get_host()}/{RELAY_PATH}{workspace_id}?{query}"


class AgentMeApi(APIView):
    audience = RUNTIME

    @extend_schema(
        tags=["agents"],
        responses={200: s.AgentMeOutput, 401: ErrorOutput},
        summary="Your desktop runtimes: the current one and every live one",
    )
    def get(self, request):
        current = selectors.current_runtime_of(request.user)
        live = selectors.desktop_runtimes_of(request.user, live=True)
        body = {
            "success": True,
            "agent": {
                "workspace": {
                    "runtime": selectors.runtime_data(current) if current else None,
                    "runtimes": [selectors.runtime_data(runtime) for runtime in live],
                }
            },
        }
        return Response(s.AgentMeOutput(body).data)


class TicketApi(APIView):
    """Open to every signed-in user: mounted ahead of the super gate."""

    audience = RUNTIME

    def check_permissions(self, request):
        # Counted before anything else, keyed on the user (the client IP when unauthenticated).
        enforce(request, group="vnc_ticket", rate=settings.WORKGATE_TICKET_RATE, key=key_by_user)
        super().check_permissions(request)

    @extend_schema(
        tags=["agents"],
        request=s.TicketInput,
        responses={
            200: s.TicketOutput,
            400: ErrorOutput,
            401: ErrorOutput,
            403: ErrorOutput,
            404: ErrorOutput,
            409: ErrorOutput,
            429: ErrorOutput,
        },
        summary="Mint a single-use, 60-second ticket for your desktop's VNC relay",
        description=(
            "Only for a runtime of yours (404 otherwise, whether or not it exists) in status "
            "`ready` (409 `not_ready` otherwise). Where launching needs a sign-in verified with "
            "a one-time code (the account's two-step sign-in, or WORKGATE_REQUIRE_MFA), so does "
            "this (403 `mfa_required`); a workspace launched only through the encrypted tunnel "
            "is connected to only from it (403 `tunnel_required`, and its relay refuses the "
            "ticket from outside). Rate-limited per user (429 with Retry-After). "
            "Open `vncUrl` as a WebSocket within 60 seconds, once; answer the desktop's VNC "
            "challenge with `vncPassword`."
        ),
    )
    def post(self, request):
        data = s.TicketInput(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.ticket_issue(
            user=request.user,
            workspace_id=data.validated_data["workspaceId"],
            origin=Origin.of(request),
            mfa_verified=request_mfa(request),
        )
        body = {
            "success": True,
            "workspaceId": issued.workspace_id,
            "vncUrl": relay_url(request, issued.workspace_id, issued.ticket),
            "vncPassword": issued.rfb_password,
            "expiresInSec": issued.expires_in,
        }
        return Response(s.TicketOutput(body).data, headers={"Cache-Control": "no-store"})


class SuperGateMixin:
    audience = ADMIN
    permission_classes = [IsAuthenticated, IsSuperuser]


class RuntimeListApi(SuperGateMixin, APIView):
    @extend_schema(
        tags=["agents"],
        responses={200: s.RuntimeListOutput, 401: ErrorOutput, 403: ErrorOutput},
        summary="Every live desktop runtime (superusers only)",
    )
    def get(self, request):
        runtimes = [selectors.runtime_admin_data(runtime) for runtime in selectors.live_runtimes()]
        return Response(s.RuntimeListOutput({"success": True, "runtimes": runtimes}).data)


class RuntimeTerminateApi(SuperGateMixin, APIView):
    @extend_schema(
        tags=["agents"],
        parameters=[WORKSPACE_ID],
        request=None,
        responses={
            200: s.RuntimeTerminateOutput,
            401: ErrorOutput,
            403: ErrorOutput,
            404: ErrorOutput,
            409: ErrorOutput,
        },
        summary="Terminate anyone's desktop runtime (superusers only)",
        description="Closes its relay connections and stops its desktop. 409 `not_live` when "
        "it has already ended.",
    )
    def post(self, request, workspace_id: str):
        runtime = services.runtime_terminate(
            actor=request.user, workspace_id=workspace_id, origin=Origin.of(request)
        )
        body = {
            "success": True,
            "message": "Workspace runtime terminated",
            "runtime": selectors.runtime_admin_data(runtime),
        }
        return Response(s.RuntimeTerminateOutput(body).data)


class SuperGateApi(SuperGateMixin, APIView):
    """Everything else under /api/agents/: 403 for all but superusers, then 404."""

    schema = None

    def _not_found(self, request, *args, **kwargs):
        raise NotFound()

    get = post = put = patch = delete = _not_found
