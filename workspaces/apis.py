from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.network import Origin
from core.permissions import IsAdmin
from core.schema import ADMIN, RUNTIME
from core.serializers import ErrorOutput
from workspaces import selectors, services
from workspaces import serializers as s

READ_ERRORS = {401: ErrorOutput}
ADMIN_ERRORS = {400: ErrorOutput, 401: ErrorOutput, 403: ErrorOutput}
WORKSPACE_ID = OpenApiParameter("workspace_id", str, OpenApiParameter.PATH)


ADD, CHANGE, DELETE = (f"workspaces.{action}_workspace" for action in ("add", "change", "delete"))


class AdminWrites:
    """Anyone signed in may read; only administrators holding the write's permission may write."""

    def get_permissions(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [IsAuthenticated()]
        return [IsAdmin()]


def admin_context(request) -> dict:
    """Administrators who may view workspaces in the admin see their admin-only fields."""
    return {"admin": selectors.manages_catalog(request.user)}


def render_workspace(request, workspace) -> dict:
    return s.WorkspaceOutput(workspace, context=admin_context(request)).data


class WorkspaceListApi(AdminWrites, APIView):
    audience = {"GET": {RUNTIME, ADMIN}, "POST": ADMIN}
    admin_permissions = {"POST": (ADD,)}

    @extend_schema(
        tags=["workspaces"],
        responses={200: s.WorkspaceOutput(many=True), **READ_ERRORS},
        summary="List the workspaces the caller may use (administrators who may view "
        "workspaces: all of them); the five defaults are created when the catalog is empty",
    )
    def get(self, request):
        workspaces = selectors.workspaces_visible_to(request.user)
        return Response(
            s.WorkspaceOutput(workspaces, many=True, context=admin_context(request)).data
        )

    @extend_schema(
        tags=["workspaces"],
        request=s.WorkspaceInput,
        responses={201: s.WorkspaceWriteOutput, **ADMIN_ERRORS},
        summary="Create a workspace (admin)",
    )
    def post(self, request):
        data = s.WorkspaceInput(data=request.data)
        data.is_valid(raise_exception=True)
        workspace = services.workspace_create(
            actor=request.user, data=data.validated_data, origin=Origin.of(request)
        )
        return Response(
            {"message": "Workspace created", "workspace": render_workspace(request, workspace)},
            status=status.HTTP_201_CREATED,
        )


# PUT and PATCH are the same partial update (the API's clients use both).
_update_schema = extend_schema(
    tags=["workspaces"],
    parameters=[WORKSPACE_ID],
    request=s.WorkspaceInput(partial=True),
    responses={200: s.WorkspaceWriteOutput, 404: ErrorOutput, **ADMIN_ERRORS},
    summary="Update a workspace (admin; every field optional)",
)


class WorkspaceDetailApi(AdminWrites, APIView):
    audience = {"GET": {RUNTIME, ADMIN}, "PUT": ADMIN, "PATCH": ADMIN, "DELETE": ADMIN}
    admin_permissions = {"PUT": (CHANGE,), "PATCH": (CHANGE,), "DELETE": (DELETE,)}

    @extend_schema(
        tags=["workspaces"],
        parameters=[WORKSPACE_ID],
        responses={200: s.WorkspaceOutput, 404: ErrorOutput, **READ_ERRORS},
        summary="One workspace",
    )
    def get(self, request, workspace_id: str):
        workspace = selectors.access_workspace(request.user, workspace_id, manage=True)
        return Response(render_workspace(request, workspace))

    def _update(self, request, workspace_id: str):
        data = s.WorkspaceInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        workspace = services.workspace_update(
            actor=request.user,
            workspace_id=workspace_id,
            data=data.validated_data,
            origin=Origin.of(request),
        )
        return Response(
            {"message": "Workspace updated", "workspace": render_workspace(request, workspace)}
        )

    @_update_schema
    def put(self, request, workspace_id: str):
        return self._update(request, workspace_id)

    @_update_schema
    def patch(self, request, workspace_id: str):
        return self._update(request, workspace_id)

    @extend_schema(
        tags=["workspaces"],
        parameters=[WORKSPACE_ID],
        request=None,
        responses={200: s.MessageOutput, 404: ErrorOutput, **ADMIN_ERRORS},
        summary="Delete a workspace (admin); its live sessions are ended first",
    )
    def delete(self, request, workspace_id: str):
        services.workspace_delete(
            actor=request.user, workspace_id=workspace_id, origin=Origin.of(request)
        )
        return Response({"message": "Workspace deleted"})


class WorkspaceResetApi(APIView):
    audience = ADMIN
    permission_classes = [IsAdmin]
    # Replaces the whole catalog, so it asks for every write permission on it.
    admin_permissions = {"POST": (ADD, CHANGE, DELETE)}

    @extend_schema(
        tags=["workspaces"],
        request=None,
        responses={200: s.ResetOutput, **ADMIN_ERRORS},
        summary="End every live session, delete every workspace, recreate the five defaults",
    )
    def post(self, request):
        count = services.workspaces_reset(actor=request.user, origin=Origin.of(request))
        return Response({"message": "Workspaces reset to defaults", "count": count})
