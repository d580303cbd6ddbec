from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tokens import request_mfa
from core.inputs import query_input
from core.network import Origin
from core.pagination import PAGE_PARAMETERS, paginated
from core.schema import ADMIN, RUNTIME
from core.serializers import ErrorOutput
from sessions_app import selectors, services
from sessions_app import serializers as s
from workspaces.apis import render_workspace
from workspaces.selectors import workspace_get
from workspaces.serializers import MessageOutput

WORKSPACE_ID = OpenApiParameter("workspace_id", str, OpenApiParameter.PATH)
SESSION_ID = OpenApiParameter("session_id", str, OpenApiParameter.PATH, description="A UUID.")
LAUNCH_ERRORS = {
    401: ErrorOutput,
    403: ErrorOutput,
    404: ErrorOutput,
    409: ErrorOutput,
    429: ErrorOutput,
    503: ErrorOutput,
}


class WorkspaceLaunchApi(APIView):
    @extend_schema(
        tags=["workspaces"],
        parameters=[WORKSPACE_ID],
        request=None,
        responses={201: s.LaunchOutput, 200: s.LaunchOutput, **LAUNCH_ERRORS},
        summary="Launch a workspace: 201 with a new session, 200 with your live one",
        description=(
            "403 `tunnel_required` when the workspace requires NetBird and the client is not on "
            "a trusted network; 403 `mfa_required` when MFA applies and the token's sign-in did "
            "not verify a code; 409 `workspace_unavailable` (stopped or error) or "
            "`session_limit`; 429 past WORKGATE_LAUNCH_RATE launches a minute (every attempt "
            "counts: a refusal is audited); 503 `provisioner_unavailable` or "
            "`desktop_unavailable`."
        ),
    )
    def post(self, request, workspace_id: str):
        session, created = services.session_launch(
            user=request.user,
            workspace_id=workspace_id,
            origin=Origin.of(request),
            mfa_verified=request_mfa(request),
        )
        body = {
            "session_id": session.id,
            "runtime_id": session.runtime_id,
            "status": session.status,
            "created": created,
            "workspace": render_workspace(request, workspace_get(session.workspace_id)),
            "stream_url": s.stream_url(session),
            "tunnel_status": session.tunnel_status,
            "security": selectors.session_security(session),
        }
        return Response(
            s.LaunchOutput(body).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class WorkspaceStopApi(APIView):
    @extend_schema(
        tags=["workspaces"],
        parameters=[WORKSPACE_ID],
        request=None,
        responses={200: MessageOutput, 401: ErrorOutput, 404: ErrorOutput},
        summary="Stop your live session of a workspace (404 `no_active_session` when none)",
    )
    def post(self, request, workspace_id: str):
        services.workspace_stop(
            user=request.user, workspace_id=workspace_id, origin=Origin.of(request)
        )
        return Response({"message": "Workspace stopped successfully"})


class SessionListApi(APIView):
    audience = {RUNTIME, ADMIN}

    @extend_schema(
        tags=["sessions"],
        operation_id="sessions_list",
        parameters=[s.SessionFilterInput, *PAGE_PARAMETERS],
        responses={200: s.SessionPage, 400: ErrorOutput, 401: ErrorOutput, 404: ErrorOutput},
        summary="Your sessions (administrators: everyone's), newest first",
    )
    def get(self, request):
        filters = query_input(s.SessionFilterInput, request)
        sessions = selectors.session_list(
            user=request.user,
            status=filters.get("status"),
            workspace=filters.get("workspace"),
            user_id=filters.get("user"),
        )
        return paginated(request, sessions, s.SessionOutput, view=self)


class SessionDetailApi(APIView):
    audience = {RUNTIME, ADMIN}

    @extend_schema(
        tags=["sessions"],
        parameters=[SESSION_ID],
        responses={200: s.SessionOutput, 401: ErrorOutput, 404: ErrorOutput},
        summary="One session (another user's is 404 unless you are an administrator)",
    )
    def get(self, request, session_id: str):
        return Response(s.SessionOutput(selectors.access_session(request.user, session_id)).data)


class SessionTerminateApi(APIView):
    audience = {RUNTIME, ADMIN}

    @extend_schema(
        tags=["sessions"],
        parameters=[SESSION_ID],
        request=None,
        responses={200: s.TerminateOutput, 401: ErrorOutput, 403: ErrorOutput, 404: ErrorOutput},
        summary="End a session (its owner or an administrator); ending an ended one is a no-op",
    )
    def post(self, request, session_id: str):
        session = selectors.access_session(request.user, session_id, end=True)
        own = session.user_id == request.user.pk
        session = services.session_terminate(
            session=session,
            actor=request.user,
            reason=services.EndReason.TERMINATED if own else services.EndReason.ADMIN_TERMINATE,
            origin=Origin.of(request),
        )
        return Response({"message": "Session terminated", "session": s.SessionOutput(session).data})
