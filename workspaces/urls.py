from django.urls import path

from workspaces import apis

urlpatterns = [
    path("workspaces", apis.WorkspaceListApi.as_view(), name="workspace-list"),
    # Before the detail route, which would otherwise take "reset" for a workspace id.
    path("workspaces/reset", apis.WorkspaceResetApi.as_view(), name="workspace-reset"),
    path(
        "workspaces/<str:workspace_id>",
        apis.WorkspaceDetailApi.as_view(),
        name="workspace-detail",
    ),
]
