"""The app ticket: how a signed-in user (the viewer page, an API client) opens a web app."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tokens import request_mfa
from app_proxy import serializers as s
from app_proxy import services
from app_proxy.tickets import TICKET_TTL_SECONDS
from core.network import Origin
from core.ratelimit import enforce, key_by_user
from core.schema import RUNTIME
from core.serializers import ErrorOutput


class AppTicketApi(APIView):
    """Open to every signed-in user: mounted ahead of the agents super gate."""

    audience = RUNTIME

    def check_permissions(self, request):
        # Counted before anything else, like the desktop ticket (its own bucket, same rate).
        enforce(request, group="app_ticket", rate=settings.WORKGATE_TICKET_RATE, key=key_by_user)
        super().check_permissions(request)

    @extend_schema(
        tags=["agents"],
        request=s.AppTicketInput,
        responses={
            200: s.AppTicketOutput,
            400: ErrorOutput,
            401: ErrorOutput,
            403: ErrorOutput,
            404: ErrorOutput,
            409: ErrorOutput,
            429: ErrorOutput,
            503: ErrorOutput,
        },
        summary="Mint a single-use, 60-second ticket that opens your web app",
        description=(
            "For a web app runtime of yours (404 otherwise, whether or not it exists; 409 "
            "`not_an_app` for a desktop runtime, whose ticket is POST /api/agents/workspace/"
            "ticket) in status `ready` (409 `not_ready`). The same rules as a desktop ticket: "
            "403 `mfa_required` where launching needs a sign-in verified with a one-time code, "
            "403 `tunnel_required` for a workspace reached only through the encrypted tunnel; "
            "rate-limited per user (429 with Retry-After). 503 `apps_domain_unset` where no "
            "apps domain is configured and the workspace is not reachable under /apps/. Send "
            "the browser to `appUrl` at the top level within 60 seconds, once: the app's origin "
            "exchanges the ticket for its own app-session cookie."
        ),
    )
    def post(self, request):
        data = s.AppTicketInput(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.app_ticket_issue(
            user=request.user,
            workspace_id=data.validated_data["workspaceId"],
            origin=Origin.of(request),
            mfa_verified=request_mfa(request),
        )
        url = issued.enter_path
        if url.startswith("/"):
            url = request.build_absolute_uri(url)
        body = {
            "success": True,
            "workspaceId": issued.runtime_id,
            "appUrl": url,
            "mode": issued.mode,
            "expiresAt": issued.expires_at,
            "expiresInSec": TICKET_TTL_SECONDS,
        }
        return Response(s.AppTicketOutput(body).data, headers={"Cache-Control": "no-store"})
