from django.urls import path

from sessions_app import apis

urlpatterns = [
    path(
        "workspaces/<str:workspace_id>/launch",
        apis.WorkspaceLaunchApi.as_view(),
        name="workspace-launch",
    ),
    path(
        "workspaces/<str:workspace_id>/stop", apis.WorkspaceStopApi.as_view(), name="workspace-stop"
    ),
    path("sessions", apis.SessionListApi.as_view(), name="session-list"),
    path("sessions/<str:session_id>", apis.SessionDetailApi.as_view(), name="session-detail"),
    path(
        "sessions/<str:session_id>/terminate",
        apis.SessionTerminateApi.as_view(),
        name="session-terminate",
    ),
]
