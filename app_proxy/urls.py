from django.urls import path

from app_proxy import apis

urlpatterns = [
    # Ahead of vnc_proxy's super gate, which fronts the rest of /api/agents/.
    path(
        "agents/workspace/app-ticket",
        apis.AppTicketApi.as_view(),
        name="agents-workspace-app-ticket",
    ),
]
