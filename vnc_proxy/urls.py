from django.urls import path, re_path

from vnc_proxy import apis

urlpatterns = [
    # The caller's own routes, ahead of the super gate that fronts the rest of /api/agents/.
    path("agents/workspace/me", apis.AgentMeApi.as_view(), name="agents-workspace-me"),
    path("agents/workspace/ticket", apis.TicketApi.as_view(), name="agents-workspace-ticket"),
    path("agents/workspaces", apis.RuntimeListApi.as_view(), name="agents-workspaces"),
    path(
        "agents/workspaces/<str:workspace_id>/terminate",
        apis.RuntimeTerminateApi.as_view(),
        name="agents-workspace-terminate",
    ),
    re_path(r"^agents(?:/.*)?$", apis.SuperGateApi.as_view(), name="agents-super-gate"),
]
